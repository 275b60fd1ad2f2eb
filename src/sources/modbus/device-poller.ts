// One PLC (one unit id at one address): polls its register map on a fixed-rate schedule and
// turns each poll into one record. A poll still running when the next falls due is skipped and
// counted, never queued: queued polls would pile up behind a slow PLC and then burst.

import type { Logger } from '../../core/logger.ts';
import type { RecordAppender } from '../../core/pipeline.ts';
import type { RecordInput } from '../../core/record.ts';
import type { ModbusDeviceConfig, ModbusRegisterConfig } from './config.ts';
import { type ModbusConnection, ModbusRequestError } from './modbus-connection.ts';
import { describeRanges, isBitArea, planReads, type ReadBlock } from './read-plan.ts';
import { decodeRegister, type ModbusValue } from './register-codec.ts';

/** Upper bounds (seconds) of the poll duration histogram's buckets. */
export const POLL_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface PollDuration {
  /** Polls per bucket (not cumulative), the last one for polls above every bound. */
  counts: number[];
  sumSeconds: number;
  count: number;
}

type Failures = Record<ModbusRequestError['kind'], number>;

/** A decoded value as JSON: numbers are finite here (non-finite ones became null). */
function jsonValue(v: ModbusValue | null): string {
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

function onAppended(err: Error | null, _seq: number, poller: DevicePoller): void {
  if (err) poller.refused++;
}

export class DevicePoller {
  readonly cfg: ModbusDeviceConfig;
  readonly connection: ModbusConnection;
  polls = 0;
  skipped = 0;
  records = 0;
  refused = 0;
  valuesPublished = 0;
  readonly failures: Failures = { timeout: 0, exception: 0, disconnected: 0, protocol: 0 };
  lastGoodPollAt: number | null = null;
  lastError: string | null = null;
  lastErrorAt: number | null = null;
  readonly duration: PollDuration = {
    counts: new Array(POLL_DURATION_BUCKETS.length + 1).fill(0),
    sumSeconds: 0,
    count: 0,
  };
  private readonly blocks: ReadBlock[];
  private readonly attributes: Record<string, string>;
  private readonly registers: readonly ModbusRegisterConfig[];
  /** `"name":` per register, in register-map order. */
  private readonly keys: string[];
  /** `,"units":{...}` or "". */
  private readonly unitsJson: string;
  /** This poll's values and quality flags, by register index (one poll runs at a time). */
  private readonly values: (ModbusValue | null)[];
  private readonly quality: (string | undefined)[];
  private readonly appender: RecordAppender;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;
  private nextDue = 0;
  private running: Promise<void> | null = null;
  private stopped = false;
  private failing = false;
  /** Report-by-exception: what the last record said of each register, and polls since a full one. */
  private readonly sentValue: (ModbusValue | null)[];
  private readonly sentQuality: (string | undefined)[];
  private readonly sentKnown: boolean[];
  private sinceFull = Number.POSITIVE_INFINITY;

  constructor(cfg: ModbusDeviceConfig, connection: ModbusConnection, appender: RecordAppender, log: Logger) {
    this.cfg = cfg;
    this.connection = connection;
    this.appender = appender;
    this.log = log;
    this.blocks = planReads(cfg.registers, cfg.maxGap);
    this.attributes = { unitId: String(cfg.unitId), ranges: describeRanges(this.blocks) };
    this.registers = cfg.registers;
    this.keys = cfg.registers.map((r) => `${JSON.stringify(r.name)}:`);
    const withUnits = cfg.registers.filter((r) => r.unit !== undefined);
    this.unitsJson =
      withUnits.length > 0
        ? `,"units":${JSON.stringify(Object.fromEntries(withUnits.map((r) => [r.name, r.unit as string])))}`
        : '';
    const n = cfg.registers.length;
    this.values = new Array(n).fill(null);
    this.quality = new Array(n).fill(undefined);
    this.sentValue = new Array(n).fill(null);
    this.sentQuality = new Array(n).fill(undefined);
    this.sentKnown = new Array(n).fill(false);
  }

  /** Requests one poll takes (for status and tests). */
  get requestsPerPoll(): number {
    return this.blocks.length;
  }

  /** First poll after `phaseMs`, so devices sharing an interval do not all fire in the same tick. */
  start(phaseMs: number): void {
    this.nextDue = performance.now() + phaseMs;
    this.arm();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = setTimeout(this.tick, Math.max(0, this.nextDue - performance.now()));
  }

  // On the monotonic clock: a wall-clock jump neither bunches nor starves polls.
  private readonly tick = (): void => {
    const interval = this.cfg.intervalMs;
    const late = performance.now() - this.nextDue;
    // Polls that fell due while the event loop was held up are skipped, not made up for.
    const missed = late >= interval ? Math.floor(late / interval) : 0;
    this.skipped += missed;
    this.nextDue += (missed + 1) * interval;
    if (this.running !== null) this.skipped++;
    else {
      this.running = this.poll().finally(() => {
        this.running = null;
      });
    }
    this.arm();
  };

  private async poll(): Promise<void> {
    const ts = Date.now();
    const t0 = performance.now();
    this.polls++;
    const { values, quality } = this;
    let requestFailed = false;
    let nonFinite = false;
    // After a timeout or a lost connection, the rest of this poll is not sent: it would only wait
    // out more timeouts and hold the connection from the other devices on it.
    let giveUp: string | null = null;
    for (const block of this.blocks) {
      let data: (number | boolean)[] | null = null;
      let reason: string | null = giveUp;
      if (reason === null) {
        try {
          data = await this.connection.read(
            this.cfg.unitId,
            block.area,
            block.address,
            block.count,
            this.cfg.timeoutMs,
          );
        } catch (err) {
          reason = this.failed(block, err);
          if (reason === 'timeout' || reason === 'disconnected' || reason === 'protocol') giveUp = reason;
        }
      }
      const bits = isBitArea(block.area);
      for (const { reg, at, index } of block.registers) {
        if (data === null) {
          values[index] = null;
          quality[index] = reason as string;
          requestFailed = true;
          continue;
        }
        const v = bits ? data[at] === true : decodeRegister(reg, data as number[], at);
        if (typeof v === 'number' && !Number.isFinite(v)) {
          values[index] = null;
          quality[index] = 'non-finite';
          nonFinite = true;
        } else {
          values[index] = v;
          quality[index] = undefined;
        }
      }
    }
    if (this.stopped) return;
    if (!requestFailed) this.lastGoodPollAt = ts;
    if (requestFailed !== this.failing) {
      this.failing = requestFailed;
      // Once per change, not per poll: a dead PLC polled every second would flood the log.
      if (requestFailed) this.log.warn({ device: this.cfg.name, err: this.lastError }, 'modbus poll failed');
      else this.log.info({ device: this.cfg.name }, 'modbus polls good again');
    }
    this.observeDuration((performance.now() - t0) / 1000);
    this.emit(ts, requestFailed || nonFinite);
  }

  /** Counts a failed request and says what its registers' quality becomes. */
  private failed(block: ReadBlock, err: unknown): string {
    const e =
      err instanceof ModbusRequestError ? err : new ModbusRequestError('protocol', (err as Error).message);
    this.failures[e.kind]++;
    this.lastError = `${block.area}:${block.address}-${block.address + block.count - 1}: ${e.message}`;
    this.lastErrorAt = Date.now();
    return e.kind === 'exception' ? `exception:${e.exceptionCode}` : e.kind;
  }

  private observeDuration(seconds: number): void {
    const d = this.duration;
    let i = 0;
    while (i < POLL_DURATION_BUCKETS.length && seconds > POLL_DURATION_BUCKETS[i]) i++;
    d.counts[i]++;
    d.sumSeconds += seconds;
    d.count++;
  }

  /**
   * The record's JSON is assembled from precomputed key fragments rather than an object through
   * JSON.stringify: at 1000 polls/s of 100 registers that object building was the poller's
   * largest cost on the event loop. Keys keep the register map's order.
   */
  private emit(ts: number, anyQuality: boolean): void {
    const rbe = this.cfg.reportByException;
    let full = true;
    if (rbe) {
      full = ++this.sinceFull >= rbe.fullEvery;
      if (full) this.sinceFull = 0;
    }
    const { values, quality, keys, registers } = this;
    let json = '';
    let qualityJson = '';
    let n = 0;
    for (let i = 0; i < registers.length; i++) {
      const value = values[i];
      const q = quality[i];
      if (rbe) {
        if (!full && !this.moved(i, value, q)) continue;
        this.sentValue[i] = value;
        this.sentQuality[i] = q;
        this.sentKnown[i] = true;
      }
      json += (n === 0 ? keys[i] : `,${keys[i]}`) + jsonValue(value);
      if (q !== undefined) qualityJson += (qualityJson === '' ? keys[i] : `,${keys[i]}`) + JSON.stringify(q);
      n++;
    }
    if (n === 0) return;
    let body = `{"ts":${ts},"values":{${json}}`;
    if (anyQuality && qualityJson !== '') body += `,"quality":{${qualityJson}}`;
    body += this.unitsJson;
    body += '}';
    const rec: RecordInput = {
      ts,
      source: 'modbus',
      device: this.cfg.name,
      topic: this.cfg.topic,
      payload: Buffer.from(body),
      contentType: 'application/json',
      attributes: rbe ? { ...this.attributes, snapshot: full ? 'full' : 'changes' } : this.attributes,
    };
    this.records++;
    this.valuesPublished += n;
    this.appender.append(rec, onAppended, this);
  }

  /** Report-by-exception: did register `i` change enough since the last record carried it? */
  private moved(i: number, value: ModbusValue | null, q: string | undefined): boolean {
    if (!this.sentKnown[i] || this.sentQuality[i] !== q) return true;
    const last = this.sentValue[i];
    if (typeof value === 'number' && typeof last === 'number')
      return Math.abs(value - last) > (this.registers[i].deadband ?? 0);
    return value !== last;
  }

  status() {
    return {
      name: this.cfg.name,
      host: this.cfg.host,
      port: this.cfg.port,
      unitId: this.cfg.unitId,
      connected: this.connection.connected,
      requestsPerPoll: this.blocks.length,
      polls: this.polls,
      skipped: this.skipped,
      records: this.records,
      refused: this.refused,
      valuesPublished: this.valuesPublished,
      failures: { ...this.failures },
      duration: { ...this.duration, counts: [...this.duration.counts], buckets: POLL_DURATION_BUCKETS },
      lastGoodPollAt: this.lastGoodPollAt,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt,
    };
  }
}
