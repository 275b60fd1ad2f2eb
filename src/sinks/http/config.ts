// The `type: http` sink's config (README: HTTP sink).

import * as z from 'zod';
import {
  componentName,
  headers,
  httpUrl,
  retry,
  sinkBatch,
  sinkRoutes,
  timerMs,
} from '../../config/fields.ts';

export const PAYLOAD_ENCODINGS = ['base64', 'utf8'] as const;

export const httpSinkConfig = z.strictObject({
  name: componentName(),
  type: z.literal('http'),
  url: httpUrl,
  routes: sinkRoutes(),
  headers: headers.optional(),
  payloadEncoding: z.enum(PAYLOAD_ENCODINGS).default('base64'),
  timeoutMs: timerMs(1).prefault('10s'),
  batch: sinkBatch(),
  retry,
});
