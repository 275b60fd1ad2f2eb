import { describe, expect, it } from 'vitest';
import type { ModbusRegisterConfig } from '../../src/sources/modbus/config.ts';
import { describeRanges, planReads } from '../../src/sources/modbus/read-plan.ts';

function reg(
  name: string,
  area: ModbusRegisterConfig['area'],
  address: number,
  type = 'uint16',
  length?: number,
) {
  return {
    name,
    area,
    address,
    type: area === 'coil' || area === 'discrete' ? 'bool' : type,
    length,
    byteOrder: 'big',
    wordOrder: 'big',
    scale: 1,
    offset: 0,
    writable: false,
  } as ModbusRegisterConfig;
}

const shape = (registers: ModbusRegisterConfig[], maxGap: number) =>
  planReads(registers, maxGap).map((b) => [
    b.area,
    b.address,
    b.count,
    b.registers.map((r) => `${r.reg.name}@${r.at}`),
  ]);

describe('planReads', () => {
  it("reads the issue's example in one request per area, spanning the gap between neighbours", () => {
    const plan = planReads(
      [
        reg('temperature', 'holding', 0, 'float32'),
        reg('cycles', 'input', 10, 'uint32'),
        reg('running', 'coil', 0),
        reg('pressure', 'holding', 4, 'int16'),
      ],
      16,
    );
    expect(describeRanges(plan)).toBe('holding:0-4,input:10-11,coil:0-0');
    expect(plan[0].registers.map((r) => [r.reg.name, r.at])).toEqual([
      ['temperature', 0],
      ['pressure', 4],
    ]);
  });

  it('splits where the gap is wider than maxGap, and never spans more than 125 registers', () => {
    expect(shape([reg('a', 'holding', 0), reg('b', 'holding', 3), reg('c', 'holding', 10)], 2)).toEqual([
      ['holding', 0, 4, ['a@0', 'b@3']],
      ['holding', 10, 1, ['c@0']],
    ]);
    const many = Array.from({ length: 130 }, (_, i) => reg(`r${i}`, 'holding', i));
    expect(planReads(many, 16).map((b) => [b.address, b.count])).toEqual([
      [0, 125],
      [125, 5],
    ]);
    // A multi-register value is never cut in two: it starts the next read instead.
    expect(
      shape([reg('a', 'holding', 0), reg('f', 'holding', 123, 'float64')], 200).map((b) => b[1]),
    ).toEqual([0, 123]);
  });

  it('coils and discrete inputs join up to 2000 bits, with the gap counted 16 bits per register', () => {
    const bits = [
      reg('c0', 'coil', 0),
      reg('c1', 'coil', 30),
      reg('c2', 'coil', 1999),
      reg('c3', 'coil', 2000),
    ];
    expect(shape(bits, 2).map((b) => [b[1], b[2]])).toEqual([
      [0, 31],
      [1999, 2],
    ]);
  });

  it('overlapping registers (a bit of a word, and the word) share one read', () => {
    const bitOf = { ...reg('alarm', 'holding', 5, 'bool'), bit: 3 } as ModbusRegisterConfig;
    expect(shape([reg('status', 'holding', 5), bitOf], 0)).toEqual([
      ['holding', 5, 1, ['status@0', 'alarm@0']],
    ]);
  });
});
