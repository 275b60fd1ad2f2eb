// The `type: http` sink's config (README: HTTP sink).

import * as z from 'zod';
import {
  clientTls,
  componentName,
  headers,
  httpUrl,
  retry,
  sinkBatch,
  sinkRoutes,
  timerMs,
} from '../../config/fields.ts';

export const PAYLOAD_ENCODINGS = ['base64', 'utf8'] as const;

export const httpSinkConfig = z
  .strictObject({
    name: componentName(),
    type: z.literal('http'),
    url: httpUrl,
    routes: sinkRoutes(),
    headers: headers.optional(),
    payloadEncoding: z.enum(PAYLOAD_ENCODINGS).default('base64'),
    timeoutMs: timerMs(1).prefault('10s'),
    // The upstream's CA and a client certificate (mTLS), for an https url; re-read when rotated.
    tls: clientTls(),
    batch: sinkBatch(),
    retry,
  })
  .refine((c) => c.tls === undefined || c.url.startsWith('https:'), {
    path: ['tls'],
    error: 'needs an https url',
  });
