// The `type: http` sink's config (README: HTTP sink).

import * as z from 'zod';
import {
  bytes,
  componentName,
  headers,
  httpUrl,
  integer,
  retry,
  section,
  timerMs,
  topicFilter,
} from '../../config/fields.ts';

export const PAYLOAD_ENCODINGS = ['base64', 'utf8'] as const;

export const httpSinkConfig = z.strictObject({
  name: componentName(),
  type: z.literal('http'),
  url: httpUrl,
  routes: z
    .array(topicFilter)
    .min(1, { error: 'must list at least one topic filter ("#" for everything)' })
    .default(() => ['#']),
  headers: headers.optional(),
  payloadEncoding: z.enum(PAYLOAD_ENCODINGS).default('base64'),
  timeoutMs: timerMs(1).prefault('10s'),
  batch: section({
    maxRecords: integer(1).default(500),
    maxBytes: bytes().prefault('1MiB'),
    lingerMs: timerMs().prefault(5),
  }),
  retry,
});
