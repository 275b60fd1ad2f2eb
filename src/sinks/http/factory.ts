// The `type: http` sink from its config section (registered in src/main.ts).

import type * as z from 'zod';
import type { Sink, SinkContext } from '../../core/pipeline.ts';
import type { httpSinkConfig } from './config.ts';
import { HttpSink } from './http-sink.ts';

export function createSink(cfg: z.output<typeof httpSinkConfig>, ctx: SinkContext): Sink {
  return new HttpSink({
    name: cfg.name,
    url: cfg.url,
    headers: cfg.headers,
    payloadEncoding: cfg.payloadEncoding,
    timeoutMs: cfg.timeoutMs,
    tls: cfg.tls,
    log: ctx.log,
  });
}
