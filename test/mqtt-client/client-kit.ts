// What the MQTT client source tests share: the source on a real journal (or on an appender double
// that holds or refuses commits), an mqtt.js publisher, and the journal's records read back.

import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { parseConfig } from '../../src/config/load.ts';
import type { AppendCallback, RecordAppender } from '../../src/core/pipeline.ts';
import { type DecodedRecord, decodeRecord, type RecordInput } from '../../src/core/record.ts';
import type { Journal } from '../../src/journal/journal.ts';
import {
  MqttClientSource,
  type MqttClientSourceOptions,
} from '../../src/sources/mqtt-client/mqtt-client-source.ts';
import { quietLog } from '../journal/journal-kit.ts';

/** The source with the config's defaults, over `url`. */
export function clientSource(
  appender: RecordAppender,
  url: string,
  over: Record<string, unknown> = {},
  internal: Partial<MqttClientSourceOptions> = {},
): MqttClientSource {
  const cfg = parseConfig(
    {
      mqttClient: { url, clientId: 'edge-1', topics: ['site/#'], retry: { minMs: 50, maxMs: 500 }, ...over },
    },
    {},
  ).mqttClient;
  return new MqttClientSource(
    {
      ...cfg,
      url,
      clientId: cfg.clientId as string,
      nodeId: 'test-node',
      ignoreTopicPrefixes: [],
      ...internal,
    },
    appender,
    quietLog,
  );
}

export async function publisher(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { clientId: `pub-${Math.random().toString(36).slice(2)}`, ...opts });
}

/** Publishes `payloads` at `qos` with many in flight; resolves when the broker acked them all. */
export async function publishAll(
  pub: MqttClient,
  topic: (i: number) => string,
  payloads: string[],
  qos: 0 | 1 | 2 = 1,
): Promise<void> {
  await Promise.all(payloads.map((p, i) => pub.publishAsync(topic(i), p, { qos })));
}

export async function journalRecords(journal: Journal): Promise<DecodedRecord[]> {
  const out: DecodedRecord[] = [];
  let from = journal.firstRetainedSeq;
  while (from <= journal.lastCommittedSeq) {
    const b = await journal.readBatch(from, 5000, 64 * 1024 * 1024);
    for (const r of b.records) out.push(decodeRecord(r.body));
    from = b.next;
  }
  return out;
}

/**
 * An appender that commits nothing until told: `release()` commits every held record, `refuse`
 * decides per append whether it fails at once, `saturated` is set by the test.
 */
export class HoldingAppender implements RecordAppender {
  saturated = false;
  readonly appended: RecordInput[] = [];
  refuse: (rec: RecordInput) => boolean = () => false;
  private held: { cb: AppendCallback<unknown> | null; state: unknown }[] = [];
  private waiters: (() => void)[] = [];

  append<S>(rec: RecordInput, cb: AppendCallback<S> | null, state: S): void {
    if (this.refuse(rec)) {
      setImmediate(() => cb?.(new Error('journal full'), 0, state));
      return;
    }
    this.appended.push(rec);
    this.held.push({ cb: cb as AppendCallback<unknown> | null, state });
  }

  whenUnsaturated(cb: () => void): void {
    this.waiters.push(cb);
  }

  unsaturate(): void {
    this.saturated = false;
    for (const w of this.waiters.splice(0)) w();
  }

  release(): void {
    const held = this.held.splice(0);
    for (let i = 0; i < held.length; i++) held[i].cb?.(null, i + 1, held[i].state);
  }
}

export const payloadsOf = (recs: { payload: Buffer }[]): string[] => recs.map((r) => r.payload.toString());
