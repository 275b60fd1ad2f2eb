// `GET /.well-known/core` (RFC 7252 §7.2, RFC 6690): what the gateway accepts, in CoRE Link
// Format. Several ct values are one quoted, space-separated attribute (RFC 7252 §7.2.1).

import { ADVERTISED_FORMATS } from './content-format.ts';

export function wellKnownCore(prefix: string): Buffer {
  return Buffer.from(`</${prefix}>;rt="edgeferry.telemetry";ct="${ADVERTISED_FORMATS.join(' ')}"`, 'utf8');
}

/** Content-Format 40, application/link-format (RFC 6690 §7.2). */
export const LINK_FORMAT = 40;
