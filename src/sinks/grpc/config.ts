// The `type: grpc` sink's config (README: gRPC sink).

import * as z from 'zod';
import {
  clientTls,
  componentName,
  describeValue,
  headers,
  quantity,
  retry,
  sinkBatch,
  sinkRoutes,
  timerMs,
} from '../../config/fields.ts';

export const grpcSinkConfig = z.strictObject({
  name: componentName(),
  type: z.literal('grpc'),
  target: z.string().regex(/^[^\s/]+:\d{1,5}$/, {
    error: (iss) => `must be host:port of the upstream Ingest service (got ${describeValue(iss.input)})`,
  }),
  routes: sinkRoutes(),
  metadata: headers.optional(),
  timeoutMs: timerMs(1).prefault('10s'),
  // gRPC servers refuse messages over 4 MiB unless raised; a larger batch is split to fit.
  maxMessageBytes: quantity('bytes', 1024, 1024 ** 3).prefault('4MiB'),
  tls: clientTls(),
  batch: sinkBatch(),
  retry,
});
