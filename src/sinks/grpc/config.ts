// The `type: grpc` sink's config (README: gRPC sink).

import * as z from 'zod';
import {
  bytes,
  componentName,
  describeValue,
  filePath,
  headers,
  integer,
  nonEmpty,
  quantity,
  retry,
  section,
  timerMs,
  topicFilter,
} from '../../config/fields.ts';

export const grpcSinkConfig = z.strictObject({
  name: componentName(),
  type: z.literal('grpc'),
  target: z.string().regex(/^[^\s/]+:\d{1,5}$/, {
    error: (iss) => `must be host:port of the upstream Ingest service (got ${describeValue(iss.input)})`,
  }),
  routes: z
    .array(topicFilter)
    .min(1, { error: 'must list at least one topic filter ("#" for everything)' })
    .default(() => ['#']),
  metadata: headers.optional(),
  timeoutMs: timerMs(1).prefault('10s'),
  // gRPC servers refuse messages over 4 MiB unless raised; a larger batch is split to fit.
  maxMessageBytes: quantity('bytes', 1024, 1024 ** 3).prefault('4MiB'),
  tls: z
    .strictObject({
      caFile: filePath().optional(),
      certFile: filePath().optional(),
      keyFile: filePath().optional(),
      serverName: nonEmpty().optional(),
    })
    .refine((t) => Boolean(t.certFile) === Boolean(t.keyFile), {
      path: ['certFile'],
      error: 'certFile and keyFile go together (client certificate for mTLS)',
    })
    .optional(),
  batch: section({
    maxRecords: integer(1).default(500),
    maxBytes: bytes().prefault('1MiB'),
    lingerMs: timerMs().prefault(5),
  }),
  retry,
});
