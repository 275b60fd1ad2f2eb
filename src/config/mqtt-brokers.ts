// Checks across the MQTT client source and the mqtt sinks, which may share a broker.
//
// The loop rule's config side (README: loop rule). A bridge sink stamps its publishes with
// the MQTT 5 user property `edgeferry-node`, which the client source recognises; on MQTT 3.1.1
// there are no user properties, so the client source drops what arrives under the literal start
// of each same-broker bridge topic template instead. A template that starts with a record field
// has no such prefix: with MQTT 3.1.1 on either side nothing would stop the loop, so the
// configuration is refused.

import { brokerKey } from '../core/mqtt-broker-key.ts';
import { templatePrefix } from '../sinks/mqtt/topic-template.ts';

interface MqttConfigView {
  node: { id: string };
  mqttClient: { url?: string; clientId?: string; protocolVersion: number };
  sinks: readonly ({ type: string } & Partial<{
    url: string;
    topic: string;
    clientId: string;
    protocolVersion: number;
  }>)[];
}

/** The client id an mqtt sink connects with: its own, or `edgeferry-<node id>`. */
export function sinkClientId(sinkClientId: string | undefined, nodeId: string): string {
  return sinkClientId ?? `edgeferry-${nodeId}`;
}

export interface BridgeLoop {
  /** Topic prefixes the client source ignores (the same-broker bridges' template starts). */
  prefixes: string[];
  /** Same-broker bridge sinks (by index in `sinks`) whose publishes nothing could tell apart. */
  unguarded: number[];
}

export function bridgeLoop(c: MqttConfigView): BridgeLoop {
  const out: BridgeLoop = { prefixes: [], unguarded: [] };
  const url = c.mqttClient.url;
  if (url === undefined) return out;
  const key = brokerKey(url);
  c.sinks.forEach((s, i) => {
    if (s.type !== 'mqtt' || s.url === undefined || s.topic === undefined || brokerKey(s.url) !== key) return;
    const prefix = templatePrefix(s.topic, c.node.id);
    if (prefix !== null) out.prefixes.push(prefix);
    else if (s.protocolVersion !== 5 || c.mqttClient.protocolVersion !== 5) out.unguarded.push(i);
  });
  return out;
}

/**
 * Connections that would share a client id on one broker, as `[sink index, the other's name]`.
 * A broker lets the newer of two such connections take over the session and closes the older,
 * which reconnects and takes it back: they would fight for ever, and the sink's clean start
 * would discard the client source's persistent session and the messages queued in it.
 */
export function clientIdClashes(c: MqttConfigView): [number, string][] {
  const taken = new Map<string, string>();
  if (c.mqttClient.url !== undefined && c.mqttClient.clientId !== undefined)
    taken.set(`${brokerKey(c.mqttClient.url)} ${c.mqttClient.clientId}`, 'mqttClient');
  const out: [number, string][] = [];
  c.sinks.forEach((s, i) => {
    if (s.type !== 'mqtt' || s.url === undefined) return;
    const key = `${brokerKey(s.url)} ${sinkClientId(s.clientId, c.node.id)}`;
    const other = taken.get(key);
    if (other !== undefined) out.push([i, other]);
    else taken.set(key, `sinks[${i}]`);
  });
  return out;
}
