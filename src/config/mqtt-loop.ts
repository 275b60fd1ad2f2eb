// The MQTT loop rule's config side (README: loop rule). A bridge sink stamps its publishes with
// the MQTT 5 user property `edgeferry-node`, which the client source recognises; on MQTT 3.1.1
// there are no user properties, so the client source drops what arrives under the literal start
// of each same-broker bridge topic template instead. A template that starts with a record field
// has no such prefix: with MQTT 3.1.1 on either side nothing would stop the loop, so the
// configuration is refused.

import { brokerKey } from '../core/mqtt-broker-key.ts';
import { templatePrefix } from '../sinks/mqtt/topic-template.ts';

interface LoopConfigView {
  node: { id: string };
  mqttClient: { url?: string; protocolVersion: number };
  sinks: readonly ({ type: string } & Partial<{ url: string; topic: string; protocolVersion: number }>)[];
}

export interface BridgeLoop {
  /** Topic prefixes the client source ignores (the same-broker bridges' template starts). */
  prefixes: string[];
  /** Same-broker bridge sinks (by index in `sinks`) whose publishes nothing could tell apart. */
  unguarded: number[];
}

export function bridgeLoop(c: LoopConfigView): BridgeLoop {
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
