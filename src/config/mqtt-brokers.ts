// Checks across the MQTT client source and the mqtt sinks, which may share a broker.
//
// The loop rule's config side (README: loop rule). A bridge sink stamps its publishes with
// the MQTT 5 user property `edgeferry-node`, which the client source recognises; on MQTT 3.1.1
// there are no user properties, so the client source drops what arrives under the literal start
// of each same-broker bridge topic template instead. A template that starts with a record field
// has no such prefix: with MQTT 3.1.1 on either side nothing would stop the loop, so the
// configuration is refused.

import type * as z from 'zod';
import { brokerKey } from '../core/mqtt-broker-key.ts';
import { sinkClientId } from '../sinks/mqtt/config.ts';
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

/** The cross-checks above as config errors, named by the sink field to change. */
export function checkMqttBrokers(c: MqttConfigView, ctx: z.RefinementCtx): void {
  for (const i of bridgeLoop(c).unguarded)
    ctx.addIssue({
      code: 'custom',
      path: ['sinks', i, 'topic'],
      message:
        'publishes to the broker mqttClient reads from, and the template starts with a record field: with MQTT 3.1.1 on either side nothing would keep our own publishes from coming back in; start the template with a literal prefix (edge/{node}/...) or use protocolVersion 5 on both',
      input: c.sinks[i].topic,
    });
  for (const [i, other] of clientIdClashes(c))
    ctx.addIssue({
      code: 'custom',
      path: ['sinks', i, 'clientId'],
      message: `the same client id as ${other} on the same broker (the default is edgeferry-<node.id>): the broker would close one connection whenever the other connects; give each its own`,
      input: c.sinks[i].clientId,
    });
}
