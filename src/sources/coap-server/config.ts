// The CoAP server's keys of the `coap:` section (README: CoAP); `coap.devices` is the observer's.

import * as z from 'zod';
import { bytes, describeValue, nonEmpty, port } from '../../config/fields.ts';

export const coapServerConfigShape = {
  enabled: z.boolean().default(true),
  host: nonEmpty().default('0.0.0.0'),
  port: port().default(5683),
  // POST/PUT /<prefix>/<topic path> becomes a record on <topic path>.
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_.~-]+$/, {
      error: (iss) => `must be one path segment such as t (got ${describeValue(iss.input)})`,
    })
    // /.well-known/core is the discovery resource (RFC 6690), never a telemetry prefix.
    .refine((p) => p !== '.well-known', { error: 'must not be .well-known (RFC 6690 discovery)' })
    .default('t'),
  // Larger payloads get 4.13 Request Entity Too Large (block-wise ones included).
  maxPayloadBytes: bytes().prefault('64KiB'),
};
