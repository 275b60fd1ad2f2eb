// The gRPC sink through the shared sink suite, against the reference Ingest receiver
// (bench/receivers/grpc-ingest-receiver.ts).

import { status } from '@grpc/grpc-js';
import { GrpcIngestReceiver } from '../../bench/receivers/grpc-ingest-receiver.ts';
import { DEFAULT_MAX_MESSAGE_BYTES, GrpcSink } from '../../src/sinks/grpc/grpc-sink.ts';
import { type SinkDriver, type SuiteUpstream, sinkSuite, type UpstreamAnswer } from './sink-suite.ts';

const CODE: Record<Exclude<UpstreamAnswer, 'hang'>, status> = {
  accept: status.OK,
  retry: status.UNAVAILABLE,
  refuse: status.INVALID_ARGUMENT,
  auth: status.UNAUTHENTICATED,
};

class GrpcUpstream implements SuiteUpstream {
  readonly rx = new GrpcIngestReceiver();
  answer: SuiteUpstream['answer'] = () => 'accept';

  constructor() {
    this.rx.respond = (req) => {
      const a = this.answer(req.records.map((r) => r.payload.toString()));
      return a === 'hang' ? null : CODE[a];
    };
  }

  calls(): number {
    return this.rx.pushes;
  }

  /** The receiver keeps each id once, at its first arrival. */
  accepted() {
    return this.rx.records.map((r) => ({ seq: r.seq, id: r.id, payload: r.payload.toString() }));
  }

  down(): Promise<void> {
    return this.rx.stop();
  }

  up(): Promise<void> {
    return this.rx.start(this.rx.port);
  }

  close(): Promise<void> {
    return this.rx.stop();
  }
}

const grpc: SinkDriver<GrpcUpstream> = {
  name: 'grpc',
  async startUpstream() {
    const u = new GrpcUpstream();
    await u.rx.start();
    return u;
  },
  createSink: (u, opts) =>
    new GrpcSink({
      ...opts,
      target: u.rx.target,
      node: 'suite-node',
      maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    }),
};

sinkSuite(grpc);
