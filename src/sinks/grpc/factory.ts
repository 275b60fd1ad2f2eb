// The `type: grpc` sink from its config section (registered in src/main.ts).

import type * as z from 'zod';
import type { Sink, SinkContext } from '../../core/pipeline.ts';
import type { grpcSinkConfig } from './config.ts';
import { GrpcSink } from './grpc-sink.ts';

export function createSink(cfg: z.output<typeof grpcSinkConfig>, ctx: SinkContext): Sink {
  return new GrpcSink({
    name: cfg.name,
    target: cfg.target,
    node: ctx.nodeId,
    timeoutMs: cfg.timeoutMs,
    tls: cfg.tls,
    metadata: cfg.metadata,
    maxMessageBytes: cfg.maxMessageBytes,
    log: ctx.log,
  });
}
