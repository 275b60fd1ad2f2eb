// The CoAP message format (RFC 7252 §3), only what a client needs: a 4-byte header, a token,
// options as deltas (§3.1), and the payload after a 0xFF marker. Written here rather than taken
// from a library so each device endpoint owns its socket, message ids and tokens (see endpoint.ts).

export const TYPE_CON = 0;
export const TYPE_NON = 1;
export const TYPE_ACK = 2;
export const TYPE_RST = 3;

/** Option numbers used here (RFC 7252 §5.10, RFC 7641 §2). */
export const OPT_OBSERVE = 6;
export const OPT_URI_PATH = 11;
export const OPT_CONTENT_FORMAT = 12;
export const OPT_MAX_AGE = 14;
export const OPT_URI_QUERY = 15;

/** Method codes (RFC 7252 §12.1.1): class 0. */
export const CODE_GET = 0x01;
export const CODE_POST = 0x02;
export const CODE_PUT = 0x03;

export interface CoapOption {
  number: number;
  value: Buffer;
}

export interface CoapMessage {
  type: number;
  /** class << 5 | detail. 0 is the empty message (ACK/RST/ping). */
  code: number;
  messageId: number;
  token: Buffer;
  options: CoapOption[];
  payload: Buffer;
}

const EMPTY: Buffer = Buffer.alloc(0);

/** "2.05" from 0x45. */
export function codeString(code: number): string {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, '0')}`;
}

/** The option's value as an unsigned integer (uint options are big-endian, minimal length, §3.2). */
export function uintOption(msg: CoapMessage, number: number): number | undefined {
  const o = msg.options.find((x) => x.number === number);
  if (!o) return undefined;
  let v = 0;
  for (const b of o.value) v = v * 256 + b;
  return v;
}

export function uintValue(n: number): Buffer {
  if (n === 0) return EMPTY;
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from(bytes);
}

/** Uri-Path options from an absolute path (each segment one option, §6.5). */
export function pathOptions(path: string): CoapOption[] {
  return path
    .split('/')
    .filter((s) => s !== '')
    .map((s) => ({ number: OPT_URI_PATH, value: Buffer.from(decodeURIComponent(s)) }));
}

function nibble(n: number): number {
  return n < 13 ? n : n < 269 ? 13 : 14;
}

function extended(n: number): Buffer {
  if (n < 13) return EMPTY;
  if (n < 269) return Buffer.from([n - 13]);
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n - 269);
  return b;
}

export function encode(msg: CoapMessage): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head[0] = 0x40 | (msg.type << 4) | msg.token.length;
  head[1] = msg.code;
  head.writeUInt16BE(msg.messageId, 2);
  parts.push(head, msg.token);
  // Options in ascending number order (stable: repeated options keep their order), §3.1.
  const opts = [...msg.options].sort((a, b) => a.number - b.number);
  let prev = 0;
  for (const o of opts) {
    const delta = o.number - prev;
    prev = o.number;
    parts.push(Buffer.from([(nibble(delta) << 4) | nibble(o.value.length)]), extended(delta));
    parts.push(extended(o.value.length), o.value);
  }
  if (msg.payload.length > 0) parts.push(Buffer.from([0xff]), msg.payload);
  return Buffer.concat(parts);
}

function readExtended(buf: Buffer, at: number, n: number): [number, number] {
  if (n < 13) return [n, at];
  if (n === 13) {
    if (at >= buf.length) throw new Error('truncated option');
    return [buf[at] + 13, at + 1];
  }
  if (n === 14) {
    if (at + 2 > buf.length) throw new Error('truncated option');
    return [buf.readUInt16BE(at) + 269, at + 2];
  }
  throw new Error('reserved option nibble 15');
}

/** Parses a datagram; throws on a malformed one (the caller drops it, §4.2: "silently ignored"). */
export function decode(buf: Buffer): CoapMessage {
  if (buf.length < 4) throw new Error('shorter than the CoAP header');
  if (buf[0] >> 6 !== 1) throw new Error('not CoAP version 1');
  const type = (buf[0] >> 4) & 3;
  const tkl = buf[0] & 0x0f;
  if (tkl > 8) throw new Error('token longer than 8 bytes');
  const code = buf[1];
  const messageId = buf.readUInt16BE(2);
  if (4 + tkl > buf.length) throw new Error('truncated token');
  const token = buf.subarray(4, 4 + tkl);
  const options: CoapOption[] = [];
  let at = 4 + tkl;
  let number = 0;
  let payload = EMPTY;
  while (at < buf.length) {
    const b = buf[at++];
    if (b === 0xff) {
      payload = buf.subarray(at);
      if (payload.length === 0) throw new Error('payload marker with no payload');
      break;
    }
    let delta: number;
    let len: number;
    [delta, at] = readExtended(buf, at, b >> 4);
    [len, at] = readExtended(buf, at, b & 0x0f);
    if (at + len > buf.length) throw new Error('truncated option value');
    number += delta;
    options.push({ number, value: buf.subarray(at, at + len) });
    at += len;
  }
  return { type, code, messageId, token, options, payload };
}

/** An ACK or RST with no code, token or payload (§4.2, §4.3). */
export function emptyMessage(type: number, messageId: number): Buffer {
  const b = Buffer.alloc(4);
  b[0] = 0x40 | (type << 4);
  b.writeUInt16BE(messageId, 2);
  return b;
}
