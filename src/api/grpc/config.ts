// The gRPC API's `grpc:` section (README: In-cluster apps: the Gateway API).

import * as z from 'zod';
import { filePath, nonEmpty, port, section, timerMs } from '../../config/fields.ts';

export const grpcApiConfig = section({
  enabled: z.boolean().default(true),
  host: nonEmpty().default('0.0.0.0'),
  port: port().default(50051),
  tls: z
    .strictObject({ certFile: filePath(), keyFile: filePath(), caFile: filePath().optional() })
    .optional(),
  // An app that froze or vanished without a FIN holds its stream open for ever unless
  // an unanswered HTTP/2 PING ends it: found within timeMs + timeoutMs.
  keepalive: section({
    timeMs: timerMs(100).prefault('20s'),
    timeoutMs: timerMs(100).prefault('10s'),
  }),
  // A durable consumer nobody streams from or acks for this long is removed: abandoned,
  // its cursor would hold the journal's oldest records for ever.
  consumers: section({ expireAfter: timerMs(1).prefault('1d') }),
});
