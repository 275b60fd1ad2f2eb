// The sample register maps under protocols/modbus/ parse with the config schema, as pasted under
// `modbus.devices`, and keep the registers their README promises.

import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';

const DIR = new URL('../../protocols/modbus/', import.meta.url);
const files = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

/** Register names each sample must define, in file order: a renamed or dropped register fails. */
const EXPECTED: Record<string, { device: string; registers: string[]; writable: string[] }> = {
  'energy-meter.yaml': {
    device: 'meter-main',
    registers: [
      'voltage_l1',
      'voltage_l2',
      'voltage_l3',
      'current_l1',
      'current_l2',
      'current_l3',
      'power_l1',
      'power_l2',
      'power_l3',
      'power_factor_l1',
      'power_factor_l2',
      'power_factor_l3',
      'power_total',
      'frequency',
      'import_energy',
      'export_energy',
      'demand_max',
      'energy_total',
    ],
    writable: [],
  },
  'motor-drive.yaml': {
    device: 'conveyor-drive',
    registers: [
      'control_word',
      'speed_reference',
      'accel_time',
      'decel_time',
      'ready',
      'running',
      'reverse',
      'fault',
      'warning',
      'at_reference',
      'output_frequency',
      'motor_current',
      'motor_speed',
      'motor_torque',
      'dc_bus_voltage',
      'heatsink_temperature',
      'fault_code',
      'run_hours',
      'energy_counter',
    ],
    writable: ['control_word', 'speed_reference', 'accel_time', 'decel_time'],
  },
  'temperature-controller.yaml': {
    device: 'oven-zone1',
    registers: [
      'process_value',
      'setpoint',
      'output_power',
      'proportional_band',
      'integral_time',
      'derivative_time',
      'ambient',
      'heater_hours',
      'cycle_count',
      'model',
      'firmware',
      'run',
      'autotune',
      'manual_mode',
      'alarm_high',
      'alarm_low',
      'sensor_break',
    ],
    writable: [
      'setpoint',
      'proportional_band',
      'integral_time',
      'derivative_time',
      'run',
      'autotune',
      'manual_mode',
    ],
  },
};

function load(file: string): unknown[] {
  const doc = parse(readFileSync(new URL(file, DIR), 'utf8')) as unknown;
  expect(Array.isArray(doc), `${file} is a list to paste under modbus.devices`).toBe(true);
  return doc as unknown[];
}

describe('protocols/modbus sample register maps', () => {
  it('has exactly the samples this test knows', () => {
    expect(files).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const file of files) {
    it(`${file} parses under modbus.devices with the expected registers`, () => {
      const devices = load(file);
      const config = parseConfig({ modbus: { devices } }, {});
      const want = EXPECTED[file];
      expect(config.modbus.devices.map((d) => d.name)).toEqual([want.device]);
      const [device] = config.modbus.devices;
      expect(device.registers.map((r) => r.name)).toEqual(want.registers);
      expect(device.registers.filter((r) => r.writable).map((r) => r.name)).toEqual(want.writable);
    });
  }

  it('all samples together form one valid modbus section (device names do not collide)', () => {
    const devices = files.flatMap(load);
    const config = parseConfig({ modbus: { devices } }, {});
    expect(config.modbus.devices).toHaveLength(files.length);
  });

  it('the samples keep the layouts their comments describe', () => {
    const byName = (file: string) =>
      new Map(
        parseConfig({ modbus: { devices: load(file) } }, {}).modbus.devices[0].registers.map((r) => [
          r.name,
          r,
        ]),
      );
    const meter = byName('energy-meter.yaml');
    // Every meter value is a float32 input register, big word order.
    expect(
      [...meter.values()].every((r) => r.area === 'input' && r.type === 'float32' && r.wordOrder === 'big'),
    ).toBe(true);
    const drive = byName('motor-drive.yaml');
    expect(drive.get('running')).toMatchObject({ area: 'holding', type: 'bool', bit: 1, address: 8 });
    expect(drive.get('run_hours')).toMatchObject({ type: 'uint32', wordOrder: 'little' });
    const oven = byName('temperature-controller.yaml');
    // Coils and discrete inputs default to bool; scale and offset survive parsing.
    expect(oven.get('run')).toMatchObject({ area: 'coil', type: 'bool', writable: true });
    expect(oven.get('sensor_break')).toMatchObject({ area: 'discrete', type: 'bool', writable: false });
    expect(oven.get('ambient')).toMatchObject({ scale: 0.1, offset: -0.5 });
    expect(oven.get('model')).toMatchObject({ type: 'string', length: 16 });
  });
});
