// An MQTT 5 subscriber on a real broker that keeps what it receives, for the bridge sink's tests
// and bench: QoS 1, a persistent session (fixed client id, clean: false) when asked, so messages
// queued for it survive a broker restart with persistence on.

import mqtt, { type MqttClient } from 'mqtt';

export interface Received {
  topic: string;
  payload: string;
  /** The `edgeferry-record-id` user property (MQTT 5). */
  id: string | undefined;
  node: string | undefined;
  contentType: string | undefined;
  /** How many times the broker had restarted when it arrived (set by the test). */
  at: number;
}

export interface Subscriber {
  readonly client: MqttClient;
  readonly received: Received[];
  /** Stamped on each message from now on. */
  mark: number;
  close(): Promise<void>;
}

export async function subscribe(
  url: string,
  filter: string,
  opts: { persistent?: boolean; clientId?: string; protocolVersion?: 4 | 5 } = {},
): Promise<Subscriber> {
  const client = await mqtt.connectAsync(url, {
    clientId: opts.clientId ?? `sub-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
    clean: !opts.persistent,
    protocolVersion: opts.protocolVersion ?? 5,
    properties: opts.persistent ? { sessionExpiryInterval: 3600 } : undefined,
    reconnectPeriod: 100,
    keepalive: 30,
  });
  const sub: Subscriber = {
    client,
    received: [],
    mark: 0,
    async close() {
      await client.endAsync(true);
    },
  };
  client.on('message', (topic, payload, packet) => {
    const up = packet.properties?.userProperties ?? {};
    const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
    sub.received.push({
      topic,
      payload: payload.toString(),
      id: one(up['edgeferry-record-id']),
      node: one(up['edgeferry-node']),
      contentType: packet.properties?.contentType,
      at: sub.mark,
    });
  });
  client.on('error', () => {});
  await client.subscribeAsync(filter, { qos: 1 });
  return sub;
}
