// Every type and order against words written down by hand from the Modbus conventions (big-endian
// registers; "CDAB" = wordOrder little; "BADC" = byteOrder little), and the way back for writes.

import { describe, expect, it } from 'vitest';
import type { ModbusRegisterConfig } from '../../src/sources/modbus/config.ts';
import { decodeRegister, encodeCoil, encodeRegister } from '../../src/sources/modbus/register-codec.ts';

function reg(over: Partial<ModbusRegisterConfig>): ModbusRegisterConfig {
  return {
    name: 'r',
    area: 'holding',
    address: 0,
    type: 'uint16',
    byteOrder: 'big',
    wordOrder: 'big',
    scale: 1,
    offset: 0,
    writable: true,
    ...over,
  } as ModbusRegisterConfig;
}

// 21.5 as float32 is 0x41AC0000; 1.5 as float64 is 0x3FF8000000000000.
const cases: [string, Partial<ModbusRegisterConfig>, number[], unknown][] = [
  ['int16', { type: 'int16' }, [0xfffe], -2],
  ['uint16', { type: 'uint16' }, [0xfffe], 65534],
  ['int16 byte-swapped', { type: 'int16', byteOrder: 'little' }, [0xfeff], -2],
  ['int32 ABCD', { type: 'int32' }, [0xffff, 0xfffd], -3],
  ['uint32 ABCD', { type: 'uint32' }, [0x0001, 0x0002], 65538],
  ['uint32 CDAB', { type: 'uint32', wordOrder: 'little' }, [0x0002, 0x0001], 65538],
  ['uint32 BADC', { type: 'uint32', byteOrder: 'little' }, [0x0100, 0x0200], 65538],
  ['uint32 DCBA', { type: 'uint32', byteOrder: 'little', wordOrder: 'little' }, [0x0200, 0x0100], 65538],
  ['float32 ABCD', { type: 'float32' }, [0x41ac, 0x0000], 21.5],
  ['float32 CDAB', { type: 'float32', wordOrder: 'little' }, [0x0000, 0x41ac], 21.5],
  ['float32 BADC', { type: 'float32', byteOrder: 'little' }, [0xac41, 0x0000], 21.5],
  ['float64 ABCD', { type: 'float64' }, [0x3ff8, 0, 0, 0], 1.5],
  ['float64 little words', { type: 'float64', wordOrder: 'little' }, [0, 0, 0, 0x3ff8], 1.5],
  ['int64', { type: 'int64' }, [0xffff, 0xffff, 0xffff, 0xfffb], -5],
  [
    'uint64 little words',
    { type: 'uint64', wordOrder: 'little' },
    [0x0003, 0x0000, 0x0001, 0x0000],
    2 ** 32 + 3,
  ],
  [
    'uint64 past 2^53 as an exact string',
    { type: 'uint64' },
    [0xffff, 0xffff, 0xffff, 0xffff],
    '18446744073709551615',
  ],
  ['int16 scaled', { type: 'int16', scale: 0.1 }, [1234], 123.4],
  ['uint16 scale and offset', { type: 'uint16', scale: 0.1, offset: -40 }, [3], -39.7],
  ['bit 0', { type: 'bool', bit: 0 }, [0x0001], true],
  ['bit 15', { type: 'bool', bit: 15 }, [0x8000], true],
  ['bit 3 clear', { type: 'bool', bit: 3 }, [0xfff7], false],
  ['bit 0 of a byte-swapped register', { type: 'bool', bit: 0, byteOrder: 'little' }, [0x0100], true],
  ['string', { type: 'string', length: 5 }, [0x4142, 0x4344, 0x4500], 'ABCDE'],
  ['string trailing spaces and NULs trimmed', { type: 'string', length: 6 }, [0x4869, 0x2000, 0x0000], 'Hi'],
  ['string byte-swapped', { type: 'string', length: 4, byteOrder: 'little' }, [0x4241, 0x4443], 'ABCD'],
];

describe('decodeRegister', () => {
  for (const [what, over, words, expected] of cases) {
    it(`${what}: ${words.map((w) => w.toString(16).padStart(4, '0')).join(' ')} -> ${JSON.stringify(expected)}`, () => {
      // At an offset inside a longer read, as coalescing hands them over.
      expect(decodeRegister(reg(over), [0xdead, ...words, 0xbeef], 1)).toEqual(expected);
    });
  }

  it('float32 NaN comes out as NaN, for the poller to flag', () => {
    expect(decodeRegister(reg({ type: 'float32' }), [0x7fc0, 0], 0)).toBeNaN();
  });
});

describe('encodeRegister', () => {
  for (const [what, over, words, value] of cases) {
    if (over.type === 'bool') continue;
    if (what.includes('trimmed')) continue; // trimming loses the padding
    it(`${what}: ${JSON.stringify(value)} -> the same words`, () => {
      expect(encodeRegister(reg(over), value)).toEqual(words);
    });
  }

  it('a string shorter than the register is NUL padded', () => {
    expect(encodeRegister(reg({ type: 'string', length: 4 }), 'A')).toEqual([0x4100, 0x0000]);
  });

  it('refuses what the register cannot hold, saying why', () => {
    expect(() => encodeRegister(reg({ type: 'uint16' }), 70000)).toThrow(/70000 is out of range for uint16/);
    expect(() => encodeRegister(reg({ type: 'int16' }), -40000)).toThrow(/out of range for int16/);
    expect(() => encodeRegister(reg({ type: 'int16', scale: 0.1 }), 12.34)).toThrow(
      /not a multiple of scale 0.1/,
    );
    expect(() => encodeRegister(reg({ type: 'int16', scale: 0.1 }), 4000)).toThrow(
      /out of range for int16 \(raw 40000\)/,
    );
    expect(() => encodeRegister(reg({ type: 'uint16' }), '12')).toThrow(/takes a finite number/);
    expect(() => encodeRegister(reg({ type: 'float32' }), 1e39)).toThrow(/out of range for float32/);
    expect(() => encodeRegister(reg({ type: 'string', length: 2 }), 'ABC')).toThrow(
      /longer than the register's 2/,
    );
    expect(() => encodeRegister(reg({ type: 'uint64' }), 2 ** 60)).toThrow(/decimal string/);
    expect(() => encodeRegister(reg({ type: 'uint64' }), '-1')).toThrow(/out of range for uint64/);
  });

  it('a scaled value is written as its raw register value', () => {
    expect(encodeRegister(reg({ type: 'int16', scale: 0.1 }), 12.3)).toEqual([123]);
    expect(encodeRegister(reg({ type: 'uint16', scale: 0.1, offset: -40 }), -39.7)).toEqual([3]);
  });

  it('coils take booleans or 0/1', () => {
    expect(encodeCoil(true)).toBe(true);
    expect(encodeCoil(0)).toBe(false);
    expect(() => encodeCoil('on')).toThrow(/true or false/);
  });
});
