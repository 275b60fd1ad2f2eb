// The few CoAP (RFC 7252) messages the load generator needs: a POST with Uri-Path options, a
// token and a payload, built once as a template whose message id, token and send time are
// patched per send; an empty ACK; and the fixed header of what comes back.

/** §3: Version 1. */
const VERSION = 1;
/** §3: message types. */
export const CON = 0;
export const NON = 1;
export const ACK = 2;
export const RST = 3;
/** §12.1.1: 0.02 POST. Codes are class << 5 | detail. */
export const CODE_POST = 0x02;
/** 0.00: an empty message (an ACK without a piggybacked response, a RST). */
export const CODE_EMPTY = 0x00;
/** §12.1.2: 2.04 Changed. */
export const CODE_CHANGED = (2 << 5) | 4;
/** §5.9.3.4: 5.03 Service Unavailable (with Max-Age: when to try again). */
export const CODE_SERVICE_UNAVAILABLE = (5 << 5) | 3;
/** §5.10: Uri-Path, Max-Age. */
const OPT_URI_PATH = 11;
const OPT_MAX_AGE = 14;
/** §5.10.5: Max-Age when the option is absent, seconds. */
export const DEFAULT_MAX_AGE = 60;
/** The token is 4 bytes: slot index (16 bit) and the slot's generation (16 bit). */
export const TOKEN_LENGTH = 4;
/** The byte before the payload (§3). */
const PAYLOAD_MARKER = 0xff;

export interface PostTemplate {
  packet: Buffer;
  /** Offsets of the patched fields. */
  midOffset: number;
  tokenOffset: number;
  payloadOffset: number;
}

/** One option header and value (§3.1): 4-bit delta and length, with the 13/14 extensions. */
function option(delta: number, value: Buffer): Buffer {
  const ext = (n: number): [number, number[]] =>
    n < 13 ? [n, []] : n < 269 ? [13, [n - 13]] : [14, [(n - 269) >> 8, (n - 269) & 0xff]];
  const [d, dExt] = ext(delta);
  const [l, lExt] = ext(value.length);
  return Buffer.concat([Buffer.from([(d << 4) | l, ...dExt, ...lExt]), value]);
}

/** A POST to `path` ('/t/bench/0'), CON or NON, with a `payloadBytes` payload (zeros). */
export function postTemplate(
  type: typeof CON | typeof NON,
  path: string,
  payloadBytes: number,
): PostTemplate {
  const segments = path.split('/').filter((s) => s.length > 0);
  const head = Buffer.from([(VERSION << 6) | (type << 4) | TOKEN_LENGTH, CODE_POST, 0, 0]);
  const token = Buffer.alloc(TOKEN_LENGTH);
  const opts = segments.map((s, i) => option(i === 0 ? OPT_URI_PATH : 0, Buffer.from(s, 'utf8')));
  const packet = Buffer.concat([
    head,
    token,
    ...opts,
    Buffer.from([PAYLOAD_MARKER]),
    Buffer.alloc(payloadBytes),
  ]);
  return {
    packet,
    midOffset: 2,
    tokenOffset: 4,
    payloadOffset: packet.length - payloadBytes,
  };
}

/** An empty ACK (§4.2) for message id `mid`: what a client sends for a separate CON response. */
export function emptyAck(mid: number): Buffer {
  return Buffer.from([(VERSION << 6) | (ACK << 4), CODE_EMPTY, mid >> 8, mid & 0xff]);
}

export interface Header {
  type: number;
  code: number;
  mid: number;
  /** The first 4 token bytes as a uint32 (when the token is 4 bytes long), else -1. */
  token: number;
}

/** The fixed header of a datagram, or null when it is not a CoAP 1 message. */
export function parseHeader(buf: Buffer, out: Header): Header | null {
  if (buf.length < 4 || buf[0] >> 6 !== VERSION) return null;
  const tkl = buf[0] & 0x0f;
  out.type = (buf[0] >> 4) & 0x03;
  out.code = buf[1];
  out.mid = (buf[2] << 8) | buf[3];
  out.token = tkl === TOKEN_LENGTH && buf.length >= 4 + TOKEN_LENGTH ? buf.readUInt32BE(4) : -1;
  return out;
}

/** The Max-Age option of a message (seconds), or DEFAULT_MAX_AGE when absent or unreadable. */
export function maxAge(buf: Buffer): number {
  let i = 4 + (buf[0] & 0x0f);
  let number = 0;
  while (i < buf.length && buf[i] !== PAYLOAD_MARKER) {
    let delta = buf[i] >> 4;
    let len = buf[i] & 0x0f;
    i++;
    if (delta === 13) delta = 13 + buf[i++];
    else if (delta === 14) {
      delta = 269 + ((buf[i] << 8) | buf[i + 1]);
      i += 2;
    }
    if (len === 13) len = 13 + buf[i++];
    else if (len === 14) {
      len = 269 + ((buf[i] << 8) | buf[i + 1]);
      i += 2;
    }
    if (delta === 15 || len === 15 || i + len > buf.length) return DEFAULT_MAX_AGE;
    number += delta;
    if (number === OPT_MAX_AGE) return len === 0 ? 0 : buf.readUIntBE(i, Math.min(len, 4));
    if (number > OPT_MAX_AGE) break;
    i += len;
  }
  return DEFAULT_MAX_AGE;
}

/** '2.04' from 0x44. */
export function codeString(code: number): string {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, '0')}`;
}
