// `modbus:`: the PLCs the poller reads over Modbus TCP, and the registers Gateway.Command may
// write (README: PLCs over Modbus TCP).

import * as z from 'zod';
import {
  componentName,
  describeValue,
  integer,
  nonEmpty,
  port,
  retry,
  section,
  timerMs,
  uniqueNames,
} from '../../config/fields.ts';

export const AREAS = ['holding', 'input', 'coil', 'discrete'] as const;
export const TYPES = [
  'int16',
  'uint16',
  'int32',
  'uint32',
  'float32',
  'int64',
  'uint64',
  'float64',
  'bool',
  'string',
] as const;
export type RegisterArea = (typeof AREAS)[number];
export type RegisterType = (typeof TYPES)[number];

const ORDER = z.enum(['big', 'little']);

/** Registers a type spans (string: `length` characters, two per register). */
export function registerCount(type: RegisterType, length = 0): number {
  switch (type) {
    case 'int32':
    case 'uint32':
    case 'float32':
      return 2;
    case 'int64':
    case 'uint64':
    case 'float64':
      return 4;
    case 'string':
      return Math.ceil(length / 2);
    default:
      return 1;
  }
}

const register = z
  .strictObject({
    name: componentName(),
    area: z.enum(AREAS),
    address: integer(0, 65535),
    // Default: bool for coils and discrete inputs, uint16 for registers.
    type: z.enum(TYPES).optional(),
    // `string`: characters (bytes), two per register; trailing NULs and spaces are trimmed.
    length: integer(1, 250).optional(),
    // `bool` on a holding or input register: which bit (0 = least significant).
    bit: integer(0, 15).optional(),
    // Byte order inside each 16-bit register, and register order of multi-register values.
    byteOrder: ORDER.default('big'),
    wordOrder: ORDER.default('big'),
    // Published value = raw * scale + offset (numbers only).
    scale: z.number().refine(Number.isFinite, { error: 'must be a finite number' }).default(1),
    offset: z.number().refine(Number.isFinite, { error: 'must be a finite number' }).default(0),
    unit: nonEmpty().optional(),
    // Report-by-exception: publish only after the value moved by more than this (numbers).
    deadband: z.number().nonnegative({ error: 'must be >= 0' }).optional(),
    // Gateway.Command may write it: off by default, a PLC is machinery.
    writable: z.boolean().default(false),
  })
  .transform((r) => ({
    ...r,
    type: r.type ?? (r.area === 'coil' || r.area === 'discrete' ? 'bool' : 'uint16'),
  }))
  .superRefine((r, ctx) => {
    const bitArea = r.area === 'coil' || r.area === 'discrete';
    if (bitArea && r.type !== 'bool')
      ctx.addIssue({
        code: 'custom',
        path: ['type'],
        message: `must be bool for a ${r.area} (got ${describeValue(r.type)})`,
      });
    if (r.type === 'string' && r.length === undefined)
      ctx.addIssue({ code: 'custom', path: ['length'], message: 'required for type string (characters)' });
    if (r.type !== 'string' && r.length !== undefined)
      ctx.addIssue({ code: 'custom', path: ['length'], message: 'only for type string' });
    if (r.bit !== undefined && (bitArea || r.type !== 'bool'))
      ctx.addIssue({
        code: 'custom',
        path: ['bit'],
        message: 'only for type bool on a holding or input register',
      });
    if (!bitArea && r.type === 'bool' && r.bit === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['bit'],
        message: `required for type bool on a ${r.area} register (which bit, 0..15)`,
      });
    const end = r.address + registerCount(r.type, r.length) - 1;
    if (end > 65535)
      ctx.addIssue({
        code: 'custom',
        path: ['address'],
        message: `a ${r.type} at ${r.address} would end past register 65535`,
      });
    if (r.writable && (r.area === 'input' || r.area === 'discrete'))
      ctx.addIssue({
        code: 'custom',
        path: ['writable'],
        message: `${r.area === 'input' ? 'an input register' : 'a discrete input'} is read-only in Modbus`,
      });
    // Writing one bit would be a read-modify-write of the whole register, racing the PLC's own writes.
    if (r.writable && r.bit !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['writable'],
        message: 'one bit of a register cannot be written',
      });
    if (r.scale === 0) ctx.addIssue({ code: 'custom', path: ['scale'], message: 'must not be 0' });
  });

const device = z.strictObject({
  name: componentName(),
  host: nonEmpty(),
  port: port().default(502),
  // 0..247 are unit addresses; 255 is what many TCP-only devices answer to.
  unitId: integer(0, 255).default(1),
  intervalMs: timerMs(10).prefault('1s'),
  timeoutMs: timerMs(1).prefault('1s'),
  topic: nonEmpty(),
  // Unused registers one read may span to join two neighbouring ones (coils/inputs: 16 bits each).
  maxGap: integer(0, 124).default(16),
  // Report-by-exception: a value is sent only when it changed (beyond its deadband), with a full
  // snapshot every `fullEvery` polls. Absent: every poll sends every value.
  reportByException: z.strictObject({ fullEvery: integer(1).default(60) }).optional(),
  registers: uniqueNames(register, 'register', 'registers').min(1, { error: 'at least one register' }),
});

export const modbusConfig = section({
  // Reconnect backoff for a PLC whose connection failed or dropped.
  retry,
  devices: uniqueNames(device, 'device', 'devices').default(() => []),
});

export type ModbusConfig = z.output<typeof modbusConfig>;
export type ModbusDeviceConfig = ModbusConfig['devices'][number];
export type ModbusRegisterConfig = ModbusDeviceConfig['registers'][number];
