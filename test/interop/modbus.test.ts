// Interop of the Modbus TCP poller with pymodbus (Debian python3-pymodbus), a Modbus server
// nobody on this project wrote: test/interop/pymodbus-server.py packs every value with Python's
// struct, so each expectation below follows from the Modbus convention (registers big-endian on
// the wire, Modbus application protocol v1.1b3 section 4.2), not from our decoder.

import { type ChildProcess, spawn } from 'node:child_process';
import { status as grpcStatus } from '@grpc/grpc-js';
import modbusSerial from 'modbus-serial';
import { afterEach, describe, expect } from 'vitest';
import { type GatewayClient, gatewayClient } from '../grpc/grpc-client.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver, type ReceivedRecord } from '../helpers/http-receiver.ts';
import { itWithPeer, pymodbus } from './peer-tools.ts';

// The package's CommonJS export under its `default` key, which its types declare.
const ModbusRTU = modbusSerial.default;
const python = pymodbus();
const SERVER_SCRIPT = new URL('./pymodbus-server.py', import.meta.url).pathname;
// The only unit id the script's server answers (it ignores requests for any other).
const UNIT = 7;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface PyServer {
  port: number;
  stop(): Promise<void>;
}

/** Starts pymodbus-server.py on 127.0.0.1 (`port` 0: the kernel picks); resolves once it listens. */
function startPymodbus(port = 0): Promise<PyServer> {
  const proc: ChildProcess = spawn(python.paths.python3, [SERVER_SCRIPT, String(port), String(UNIT)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  cleanups.push(stop);
  let out = '';
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => {
    err += c;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`pymodbus server did not start; stderr: ${err}`)),
      30_000,
    );
    proc.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = /^listening (\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ port: Number(m[1]), stop });
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`pymodbus server exited (${proc.exitCode}); stderr: ${err}`));
    });
  });
}

/** The register map of pymodbus-server.py, as an operator would configure it. */
const REGISTERS = [
  { name: 'temperature', area: 'holding', address: 0, type: 'float32', unit: '°C' },
  { name: 'offset', area: 'holding', address: 2, type: 'float32', wordOrder: 'little' },
  { name: 'delta', area: 'holding', address: 4, type: 'int16' },
  { name: 'energy', area: 'holding', address: 5, type: 'uint32', unit: 'Wh' },
  { name: 'counter', area: 'holding', address: 7, type: 'int64' },
  { name: 'big', area: 'holding', address: 11, type: 'uint64' },
  { name: 'tag', area: 'holding', address: 15, type: 'string', length: 8 },
  { name: 'pressure', area: 'holding', address: 19, type: 'int16', scale: 0.1, unit: 'bar' },
  { name: 'setpoint', area: 'holding', address: 20, type: 'uint16', writable: true },
  { name: 'ready', area: 'holding', address: 21, type: 'bool', bit: 0 },
  { name: 'alarm', area: 'holding', address: 21, type: 'bool', bit: 1 },
  { name: 'heating', area: 'holding', address: 21, type: 'bool', bit: 2 },
  { name: 'broken', area: 'holding', address: 22, type: 'float32' },
  { name: 'swapped', area: 'holding', address: 24, type: 'uint16', byteOrder: 'little' },
  { name: 'precise', area: 'holding', address: 30, type: 'float64' },
  { name: 'flow', area: 'holding', address: 40, type: 'int32', wordOrder: 'little' },
  { name: 'limit', area: 'holding', address: 50, type: 'float32', wordOrder: 'little', writable: true },
  // Past the server's 100 holding registers: exception 2 (illegal data address).
  { name: 'missing', area: 'holding', address: 200, type: 'uint16' },
  { name: 'voltage', area: 'input', address: 10, type: 'float32', unit: 'V' },
  { name: 'frequency', area: 'input', address: 12, type: 'uint16', scale: 0.01, offset: 0.5 },
  { name: 'running', area: 'coil', address: 0 },
  { name: 'fault', area: 'coil', address: 1 },
  { name: 'pump', area: 'coil', address: 3 },
  { name: 'enable', area: 'coil', address: 5, writable: true },
  { name: 'door', area: 'discrete', address: 0 },
  { name: 'estop', area: 'discrete', address: 1 },
];

interface ModbusPayload {
  ts: number;
  values: Record<string, number | boolean | string | null>;
  quality?: Record<string, string>;
  units?: Record<string, string>;
}

type ModbusRecord = ReceivedRecord & { attributes?: Record<string, string> };

async function gateway(
  port: number,
  over: Record<string, unknown> = {},
): Promise<{ d: DaemonHandle; up: HttpReceiver; records: () => ModbusRecord[] }> {
  const up = new HttpReceiver();
  await up.start();
  cleanups.push(() => up.stop());
  const dir = tempDir('edgeferry-modbus-interop-');
  const cfg = baseConfig(dir, {
    modbus: {
      retry: { minMs: '50ms', maxMs: '500ms' },
      devices: [
        {
          name: 'pyplc',
          host: '127.0.0.1',
          port,
          unitId: UNIT,
          intervalMs: '200ms',
          timeoutMs: '2s',
          topic: 'plant/pyplc',
          registers: REGISTERS,
          ...over,
        },
      ],
    },
    sinks: [{ name: 'cloud', type: 'http', url: up.url, payloadEncoding: 'utf8', batch: { lingerMs: 5 } }],
  });
  const d = await startDaemon(dir, writeConfig(dir, cfg));
  cleanups.push(() => d.stop());
  const records = () => up.records.filter((r) => r.source === 'modbus') as ModbusRecord[];
  return { d, up, records };
}

const payloadOf = (r: ModbusRecord) => JSON.parse(r.payload) as ModbusPayload;

/** Resolves with the first record (in arrival order, from index `from`) whose payload passes `pred`. */
async function recordWhere(
  records: () => ModbusRecord[],
  pred: (p: ModbusPayload) => boolean,
  what: string,
  from = 0,
): Promise<ModbusPayload> {
  let found: ModbusPayload | undefined;
  await eventually(
    () => {
      found = records().slice(from).map(payloadOf).find(pred);
      return found !== undefined;
    },
    what,
    30_000,
  );
  return found!;
}

function command(
  client: GatewayClient,
  req: object,
  deadlineMs = 10_000,
): Promise<{ code: string; payload: Buffer; contentType: string }> {
  return new Promise((resolve, reject) =>
    client.Command(
      req,
      { deadline: Date.now() + deadlineMs },
      (err: Error | null, res: { code: string; payload: Buffer; contentType: string }) =>
        err ? reject(err) : resolve(res),
    ),
  );
}

/** A modbus-serial client of its own, to look at the server's registers behind the gateway. */
async function rawClient(port: number): Promise<InstanceType<typeof ModbusRTU>> {
  const c = new ModbusRTU();
  await c.connectTCP('127.0.0.1', { port });
  c.setID(UNIT);
  c.setTimeout(5000);
  cleanups.push(() => new Promise<void>((resolve) => c.close(() => resolve())));
  return c;
}

/** The two registers of a float32 in little word order: least significant register first. */
function littleWordFloat32(value: number): number[] {
  const b = Buffer.alloc(4);
  b.writeFloatBE(value);
  return [b.readUInt16BE(2), b.readUInt16BE(0)];
}

describe('Modbus poller interop (pymodbus)', () => {
  itWithPeer(
    python,
    'decodes every type, byte and word order from a pymodbus server into one JSON record per poll',
    async () => {
      const server = await startPymodbus();
      const { records } = await gateway(server.port);
      await eventually(() => records().length >= 2, 'two polls delivered', 30_000);

      const [first, second] = records();
      expect(first).toMatchObject({
        source: 'modbus',
        device: 'pyplc',
        topic: 'plant/pyplc',
        contentType: 'application/json',
      });
      // Holding 0..51 joins over gaps of at most 8 unused registers (maxGap 16); 200 stands apart.
      expect(first.attributes).toEqual({
        unitId: String(UNIT),
        ranges: 'holding:0-51,holding:200-200,input:10-12,coil:0-5,discrete:0-1',
      });
      const p = payloadOf(first);
      // Poll start, in ms since the epoch: before the record was ingested, and polls move on.
      expect(Number.isSafeInteger(p.ts)).toBe(true);
      expect(p.ts).toBeLessThanOrEqual(first.ts);
      expect(payloadOf(second).ts).toBeGreaterThan(p.ts);

      const { values } = p;
      expect(Object.keys(values).sort()).toEqual(REGISTERS.map((r) => r.name).sort());
      // float32 values exact in binary: 21.5, -3.25, 230.25 and 10 decode to exactly these.
      expect(values.temperature).toBe(21.5);
      expect(values.offset).toBe(-3.25);
      expect(values.delta).toBe(-1234);
      expect(values.energy).toBe(3_000_000_000);
      expect(values.counter).toBe(-1_234_567_890_123);
      // 2^63 + 5 is past Number.MAX_SAFE_INTEGER: a decimal string, every digit kept.
      expect(values.big).toBe('9223372036854775813');
      expect(values.tag).toBe('EF-PLC01');
      expect(values.pressure).toBeCloseTo(123.4, 10);
      expect(values.setpoint).toBe(500);
      // Status word 0b101: bit 0 and bit 2 set.
      expect([values.ready, values.alarm, values.heating]).toEqual([true, false, true]);
      expect(values.broken).toBeNull();
      // Register 0x1234 with its two bytes swapped.
      expect(values.swapped).toBe(0x3412);
      expect(values.precise).toBe(1234.5678);
      expect(values.flow).toBe(-100_000);
      expect(values.limit).toBe(10);
      expect(values.missing).toBeNull();
      expect(values.voltage).toBe(230.25);
      // raw 4242 * 0.01 + 0.5
      expect(values.frequency).toBeCloseTo(42.92, 10);
      expect([values.running, values.fault, values.pump, values.enable]).toEqual([true, false, true, false]);
      expect([values.door, values.estop]).toEqual([false, true]);
      expect(p.quality).toEqual({ broken: 'non-finite', missing: 'exception:2' });
      expect(p.units).toEqual({ temperature: '°C', energy: 'Wh', pressure: 'bar', voltage: 'V' });
    },
    90_000,
  );

  itWithPeer(
    python,
    'Gateway.Command writes a holding register, a little-word-order float32 and a coil; read-only registers are refused',
    async () => {
      const server = await startPymodbus();
      const { d, records } = await gateway(server.port);
      await eventually(() => records().length >= 1, 'a first poll delivered', 30_000);
      const client = gatewayClient(`127.0.0.1:${d.grpcPort}`);
      cleanups.push(async () => client.close());
      const raw = await rawClient(server.port);

      const setpoint = await command(client, {
        device: 'pyplc',
        target: 'setpoint',
        payload: Buffer.from('777'),
        contentType: 'application/json',
      });
      expect(setpoint.code, setpoint.payload.toString()).toBe('ok');
      expect(() => JSON.parse(setpoint.payload.toString())).not.toThrow();
      expect((await raw.readHoldingRegisters(20, 1)).data).toEqual([777]);

      const limit = await command(client, {
        device: 'pyplc',
        target: 'limit',
        payload: Buffer.from('42.5'),
        contentType: '',
      });
      expect(limit.code, limit.payload.toString()).toBe('ok');
      // What the device holds, read past the gateway: the low word of 42.5 first.
      expect((await raw.readHoldingRegisters(50, 2)).data).toEqual(littleWordFloat32(42.5));

      const enable = await command(client, {
        device: 'pyplc',
        target: 'enable',
        payload: Buffer.from('true'),
        contentType: 'application/json',
      });
      expect(enable.code, enable.payload.toString()).toBe('ok');
      expect((await raw.readCoils(5, 1)).data[0]).toBe(true);

      const n = records().length;
      const later = await recordWhere(
        records,
        (p) => p.values.setpoint === 777 && p.values.limit === 42.5 && p.values.enable === true,
        'a poll after the writes shows all three new values',
        n,
      );
      // The other values are untouched by the writes.
      expect(later.values).toMatchObject({ temperature: 21.5, delta: -1234, running: true, flow: -100_000 });

      // Not marked writable: refused before anything goes on the wire.
      for (const target of ['temperature', 'voltage', 'estop', 'heating']) {
        await expect(
          command(client, {
            device: 'pyplc',
            target,
            payload: Buffer.from('1'),
            contentType: 'application/json',
          }),
          target,
        ).rejects.toMatchObject({ code: grpcStatus.PERMISSION_DENIED });
      }
      await expect(
        command(client, { device: 'pyplc', target: 'nope', payload: Buffer.from('1') }),
      ).rejects.toMatchObject({ code: grpcStatus.NOT_FOUND });
      const temperature = (await raw.readHoldingRegisters(0, 2)).buffer;
      expect(temperature.readFloatBE(0)).toBe(21.5);

      const status = await d.status();
      const src = status.sources.find((s) => s.name === 'modbus') as unknown as {
        counters: { devices: { name: string; connected: boolean; polls: number }[] };
      };
      expect(src.counters.devices).toEqual([
        expect.objectContaining({ name: 'pyplc', connected: true, polls: expect.any(Number) }),
      ]);
      expect(src.counters.devices[0].polls).toBeGreaterThanOrEqual(2);
    },
    90_000,
  );

  itWithPeer(
    python,
    'a unit id the server does not answer gives null values with quality "timeout"',
    async () => {
      const server = await startPymodbus();
      // pymodbus drops requests for other unit ids without a response.
      const { records } = await gateway(server.port, {
        unitId: UNIT + 1,
        timeoutMs: '300ms',
        registers: [
          { name: 'temperature', area: 'holding', address: 0, type: 'float32' },
          { name: 'running', area: 'coil', address: 0 },
        ],
      });
      const p = await recordWhere(records, (x) => x.quality !== undefined, 'a poll that timed out');
      expect(p.values).toEqual({ temperature: null, running: null });
      expect(p.quality).toEqual({ temperature: 'timeout', running: 'timeout' });
      expect(records()[0].attributes?.unitId).toBe(String(UNIT + 1));
    },
    90_000,
  );

  itWithPeer(
    python,
    'reconnects after the pymodbus server restarts on the same port',
    async () => {
      let server = await startPymodbus();
      const port = server.port;
      const { d, records } = await gateway(port, {
        registers: [{ name: 'temperature', area: 'holding', address: 0, type: 'float32' }],
      });
      await recordWhere(records, (p) => p.values.temperature === 21.5, 'a good poll');
      const device = async () => {
        const src = (await d.status()).sources.find((s) => s.name === 'modbus') as unknown as {
          counters: { devices: { name: string; connected: boolean }[] };
        };
        return src.counters.devices[0];
      };
      expect(await device()).toMatchObject({ name: 'pyplc', connected: true });

      await server.stop();
      await eventually(async () => (await device()).connected === false, 'the poller noticed', 30_000);
      server = await startPymodbus(port);
      const n = records().length;
      await recordWhere(records, (p) => p.values.temperature === 21.5, 'a good poll after the restart', n);
      expect(await device()).toMatchObject({ connected: true });
      expect(d.proc.exitCode).toBeNull();
    },
    90_000,
  );
});
