// The admin HTTP server's `admin:` section (README: Operations).

import * as z from 'zod';
import { filePath, nonEmpty, port, section } from '../config/fields.ts';

export const adminConfig = section({
  enabled: z.boolean().default(true),
  host: nonEmpty().default('0.0.0.0'),
  port: port().default(8080),
  // A bearer token for /v1/* (and /metrics with protectMetrics); probes stay open.
  token: nonEmpty().optional(),
  tokenFile: filePath().optional(),
  protectMetrics: z.boolean().default(false),
}).superRefine((a, ctx) => {
  if (a.token !== undefined && a.tokenFile !== undefined)
    ctx.addIssue({
      code: 'custom',
      path: ['tokenFile'],
      message: 'token and tokenFile exclude each other',
      input: a.tokenFile,
    });
  if (a.protectMetrics && a.token === undefined && a.tokenFile === undefined)
    ctx.addIssue({
      code: 'custom',
      path: ['protectMetrics'],
      message: 'needs token or tokenFile',
      input: true,
    });
});
