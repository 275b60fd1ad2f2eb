// The modbus section: defaults, and errors that name the device, the register and the field.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/core/errors.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeferry-modbus-config-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The ConfigError message `fn` throws; fails the test if it throws anything else or nothing. */
function configErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}

const invalid = (raw: unknown) => configErrorOf(() => parseConfig(raw, {}));

const device = (registers: unknown[], over: Record<string, unknown> = {}) => ({
  name: 'plc1',
  host: '127.0.0.1',
  topic: 'plant/plc1',
  registers,
  ...over,
});

/** The one problem line about `modbus.devices[0].registers[0]` for a single bad register. */
const registerError = (register: Record<string, unknown>) =>
  invalid({ modbus: { devices: [device([{ name: 'r', ...register }])] } });

describe('modbus config', () => {
  it('fills the defaults: port 502, unit 1, 1 s poll and timeout, maxGap 16, uint16/bool, big endian', () => {
    const { modbus } = parseConfig(
      {
        modbus: {
          devices: [
            device(
              [
                { name: 'level', area: 'holding', address: 4 },
                { name: 'pump', area: 'coil', address: 0 },
                { name: 'door', area: 'discrete', address: 3 },
              ],
              { reportByException: {} },
            ),
          ],
        },
      },
      {},
    );
    expect(modbus.devices[0]).toMatchObject({
      port: 502,
      unitId: 1,
      intervalMs: 1000,
      timeoutMs: 1000,
      maxGap: 16,
      reportByException: { fullEvery: 60 },
    });
    expect(modbus.devices[0].registers).toEqual([
      {
        name: 'level',
        area: 'holding',
        address: 4,
        type: 'uint16',
        byteOrder: 'big',
        wordOrder: 'big',
        scale: 1,
        offset: 0,
        writable: false,
      },
      expect.objectContaining({ name: 'pump', type: 'bool', writable: false }),
      expect.objectContaining({ name: 'door', type: 'bool', writable: false }),
    ]);
    expect(parseConfig({}, {}).modbus.devices).toEqual([]);
  });

  it('accepts values that end exactly at register 65535', () => {
    const { modbus } = parseConfig(
      {
        modbus: {
          devices: [
            device([
              { name: 'u32', area: 'holding', address: 65534, type: 'uint32' },
              { name: 'f64', area: 'input', address: 65532, type: 'float64' },
              { name: 's5', area: 'input', address: 65533, type: 'string', length: 5 },
            ]),
          ],
        },
      },
      {},
    );
    expect(modbus.devices[0].registers.map((r) => r.address)).toEqual([65534, 65532, 65533]);
  });

  it('a coil or discrete input is bool only', () => {
    expect(registerError({ area: 'coil', address: 0, type: 'float32' })).toContain(
      'modbus.devices[0].registers[0].type: must be bool for a coil (got "float32")',
    );
    expect(registerError({ area: 'discrete', address: 0, type: 'uint16' })).toContain(
      'modbus.devices[0].registers[0].type: must be bool for a discrete (got "uint16")',
    );
  });

  it('a string needs its length, and only a string has one', () => {
    expect(registerError({ area: 'holding', address: 0, type: 'string' })).toContain(
      'modbus.devices[0].registers[0].length: required for type string (characters)',
    );
    expect(registerError({ area: 'holding', address: 0, type: 'int16', length: 4 })).toContain(
      'modbus.devices[0].registers[0].length: only for type string',
    );
  });

  it('input registers and discrete inputs cannot be writable, nor can one bit of a register', () => {
    expect(registerError({ area: 'input', address: 1, writable: true })).toContain(
      'modbus.devices[0].registers[0].writable: an input register is read-only in Modbus',
    );
    expect(registerError({ area: 'discrete', address: 1, writable: true })).toContain(
      'modbus.devices[0].registers[0].writable: a discrete input is read-only in Modbus',
    );
    expect(registerError({ area: 'holding', address: 1, type: 'bool', bit: 2, writable: true })).toContain(
      'modbus.devices[0].registers[0].writable: one bit of a register cannot be written',
    );
  });

  it('bool on a register needs a bit in 0..15; a bit is only for bool on a register', () => {
    expect(registerError({ area: 'holding', address: 2, type: 'bool' })).toContain(
      'modbus.devices[0].registers[0].bit: required for type bool on a holding register (which bit, 0..15)',
    );
    expect(registerError({ area: 'input', address: 2, type: 'bool' })).toContain(
      'modbus.devices[0].registers[0].bit: required for type bool on a input register (which bit, 0..15)',
    );
    expect(registerError({ area: 'holding', address: 2, type: 'bool', bit: 16 })).toContain(
      'modbus.devices[0].registers[0].bit: must be an integer in 0..15 (got 16)',
    );
    expect(registerError({ area: 'coil', address: 0, bit: 3 })).toContain(
      'modbus.devices[0].registers[0].bit: only for type bool on a holding or input register',
    );
    expect(registerError({ area: 'holding', address: 0, type: 'uint16', bit: 3 })).toContain(
      'modbus.devices[0].registers[0].bit: only for type bool on a holding or input register',
    );
  });

  it('a value may not run past register 65535', () => {
    expect(registerError({ area: 'holding', address: 65535, type: 'uint32' })).toContain(
      'modbus.devices[0].registers[0].address: a uint32 at 65535 would end past register 65535',
    );
    expect(registerError({ area: 'input', address: 65533, type: 'float64' })).toContain(
      'modbus.devices[0].registers[0].address: a float64 at 65533 would end past register 65535',
    );
    expect(registerError({ area: 'input', address: 65534, type: 'string', length: 5 })).toContain(
      'modbus.devices[0].registers[0].address: a string at 65534 would end past register 65535',
    );
    expect(registerError({ area: 'holding', address: 70000 })).toContain(
      'modbus.devices[0].registers[0].address: must be an integer in 0..65535 (got 70000)',
    );
  });

  it('names bad enums, scale 0 and a negative deadband', () => {
    expect(registerError({ area: 'register', address: 1 })).toContain(
      'modbus.devices[0].registers[0].area: expected one of holding|input|coil|discrete (got "register")',
    );
    expect(registerError({ area: 'holding', address: 1, type: 'float16' })).toContain(
      'modbus.devices[0].registers[0].type: expected one of int16|uint16|int32|uint32|float32|int64|uint64|float64|bool|string (got "float16")',
    );
    expect(registerError({ area: 'holding', address: 1, wordOrder: 'middle' })).toContain(
      'modbus.devices[0].registers[0].wordOrder: expected one of big|little (got "middle")',
    );
    expect(registerError({ area: 'holding', address: 1, scale: 0 })).toContain(
      'modbus.devices[0].registers[0].scale: must not be 0',
    );
    expect(registerError({ area: 'holding', address: 1, deadband: -1 })).toContain(
      'modbus.devices[0].registers[0].deadband: must be >= 0',
    );
  });

  it('register names are unique within a device, each duplicate reported at its index', () => {
    const message = invalid({
      modbus: {
        devices: [
          device([
            { name: 'a', area: 'holding', address: 0 },
            { name: 'b', area: 'holding', address: 1 },
            { name: 'a', area: 'coil', address: 0 },
          ]),
          // The same register name on another device is fine.
          device([{ name: 'a', area: 'holding', address: 0 }], { name: 'plc2' }),
        ],
      },
    });
    expect(message.trim().split('\n').slice(1)).toEqual([
      '  modbus.devices[0].registers[2].name: duplicate register name "a" (also used by registers[0])',
    ]);
  });

  it('device names are unique across modbus.devices and coap.devices (Gateway.Command addresses by name)', () => {
    const reg = [{ name: 'r', area: 'holding', address: 0 }];
    expect(invalid({ modbus: { devices: [device(reg), device(reg, { host: '127.0.0.2' })] } })).toContain(
      'modbus.devices[1].name: duplicate device name "plc1" (also used by devices[0])',
    );
    expect(
      invalid({
        coap: { devices: [{ name: 'plc1', url: 'coap://127.0.0.1' }] },
        modbus: { devices: [device(reg, { name: 'plc0' }), device(reg)] },
      }),
    ).toContain('modbus.devices[1].name: duplicate device name "plc1" (also a coap.devices name)');
  });

  it('names device-level bounds: unit id, port, poll interval, maxGap, an empty register list, names', () => {
    const reg = [{ name: 'r', area: 'holding', address: 0 }];
    const message = invalid({
      modbus: {
        devices: [
          device(reg, { name: 'd0', unitId: 256 }),
          device(reg, { name: 'd1', port: 70000 }),
          device(reg, { name: 'd2', intervalMs: '5ms' }),
          device(reg, { name: 'd3', maxGap: 125 }),
          device([], { name: 'd4' }),
          device(reg, { name: 'd 5' }),
        ],
      },
    });
    expect(message).toContain('modbus.devices[0].unitId: must be an integer in 0..255 (got 256)');
    expect(message).toContain('modbus.devices[1].port: must be an integer in 0..65535 (got 70000)');
    expect(message).toContain('modbus.devices[2].intervalMs: must be at least 10 ms (got "5ms")');
    expect(message).toContain('modbus.devices[3].maxGap: must be an integer in 0..124 (got 125)');
    expect(message).toContain('modbus.devices[4].registers: at least one register');
    expect(message).toContain('modbus.devices[5].name: must match [A-Za-z0-9_.-]+ (got "d 5")');
  });

  it('a config file error carries the line and column of the bad register field', () => {
    const file = path.join(tmp, 'modbus.yaml');
    fs.writeFileSync(
      file,
      [
        'modbus:',
        '  devices:',
        '    - name: plc1',
        '      host: 127.0.0.1',
        '      topic: plant/plc1',
        '      registers:',
        '        - { name: ok, area: holding, address: 0 }',
        '        - { name: temp, area: coil, address: 1, type: float32 }',
        '',
      ].join('\n'),
    );
    expect(configErrorOf(() => loadConfigFile(file, {}))).toContain(
      `${file}:8:49: modbus.devices[0].registers[1].type: must be bool for a coil (got "float32")`,
    );
  });
});
