// The Modbus poller's records as they reach the HTTP receiver (diverted there by topic from the
// MQTT load sharing the sink): counted per device and timed from the poll's start, the payload's
// `ts`, to the arrival of the HTTP request carrying it. So the latency includes the journal, the
// sink's batching (lingerMs) and the HTTP delivery, not only the poll. A line is only queued with
// its arrival time while the receiver handles the request, and parsed after it has answered, so
// the checks here never delay the sink's next batch.

import { LatencyRecorder } from './consumer.ts';
import type { DivertedRecords } from './http-receiver.ts';

const PAYLOAD = Buffer.from('"payload":"');
const DEVICE = Buffer.from('"device":"');
const TS = /^\{"ts":(\d+)[,}]/;
const VALUES = '"values":{';
const QUALITY = '"quality":{';
const NULL = ':null';

export class ModbusRecords implements DivertedRecords {
  readonly topicPrefix: string;
  /** Poll start (payload ts) -> arrival at the receiver, ms, on the wall clock of both. */
  readonly latency = new LatencyRecorder();
  records = 0;
  /** Records with a `quality` section (some register failed). */
  degraded = 0;
  /** Values published as null. */
  nullValues = 0;
  /** Records whose values all equal the device's previous record's (the simulator moves them every read). */
  unchanged = 0;
  /** Lines without a readable JSON payload. */
  unreadable = 0;
  /** Records out of ts order within a device. */
  outOfOrder = 0;
  /** Wall-clock ms of the reset and of the first and last arrival since. */
  resetAt = Date.now();
  firstAt = 0;
  lastAt = 0;
  readonly perDevice = new Map<string, number>();
  private readonly previous = new Map<string, { ts: number; values: string }>();
  private queue: { line: Buffer; at: number }[] = [];
  private scheduled = false;

  constructor(topicPrefix: string) {
    this.topicPrefix = topicPrefix;
  }

  reset(): void {
    this.latency.reset();
    this.records = 0;
    this.degraded = 0;
    this.nullValues = 0;
    this.unchanged = 0;
    this.unreadable = 0;
    this.outOfOrder = 0;
    this.resetAt = Date.now();
    this.firstAt = 0;
    this.lastAt = 0;
    this.perDevice.clear();
    this.queue = [];
  }

  line(line: Buffer): void {
    // The daemon stamps ts with Date.now(): the same clock here, not the load's performance clock.
    // The view keeps the request body alive until parsed, a few ms.
    this.queue.push({ line, at: Date.now() });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  /** Parses what arrived; call before reading the figures (the scenario does, after its run). */
  drain(): void {
    this.scheduled = false;
    const q = this.queue;
    this.queue = [];
    for (const { line, at } of q) this.parse(line, at);
  }

  // Scanned, not JSON-parsed (the receiver shares the bench process with the load's worker, and
  // the machine with the daemon): the payload is `{"ts":N,"values":{...}[,"quality":{...}]...}`.
  private parse(line: Buffer, at: number): void {
    const text = readPayload(line);
    const m = text === null ? null : TS.exec(text);
    if (text === null || m === null) {
      this.unreadable++;
      return;
    }
    const ts = Number(m[1]);
    this.latency.record(at - ts);
    if (this.records === 0) this.firstAt = at;
    this.records++;
    this.lastAt = at;
    const q = text.indexOf(QUALITY);
    if (q >= 0) this.degraded++;
    const v = text.indexOf(VALUES);
    const values = v < 0 ? '' : text.slice(v, q > v ? q : text.length);
    for (let i = values.indexOf(NULL); i >= 0; i = values.indexOf(NULL, i + NULL.length)) this.nullValues++;
    const device = stringField(line, DEVICE) ?? '?';
    this.perDevice.set(device, (this.perDevice.get(device) ?? 0) + 1);
    const prev = this.previous.get(device);
    if (prev) {
      if (ts < prev.ts) this.outOfOrder++;
      if (prev.values === values) this.unchanged++;
    }
    this.previous.set(device, { ts, values });
  }

  /** Records per second between the reset and `until` (wall-clock ms). */
  rate(until = Date.now()): number {
    return this.records / ((until - this.resetAt) / 1000);
  }
}

function stringField(line: Buffer, name: Buffer): string | null {
  const p = line.indexOf(name);
  if (p < 0) return null;
  const from = p + name.length;
  const to = line.indexOf(0x22, from);
  return to < 0 ? null : line.toString('utf8', from, to);
}

/** The payload of an NDJSON line (base64, the HTTP sink's default encoding) as text. */
function readPayload(line: Buffer): string | null {
  const b64 = stringField(line, PAYLOAD);
  return b64 === null ? null : Buffer.from(b64, 'base64').toString('utf8');
}
