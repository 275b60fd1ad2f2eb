// Coalesced reads: a device's registers grouped into as few requests as Modbus allows. One read
// covers at most 125 registers or 2000 coils/inputs (the PDU limit of 253 bytes), and spans a gap
// of at most `maxGap` unused addresses (registers; coils and discrete inputs count 16 per
// register) to join two neighbours: reading a few unused addresses costs less than a round trip,
// but some PLCs answer "illegal data address" for a hole in their map, hence a bound.

import { type ModbusRegisterConfig, type RegisterArea, registerCount } from './config.ts';

export const MAX_READ_REGISTERS = 125;
export const MAX_READ_BITS = 2000;

export interface PlannedRegister {
  reg: ModbusRegisterConfig;
  /** Index of its first word (or bit) in the block's result. */
  at: number;
  /** Its position in the register map (the order of the record's values). */
  index: number;
}

/** One request: `count` registers (or bits) of `area` from `address`. */
export interface ReadBlock {
  area: RegisterArea;
  address: number;
  count: number;
  registers: PlannedRegister[];
}

export const isBitArea = (area: RegisterArea): boolean => area === 'coil' || area === 'discrete';

/** The read requests for one poll, by area (holding, input, coil, discrete), each in address order. */
export function planReads(registers: readonly ModbusRegisterConfig[], maxGap: number): ReadBlock[] {
  const blocks: ReadBlock[] = [];
  for (const area of ['holding', 'input', 'coil', 'discrete'] as const) {
    const bits = isBitArea(area);
    const limit = bits ? MAX_READ_BITS : MAX_READ_REGISTERS;
    const gap = bits ? maxGap * 16 : maxGap;
    const inArea = registers
      .map((reg, index) => ({ reg, index }))
      .filter(({ reg }) => reg.area === area)
      .sort((a, b) => a.reg.address - b.reg.address);
    let block: ReadBlock | null = null;
    for (const { reg, index } of inArea) {
      const size = bits ? 1 : registerCount(reg.type, reg.length);
      const end = reg.address + size; // exclusive
      if (
        block !== null &&
        reg.address - (block.address + block.count) <= gap &&
        Math.max(end, block.address + block.count) - block.address <= limit
      ) {
        block.count = Math.max(block.count, end - block.address);
      } else {
        block = { area, address: reg.address, count: size, registers: [] };
        blocks.push(block);
      }
      block.registers.push({ reg, at: reg.address - block.address, index });
    }
  }
  return blocks;
}

/** `holding:0-5,coil:0-0`: the address ranges a poll reads, for the record's attributes. */
export function describeRanges(blocks: readonly ReadBlock[]): string {
  return blocks.map((b) => `${b.area}:${b.address}-${b.address + b.count - 1}`).join(',');
}
