// The CoAP message format (RFC 7252 §3), decoded strictly into a reused state object, and the
// few responses the server sends, encoded by hand. Strict where node-coap's codec (coap-packet)
// is lenient: a token length of 9-15, an option that runs past the datagram, a payload marker
// with nothing after it and the reserved nibble 15 are all message format errors (§3, §3.1),
// which the server must reject (RST for a CON, silence for a NON: §4.2, §4.3), never parse.

export const TYPE_CON = 0;
export const TYPE_NON = 1;
export const TYPE_ACK = 2;
export const TYPE_RST = 3;

/** Codes as their byte: class << 5 | detail (§3, §12.1). */
export const CODE_EMPTY = 0x00;
export const METHOD_GET = 0x01;
export const METHOD_POST = 0x02;
export const METHOD_PUT = 0x03;
export const CODE_CHANGED = 0x44; // 2.04
export const CODE_CONTENT = 0x45; // 2.05
export const CODE_CONTINUE = 0x5f; // 2.31 (RFC 7959 §2.9.1)
export const CODE_BAD_REQUEST = 0x80; // 4.00
export const CODE_BAD_OPTION = 0x82; // 4.02
export const CODE_NOT_FOUND = 0x84; // 4.04
export const CODE_METHOD_NOT_ALLOWED = 0x85; // 4.05
export const CODE_INCOMPLETE = 0x88; // 4.08 (RFC 7959 §2.9.2)
export const CODE_TOO_LARGE = 0x8d; // 4.13
export const CODE_UNAVAILABLE = 0xa3; // 5.03
export const CODE_PROXYING_NOT_SUPPORTED = 0xa5; // 5.05

export const OPT_URI_HOST = 3;
export const OPT_URI_PORT = 7;
export const OPT_URI_PATH = 11;
export const OPT_CONTENT_FORMAT = 12;
export const OPT_MAX_AGE = 14;
export const OPT_URI_QUERY = 15;
export const OPT_ACCEPT = 17;
export const OPT_BLOCK2 = 23;
export const OPT_BLOCK1 = 27;
export const OPT_PROXY_URI = 35;
export const OPT_PROXY_SCHEME = 39;
export const OPT_SIZE1 = 60;
export const OPT_REQUEST_TAG = 292; // RFC 9175 §3

/** Why a datagram is not a CoAP message (counted, logged throttled). */
export type FormatError =
  | 'short'
  | 'version'
  | 'token-length'
  | 'option'
  | 'payload-marker'
  | 'empty-message';

/**
 * One decoded request. The server keeps a single instance and overwrites it per datagram; what
 * must outlive the datagram (token, payload) are views into the datagram's own Buffer.
 */
export class CoapMessage {
  type = 0;
  code = 0;
  messageId = 0;
  token: Buffer = EMPTY;
  payload: Buffer = EMPTY;
  /** Uri-Path segments, raw (validated and decoded by the server). */
  readonly path: Buffer[] = [];
  /** The `d=` Uri-Query value, if any. */
  device: Buffer | null = null;
  /** Content-Format, or -1 when absent. */
  contentFormat = -1;
  /** The Block1 option's value (RFC 7959 §2.2), or -1 when absent. */
  block1 = -1;
  /** Size1 (RFC 7959 §4), or -1. */
  size1 = -1;
  requestTag: Buffer | null = null;
  /** The first critical option the server does not understand (§5.4.1), or -1. */
  badOption = -1;
  /** A Proxy-Uri/Proxy-Scheme was present (§5.7.2: 5.05). */
  proxy = false;

  reset(): void {
    this.token = EMPTY;
    this.payload = EMPTY;
    this.path.length = 0;
    this.device = null;
    this.contentFormat = -1;
    this.block1 = -1;
    this.size1 = -1;
    this.requestTag = null;
    this.badOption = -1;
    this.proxy = false;
  }
}

const EMPTY = Buffer.alloc(0);
const D_EQUALS = 0x64_3d; // "d="

/** An unsigned integer option (§3.2 "uint"): at most `max` bytes, big-endian. -2 when too long. */
function readUint(buf: Buffer, start: number, len: number, max: number): number {
  if (len > max) return -2;
  let v = 0;
  for (let i = 0; i < len; i++) v = v * 256 + buf[start + i];
  return v;
}

/**
 * Decodes `buf` into `m`; returns null when it is a well-formed message, else why not. The header
 * (type, message id) is set as soon as it was read, so a malformed CON can still be reset.
 */
export function decode(buf: Buffer, m: CoapMessage): FormatError | null {
  m.reset();
  if (buf.length < 4) return 'short';
  const b0 = buf[0];
  m.type = (b0 >> 4) & 3;
  m.code = buf[1];
  m.messageId = buf.readUInt16BE(2);
  if (b0 >> 6 !== 1) return 'version'; // §3: other versions are silently ignored
  const tkl = b0 & 0x0f;
  if (tkl > 8) return 'token-length'; // §3: 9-15 reserved, a format error
  if (m.code === CODE_EMPTY) {
    // §4.1: an Empty message has nothing after the message id.
    return buf.length === 4 && tkl === 0 ? null : 'empty-message';
  }
  let i = 4 + tkl;
  if (i > buf.length) return 'token-length';
  m.token = buf.subarray(4, i);
  let number = 0;
  const end = buf.length;
  while (i < end) {
    const b = buf[i++];
    if (b === 0xff) {
      // §3: a marker followed by a zero-length payload is a format error.
      if (i === end) return 'payload-marker';
      m.payload = buf.subarray(i);
      return null;
    }
    let delta = b >> 4;
    let len = b & 0x0f;
    if (delta === 13) {
      if (i + 1 > end) return 'option';
      delta = buf[i] + 13;
      i += 1;
    } else if (delta === 14) {
      if (i + 2 > end) return 'option';
      delta = buf.readUInt16BE(i) + 269;
      i += 2;
    } else if (delta === 15) return 'option';
    if (len === 13) {
      if (i + 1 > end) return 'option';
      len = buf[i] + 13;
      i += 1;
    } else if (len === 14) {
      if (i + 2 > end) return 'option';
      len = buf.readUInt16BE(i) + 269;
      i += 2;
    } else if (len === 15) return 'option';
    if (i + len > end) return 'option';
    number += delta;
    readOption(buf, m, number, i, len);
    i += len;
  }
  return null;
}

/**
 * Keeps what the server uses. An option whose value is out of its length range is treated as
 * unrecognized (§5.4.3), and an unrecognized critical (odd-numbered) option fails the request
 * with 4.02 (§5.4.1); unrecognized elective ones are ignored.
 */
function readOption(buf: Buffer, m: CoapMessage, number: number, start: number, len: number): void {
  switch (number) {
    case OPT_URI_PATH:
      if (len > 255) break;
      m.path.push(buf.subarray(start, start + len));
      return;
    case OPT_URI_QUERY:
      if (len > 255) break;
      if (len >= 2 && buf.readUInt16BE(start) === D_EQUALS) m.device = buf.subarray(start + 2, start + len);
      return;
    case OPT_CONTENT_FORMAT:
      // Elective: a repeat or a bad length is ignored (§5.4.5, §5.4.3).
      if (m.contentFormat < 0 && len <= 2) m.contentFormat = readUint(buf, start, len, 2);
      return;
    case OPT_BLOCK1: {
      const v = readUint(buf, start, len, 3);
      if (v < 0 || m.block1 >= 0) break; // critical and not repeatable (RFC 7959 §2.1)
      m.block1 = v;
      return;
    }
    case OPT_SIZE1:
      if (len <= 4) m.size1 = readUint(buf, start, len, 4);
      return;
    case OPT_REQUEST_TAG:
      if (len <= 8) m.requestTag = buf.subarray(start, start + len);
      return;
    case OPT_PROXY_URI:
    case OPT_PROXY_SCHEME:
      m.proxy = true;
      return;
    case OPT_URI_HOST:
    case OPT_URI_PORT:
    case OPT_ACCEPT:
    case OPT_BLOCK2:
      // Understood and of no consequence here: one server per address, responses without a
      // payload (the link-format document fits one datagram).
      return;
    default:
      if ((number & 1) === 0) return; // elective (§5.4.6)
  }
  if (m.badOption < 0) m.badOption = number;
}

/**
 * Encodes a response: `type` ACK (piggybacked on a CON, same message id: §5.2.1), NON (to a NON,
 * own message id: §5.2.3) or RST. `options` are [number, uint value] pairs in ascending order.
 */
export function encodeResponse(
  type: number,
  code: number,
  messageId: number,
  token: Buffer,
  options: readonly (readonly [number, number])[] | null,
  payload: Buffer | null,
): Buffer {
  let size = 4 + token.length;
  if (options) for (const [, v] of options) size += 5 + uintLength(v);
  if (payload && payload.length > 0) size += 1 + payload.length;
  const out = Buffer.allocUnsafe(size);
  out[0] = 0x40 | (type << 4) | token.length;
  out[1] = code;
  out.writeUInt16BE(messageId, 2);
  let i = 4 + token.copy(out, 4);
  let prev = 0;
  if (options) {
    for (const [number, value] of options) {
      const len = uintLength(value);
      const delta = number - prev;
      prev = number;
      if (delta < 13) out[i++] = (delta << 4) | len;
      else if (delta < 269) {
        out[i++] = (13 << 4) | len;
        out[i++] = delta - 13;
      } else {
        out[i++] = (14 << 4) | len;
        out.writeUInt16BE(delta - 269, i);
        i += 2;
      }
      for (let k = len - 1; k >= 0; k--) out[i++] = Math.floor(value / 256 ** k) % 256;
    }
  }
  if (payload && payload.length > 0) {
    out[i++] = 0xff;
    i += payload.copy(out, i);
  }
  return out.subarray(0, i);
}

/** Bytes of the minimal big-endian encoding of `v` (0 for 0: §3.2). */
function uintLength(v: number): number {
  let n = 0;
  while (v > 0 && n < 4) {
    n++;
    v = Math.floor(v / 256);
  }
  return n;
}

/** "2.04" for 0x44. */
export function codeName(code: number): string {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, '0')}`;
}

const METHODS = ['EMPTY', 'GET', 'POST', 'PUT', 'DELETE', 'FETCH', 'PATCH', 'iPATCH'];

export function methodName(code: number): string {
  return code < METHODS.length ? METHODS[code] : codeName(code);
}
