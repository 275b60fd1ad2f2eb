// The observer's CoAP message codec (RFC 7252 §3) against bytes written out by hand, and the
// Content-Format names records carry.

import { describe, expect, it } from 'vitest';
import {
  CODE_GET,
  codeString,
  decode,
  encode,
  OPT_CONTENT_FORMAT,
  OPT_OBSERVE,
  pathOptions,
  TYPE_CON,
  uintOption,
  uintValue,
} from '../../src/sources/coap-observer/codec.ts';
import { formatOf, mediaTypeOf } from '../../src/sources/coap-observer/content-format.ts';

describe('CoAP codec', () => {
  it('encodes a GET with Observe and Uri-Path as RFC 7252 §3 lays it out', () => {
    const buf = encode({
      type: TYPE_CON,
      code: CODE_GET,
      messageId: 0x1234,
      token: Buffer.from([0xab]),
      options: [...pathOptions('/temp'), { number: OPT_OBSERVE, value: uintValue(0) }],
      payload: Buffer.alloc(0),
    });
    // ver 1, CON, TKL 1 | GET | mid | token | Observe (delta 6, len 0) | Uri-Path (delta 5, len 4) "temp"
    expect(buf.toString('hex')).toBe(
      `410112 34ab 60 54${Buffer.from('temp').toString('hex')}`.replace(/ /g, ''),
    );
  });

  it('round-trips extended option deltas and lengths (13 and 14 nibbles) and a payload', () => {
    const long = Buffer.alloc(300, 0x61);
    const msg = {
      type: 1,
      code: 0x45,
      messageId: 7,
      token: Buffer.from('0102030405060708', 'hex'),
      options: [
        { number: OPT_CONTENT_FORMAT, value: uintValue(60) },
        { number: 60, value: uintValue(1024) },
        { number: 2000, value: long },
      ],
      payload: Buffer.from('{"t":1}'),
    };
    const back = decode(encode(msg));
    expect(back).toMatchObject({ type: 1, code: 0x45, messageId: 7 });
    expect(back.token.equals(msg.token)).toBe(true);
    expect(back.options.map((o) => o.number)).toEqual([12, 60, 2000]);
    expect(uintOption(back, 60)).toBe(1024);
    expect(back.options[2].value.equals(long)).toBe(true);
    expect(back.payload.toString()).toBe('{"t":1}');
    expect(codeString(back.code)).toBe('2.05');
  });

  it('rejects malformed datagrams instead of reading past them', () => {
    expect(() => decode(Buffer.from([0x40, 0x45]))).toThrow(/header/);
    expect(() => decode(Buffer.from([0x80, 0x45, 0, 1]))).toThrow(/version/);
    expect(() => decode(Buffer.from([0x49, 0x45, 0, 1]))).toThrow(/token/);
    expect(() => decode(Buffer.from([0x40, 0x45, 0, 1, 0x0d]))).toThrow(/truncated/);
    expect(() => decode(Buffer.from([0x40, 0x45, 0, 1, 0x14, 0x61]))).toThrow(/truncated/);
    expect(() => decode(Buffer.from([0x40, 0x45, 0, 1, 0xff]))).toThrow(/payload marker/);
    expect(() => decode(Buffer.from([0x40, 0x45, 0, 1, 0xf0]))).toThrow(/nibble 15/);
  });

  it('names Content-Formats and parses command content types', () => {
    expect(mediaTypeOf(50)).toBe('application/json');
    expect(mediaTypeOf(0)).toBe('text/plain;charset=utf-8');
    expect(mediaTypeOf(60)).toBe('application/cbor');
    expect(mediaTypeOf(11542)).toBe('11542');
    expect(mediaTypeOf(undefined)).toBe('');
    expect(formatOf('application/json')).toBe(50);
    expect(formatOf('text/plain; charset=utf-8')).toBe(0);
    expect(formatOf('text/plain')).toBe(0);
    expect(formatOf('112')).toBe(112);
    expect(formatOf('')).toBeUndefined();
    expect(formatOf('image/png')).toBeNull();
    expect(formatOf('70000')).toBeNull();
  });
});
