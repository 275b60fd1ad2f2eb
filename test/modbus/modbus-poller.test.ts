// The Modbus poller end to end: the real daemon polls a Modbus TCP server on 127.0.0.1 (the test
// PLC in test/helpers/modbus-plc.ts, with known register contents and a log of every request it
// saw); records are read at a real HTTP upstream, writes go through gRPC Gateway.Command.

import { status as grpcStatus } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { gatewayClient, sendCommand } from '../grpc/grpc-client.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver, type ReceivedRecord } from '../helpers/http-receiver.ts';
import { TestPlc } from '../helpers/modbus-plc.ts';

interface DeviceStatus {
  name: string;
  connected: boolean;
  polls: number;
  skipped: number;
  records: number;
  failures: { timeout: number; exception: number; disconnected: number; protocol: number };
  lastGoodPollAt: number | null;
  lastError: string | null;
}

interface PollBody {
  ts: number;
  values: Record<string, unknown>;
  quality?: Record<string, string>;
  units?: Record<string, string>;
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function plc(): Promise<TestPlc> {
  const p = new TestPlc();
  await p.listen();
  cleanups.push(() => p.close());
  return p;
}

async function receiver(): Promise<HttpReceiver> {
  const r = new HttpReceiver();
  await r.start();
  cleanups.push(() => r.stop());
  return r;
}

async function daemon(modbus: object, sinkUrl: string | null): Promise<DaemonHandle> {
  const dir = tempDir('edgeferry-modbus-');
  const cfg = baseConfig(dir, {
    modbus,
    sinks: sinkUrl
      ? [{ name: 'cloud', type: 'http', url: sinkUrl, payloadEncoding: 'utf8', batch: { lingerMs: 5 } }]
      : [],
  });
  const d = await startDaemon(dir, writeConfig(dir, cfg));
  cleanups.push(() => d.stop());
  return d;
}

async function devices(d: DaemonHandle): Promise<DeviceStatus[]> {
  const s = await d.status();
  const src = s.sources.find((x) => x.name === 'modbus') as unknown as {
    counters: { devices: DeviceStatus[] };
  };
  return src.counters.devices;
}

const device = async (d: DaemonHandle, name: string) =>
  (await devices(d)).find((x) => x.name === name) as DeviceStatus;
const body = (r: ReceivedRecord) => JSON.parse(r.payload) as PollBody;
const of = (up: HttpReceiver, name: string) => up.records.filter((r) => r.device === name);

// The example register map.
const EXAMPLE = [
  { name: 'temperature', area: 'holding', address: 0, type: 'float32', wordOrder: 'little', unit: 'C' },
  { name: 'cycles', area: 'input', address: 10, type: 'uint32' },
  { name: 'running', area: 'coil', address: 0, type: 'bool' },
  { name: 'pressure', area: 'holding', address: 4, type: 'int16', scale: 0.1, unit: 'bar', writable: true },
];

function fillExample(p: TestPlc, unitId = 1): void {
  const m = p.unit(unitId);
  m.holding.set([0x0000, 0x41ac], 0); // 21.5, least significant register first
  m.holding[4] = 0xfff6; // -10 -> -1 bar
  m.input.set([0x0001, 0x0002], 10); // 65538
  m.coil[0] = 1;
}

/** The example PLC polled every 100 ms. */
const press1 = (p: TestPlc, extra: object = {}) => ({
  name: 'press-1',
  host: '127.0.0.1',
  port: p.port,
  intervalMs: 100,
  topic: 'plc/press-1',
  registers: EXAMPLE,
  ...extra,
});

const fast = { retry: { minMs: '50ms', maxMs: '200ms' } };

describe('Modbus poller', () => {
  it("polls the issue's example map into one JSON record per poll, in three coalesced requests", async () => {
    const p = await plc();
    fillExample(p);
    const up = await receiver();
    const d = await daemon({ devices: [press1(p)] }, up.url);
    await eventually(() => of(up, 'press-1').length >= 3, 'three polls delivered');
    const r = of(up, 'press-1')[0];
    expect(r).toMatchObject({ source: 'modbus', topic: 'plc/press-1', contentType: 'application/json' });
    expect((r as unknown as { attributes: Record<string, string> }).attributes).toEqual({
      unitId: '1',
      ranges: 'holding:0-4,input:10-11,coil:0-0',
    });
    const b = body(r);
    expect(b.values).toEqual({ temperature: 21.5, cycles: 65538, running: true, pressure: -1 });
    expect(b.units).toEqual({ temperature: 'C', pressure: 'bar' });
    expect(b.quality).toBeUndefined();
    expect(Math.abs(b.ts - r.ts)).toBeLessThan(60_000);
    const s = await device(d, 'press-1');
    // One read per area per poll (FC3, FC4, FC1), not one per register.
    expect(p.requests.slice(0, 9).map((r) => r.fc)).toEqual([3, 4, 1, 3, 4, 1, 3, 4, 1]);
    expect(p.requestsOf(3)[0]).toEqual({ unitId: 1, fc: 3, address: 0, count: 5 });
    expect(s.polls).toBeGreaterThanOrEqual(3);
    // Not `skipped: 0`: that depends on the machine's load (a late event loop skips polls).
    expect(s).toMatchObject({ connected: true, failures: { timeout: 0, exception: 0, disconnected: 0 } });
    const metrics = await d.metrics();
    expect(metrics).toMatch(/edgeferry_modbus_polls_total\{device="press-1"\} [1-9]/);
    expect(metrics).toMatch(/edgeferry_modbus_values_published_total\{device="press-1"\} [1-9]/);
    expect(metrics).toMatch(/edgeferry_modbus_poll_duration_seconds_count\{device="press-1"\} [1-9]/);
    expect(metrics).toMatch(/edgeferry_modbus_connected\{device="press-1"\} 1/);
  });

  it('unit ids behind one address share one connection, one request at a time', async () => {
    const p = await plc();
    p.delayMs = 20;
    for (const u of [1, 2, 3]) p.unit(u).holding[0] = u * 100;
    const up = await receiver();
    const devs = [1, 2, 3].map((u) => ({
      name: `unit-${u}`,
      host: '127.0.0.1',
      port: p.port,
      unitId: u,
      intervalMs: 100,
      topic: `plc/unit-${u}`,
      registers: [{ name: 'v', area: 'holding', address: 0 }],
    }));
    await daemon({ devices: devs }, up.url);
    await eventually(() => [1, 2, 3].every((u) => of(up, `unit-${u}`).length >= 5), 'every unit polled');
    for (const u of [1, 2, 3]) expect(body(of(up, `unit-${u}`)[0]).values).toEqual({ v: u * 100 });
    expect(p.connections).toBe(1);
    expect(p.maxOutstanding).toBe(1);
    expect(new Set(p.requests.map((r) => r.unitId))).toEqual(new Set([1, 2, 3]));
  });

  it('a PLC that stops answering: quality flags, counted timeouts and skipped polls; polling recovers when it answers again', async () => {
    const p = await plc();
    fillExample(p);
    const up = await receiver();
    const d = await daemon(
      {
        ...fast,
        devices: [press1(p, { timeoutMs: 250 })],
      },
      up.url,
    );
    await eventually(() => of(up, 'press-1').length >= 2, 'good polls first');
    p.silent = true;
    await eventually(
      () => of(up, 'press-1').some((r) => body(r).quality !== undefined),
      'a record with quality flags',
    );
    const bad = body(of(up, 'press-1').find((r) => body(r).quality !== undefined) as ReceivedRecord);
    // Every value of the poll is flagged, none carries a stale number.
    expect(bad.values).toEqual({ temperature: null, cycles: null, running: null, pressure: null });
    expect(bad.quality).toEqual({
      temperature: 'timeout',
      cycles: 'timeout',
      running: 'timeout',
      pressure: 'timeout',
    });
    await eventually(
      async () => (await device(d, 'press-1')).skipped >= 2,
      'polls skipped while one waits out its timeout',
    );
    const during = await device(d, 'press-1');
    expect(during.failures.timeout).toBeGreaterThanOrEqual(1);
    expect(during.lastError).toMatch(/no answer within 250 ms/);
    p.silent = false;
    const n = of(up, 'press-1').length;
    await eventually(
      () =>
        of(up, 'press-1')
          .slice(n)
          .some((r) => body(r).quality === undefined && body(r).values.temperature === 21.5),
      'good values again',
    );
    const after = await device(d, 'press-1');
    expect(after.connected).toBe(true);
    expect(after.lastGoodPollAt).toBeGreaterThan(during.lastGoodPollAt ?? 0);
    expect(await d.metrics()).toMatch(
      /edgeferry_modbus_failures_total\{device="press-1",kind="timeout"\} [1-9]/,
    );
  });

  it('a PLC that goes away is reconnected with backoff; meanwhile its polls say disconnected', async () => {
    const p = await plc();
    fillExample(p);
    const up = await receiver();
    const d = await daemon(
      {
        ...fast,
        devices: [press1(p)],
      },
      up.url,
    );
    await eventually(() => of(up, 'press-1').length >= 2, 'good polls first');
    const port = p.port;
    await p.close();
    await eventually(
      () => of(up, 'press-1').some((r) => body(r).quality?.temperature === 'disconnected'),
      'records flagged disconnected',
    );
    expect((await device(d, 'press-1')).connected).toBe(false);
    expect((await device(d, 'press-1')).failures.disconnected).toBeGreaterThan(0);
    await p.listen(port);
    const n = of(up, 'press-1').length;
    await eventually(
      () =>
        of(up, 'press-1')
          .slice(n)
          .some((r) => body(r).values.temperature === 21.5),
      'polling resumes',
    );
    expect((await device(d, 'press-1')).connected).toBe(true);
  });

  it('a dead PLC does not hold up a live one at another address', async () => {
    const dead = await plc();
    dead.silent = true;
    const live = await plc();
    live.unit(1).holding[0] = 7;
    const up = await receiver();
    const reg = [{ name: 'v', area: 'holding', address: 0 }];
    const d = await daemon(
      {
        ...fast,
        devices: [
          {
            name: 'dead',
            host: '127.0.0.1',
            port: dead.port,
            intervalMs: 100,
            timeoutMs: '5s',
            topic: 'plc/dead',
            registers: reg,
          },
          {
            name: 'live',
            host: '127.0.0.1',
            port: live.port,
            intervalMs: 100,
            topic: 'plc/live',
            registers: reg,
          },
        ],
      },
      up.url,
    );
    // While the dead PLC's first request is still waiting out its 5 s timeout.
    await eventually(() => of(up, 'live').length >= 10, 'the live PLC keeps being polled');
    expect(of(up, 'dead')).toEqual([]);
    expect(of(up, 'live').every((r) => body(r).values.v === 7)).toBe(true);
    expect((await device(d, 'dead')).skipped).toBeGreaterThan(0);
    expect((await device(d, 'live')).failures).toEqual({
      timeout: 0,
      exception: 0,
      disconnected: 0,
      protocol: 0,
    });
  });

  it('an exception response flags the values with its code and is counted', async () => {
    const p = await plc();
    p.exception = 2;
    const up = await receiver();
    const d = await daemon({ devices: [press1(p)] }, up.url);
    await eventually(() => of(up, 'press-1').length >= 2, 'records');
    // Other areas are still read after one area's exception: each read gets its own answer.
    expect(body(of(up, 'press-1')[0]).quality).toEqual({
      temperature: 'exception:2',
      cycles: 'exception:2',
      running: 'exception:2',
      pressure: 'exception:2',
    });
    const s = await device(d, 'press-1');
    expect(s.failures.exception).toBeGreaterThanOrEqual(3);
    expect(s.connected).toBe(true);
    expect(s.lastError).toMatch(/exception 2 \(illegal data address\)/);
  });

  it('report-by-exception: a value goes out when it moves past its deadband, and a full snapshot every N polls', async () => {
    const p = await plc();
    const up = await receiver();
    await daemon(
      {
        devices: [
          {
            name: 'meter',
            host: '127.0.0.1',
            port: p.port,
            intervalMs: 50,
            topic: 'plc/meter',
            reportByException: { fullEvery: 10 },
            registers: [
              { name: 'level', area: 'holding', address: 0, deadband: 5 },
              { name: 'state', area: 'holding', address: 1 },
            ],
          },
        ],
      },
      up.url,
    );
    await eventually(() => of(up, 'meter').length >= 1, 'the first, full record');
    const first = of(up, 'meter')[0] as ReceivedRecord & { attributes: Record<string, string> };
    expect(body(first).values).toEqual({ level: 0, state: 0 });
    expect(first.attributes.snapshot).toBe('full');
    p.unit(1).holding[0] = 3; // within the deadband: not sent
    p.unit(1).holding[1] = 1; // no deadband: any change is sent
    await eventually(() => of(up, 'meter').some((r) => body(r).values.state === 1), 'the change');
    const change = of(up, 'meter').find((r) => body(r).values.state === 1) as ReceivedRecord & {
      attributes: Record<string, string>;
    };
    if (change.attributes.snapshot === 'changes') expect(body(change).values).toEqual({ state: 1 });
    p.unit(1).holding[0] = 9; // 9 - 0 > 5
    await eventually(
      () => of(up, 'meter').some((r) => JSON.stringify(body(r).values) === '{"level":9}'),
      'the level past its deadband, alone',
    );
    await eventually(
      () =>
        of(up, 'meter').filter(
          (r) => (r as unknown as { attributes: Record<string, string> }).attributes.snapshot === 'full',
        ).length >= 2,
      'a second full snapshot',
    );
    // Between full snapshots, nothing unchanged is repeated.
    const changes = of(up, 'meter').filter(
      (r) => (r as unknown as { attributes: Record<string, string> }).attributes.snapshot === 'changes',
    );
    expect(changes.every((r) => Object.keys(body(r).values).length === 1)).toBe(true);
  });
});

describe('Gateway.Command to Modbus devices', () => {
  it('writes a writable register with scale and order undone, and refuses the rest with clear gRPC errors', async () => {
    const p = await plc();
    fillExample(p);
    const d = await daemon(
      {
        devices: [
          press1(p, {
            intervalMs: 1000,
            registers: [
              ...EXAMPLE,
              {
                name: 'setpoint',
                area: 'holding',
                address: 20,
                type: 'float32',
                wordOrder: 'little',
                writable: true,
              },
              { name: 'pump', area: 'coil', address: 3, writable: true },
              { name: 'label', area: 'holding', address: 30, type: 'string', length: 4, writable: true },
            ],
          }),
        ],
      },
      null,
    );
    const client = gatewayClient(`127.0.0.1:${d.grpcPort}`);
    cleanups.push(async () => client.close());
    const cmd = (target: string, payload: string, extra: object = {}) =>
      sendCommand(client, {
        device: 'press-1',
        target,
        payload: Buffer.from(payload),
        contentType: 'application/json',
        ...extra,
      });

    const ok = await cmd('pressure', '2.5');
    expect(ok.code).toBe('ok');
    expect(JSON.parse(ok.payload.toString())).toEqual({ function: 6, address: 4, words: [25] });
    expect(p.unit(1).holding[4]).toBe(25);
    expect((await cmd('setpoint', '21.5')).code).toBe('ok');
    expect([...p.unit(1).holding.subarray(20, 22)]).toEqual([0x0000, 0x41ac]);
    expect(p.requestsOf(16).at(-1)).toEqual({ unitId: 1, fc: 16, address: 20, count: 2 });
    expect((await cmd('pump', 'true')).code).toBe('ok');
    expect(p.unit(1).coil[3]).toBe(1);
    expect((await cmd('label', 'AB', { contentType: 'text/plain' })).code).toBe('ok');
    expect([...p.unit(1).holding.subarray(30, 32)]).toEqual([0x4142, 0x0000]);

    const writes = () => p.requests.filter((r) => r.fc === 5 || r.fc === 6 || r.fc === 16).length;
    const before = writes();
    await expect(cmd('cycles', '1')).rejects.toMatchObject({
      code: grpcStatus.PERMISSION_DENIED,
      details: expect.stringMatching(/press-1\/cycles is not writable/),
    });
    await expect(cmd('temperature', '1')).rejects.toMatchObject({ code: grpcStatus.PERMISSION_DENIED });
    await expect(cmd('nothing', '1')).rejects.toMatchObject({ code: grpcStatus.NOT_FOUND });
    await expect(sendCommand(client, { device: 'nobody', target: 'x' })).rejects.toMatchObject({
      code: grpcStatus.NOT_FOUND,
    });
    await expect(cmd('pressure', '12.34')).rejects.toMatchObject({
      code: grpcStatus.INVALID_ARGUMENT,
      details: expect.stringMatching(/not a multiple of scale 0.1/),
    });
    await expect(cmd('pressure', '99999')).rejects.toMatchObject({
      code: grpcStatus.INVALID_ARGUMENT,
      details: expect.stringMatching(/out of range for int16/),
    });
    await expect(cmd('pressure', 'hot')).rejects.toMatchObject({ code: grpcStatus.INVALID_ARGUMENT });
    await expect(cmd('pressure', '1', { method: 'POST' })).rejects.toMatchObject({
      code: grpcStatus.INVALID_ARGUMENT,
    });
    // Nothing refused reached the PLC.
    expect(writes()).toBe(before);

    // The PLC's own refusal is the reply, with its exception code.
    p.exception = 2;
    const refused = await cmd('pressure', '1');
    expect(refused.code).toBe('exception:2');
    expect(JSON.parse(refused.payload.toString())).toMatchObject({
      exception: 2,
      name: 'illegal data address',
    });
    p.exception = 0;

    p.silent = true;
    await expect(cmd('pressure', '1', { timeoutMs: 200 })).rejects.toMatchObject({
      code: grpcStatus.DEADLINE_EXCEEDED,
    });
    p.silent = false;
    await p.close();
    await eventually(async () => (await device(d, 'press-1')).connected === false, 'disconnected');
    await expect(cmd('pressure', '1')).rejects.toMatchObject({ code: grpcStatus.UNAVAILABLE });
  });
});
