// The gRPC sink's upstream in a benchmark: the reference Ingest receiver
// (bench/receivers/grpc-ingest-receiver.ts, decoding with @grpc/proto-loader as any upstream
// would) in the bench process, wrapped as a `Consumer`: counts records, takes each record's
// end-to-end latency from the send time in the first 8 bytes of its payload.

import { GrpcIngestReceiver, type IngestedRecord } from '../receivers/grpc-ingest-receiver.ts';
import { type Consumer, LatencyRecorder } from './consumer.ts';
import { nowMs } from './mqtt-codec.ts';

export class GrpcConsumer implements Consumer {
  /** Distinct records since the last reset (redeliveries are in `duplicates`). */
  received = 0;
  firstAt = 0;
  lastAt = 0;
  /** Records whose payload carried no readable timestamp. */
  unreadable = 0;
  readonly latency = new LatencyRecorder();
  readonly rx: GrpcIngestReceiver;
  private dupBase = 0;
  private pushBase = 0;

  constructor() {
    // keep: false: only counted (the receiver still remembers ids, to find redeliveries).
    this.rx = new GrpcIngestReceiver({ host: '127.0.0.1', keep: false, onRecord: (r) => this.onRecord(r) });
  }

  async start(): Promise<void> {
    await this.rx.start(0);
  }

  /** host:port for the sink's `target`. */
  get target(): string {
    return this.rx.target;
  }

  /** Redelivered records (ids seen before) and records out of seq order, since the last reset. */
  get duplicates(): number {
    return this.rx.duplicates + this.rx.outOfOrder - this.dupBase;
  }

  /** Push calls since the last reset. */
  get pushes(): number {
    return this.rx.pushes - this.pushBase;
  }

  reset(): void {
    this.received = 0;
    this.firstAt = 0;
    this.lastAt = 0;
    this.unreadable = 0;
    this.dupBase = this.rx.duplicates + this.rx.outOfOrder;
    this.pushBase = this.rx.pushes;
    this.latency.reset();
  }

  async close(): Promise<void> {
    await this.rx.stop();
  }

  private onRecord(r: IngestedRecord): void {
    const at = nowMs();
    if (this.received === 0) this.firstAt = at;
    this.received++;
    this.lastAt = at;
    if (r.payload.length >= 8) this.latency.record(at - r.payload.readDoubleBE(0));
    else this.unreadable++;
  }
}
