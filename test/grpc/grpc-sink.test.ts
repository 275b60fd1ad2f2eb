// The `grpc` sink against real upstreams: the reference Ingest receiver (insecure) and a TLS
// variant of it built here, the daemon as a child process, mqtt.js devices, all on 127.0.0.1.

import { spawnSync } from 'node:child_process';
import { Server, type ServerUnaryCall, type sendUnaryData, status } from '@grpc/grpc-js';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GrpcIngestReceiver, type IngestedRecord } from '../../bench/receivers/grpc-ingest-receiver.ts';
import { loadService } from '../../src/api/grpc/proto.ts';
import {
  BIN,
  baseConfig,
  type DaemonHandle,
  eventually,
  type StatusDoc,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { bindMtls, generatePki, type TestPki } from './certs.ts';

const daemons: DaemonHandle[] = [];
const devices: MqttClient[] = [];
const stops: (() => Promise<unknown> | unknown)[] = [];

afterEach(async () => {
  for (const d of devices.splice(0)) d.end(true);
  await Promise.all(daemons.splice(0).map((d) => d.kill()));
  for (const stop of stops.splice(0)) await stop();
});

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function receiver(): Promise<GrpcIngestReceiver> {
  const rx = new GrpcIngestReceiver();
  await rx.start();
  stops.push(() => rx.stop());
  return rx;
}

async function gateway(overrides: Record<string, unknown>): Promise<DaemonHandle> {
  const dir = tempDir();
  const d = await startDaemon(dir, writeConfig(dir, baseConfig(dir, overrides)));
  daemons.push(d);
  return d;
}

async function device(d: DaemonHandle, clientId: string): Promise<MqttClient> {
  const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, { clientId });
  devices.push(dev);
  return dev;
}

/** Publishes `m${i}` for i in from..to, QoS 1, pipelined; resolves when every one is acked (committed). */
async function publishRange(dev: MqttClient, topic: string, from: number, to: number): Promise<void> {
  await Promise.all(range(from, to).map((i) => dev.publishAsync(topic, `m${i}`, { qos: 1 })));
}

/** One sink's entry in /v1/status (which also carries `lastError`). */
async function sinkStatus(d: DaemonHandle, name: string) {
  const s = (await d.status()).sinks.find((x) => x.name === name);
  if (!s) throw new Error(`no sink ${name} in /v1/status`);
  return s as StatusDoc['sinks'][number] & { lastError: string | null };
}

const payloads = (records: IngestedRecord[]) => records.map((r) => r.payload.toString());

describe('grpc sink', () => {
  it('delivers 10 000 records in journal order, each once, with seq, id, node and the record fields', async () => {
    const N = 10_000;
    const rx = await receiver();
    const nodes = new Set<string>();
    rx.respond = (req) => {
      nodes.add(req.node);
      return status.OK;
    };
    const d = await gateway({ sinks: [{ name: 'up', type: 'grpc', target: rx.target }] });
    const dev = await device(d, 'dev-1');
    await publishRange(dev, 'sensors/t1', 1, N);

    await eventually(() => rx.received >= N, `${N} records at the receiver`);
    await eventually(async () => (await sinkStatus(d, 'up')).backlog === 0, 'sink caught up');
    expect(rx.received).toBe(N);
    expect(rx.duplicates).toBe(0);
    expect(rx.outOfOrder).toBe(0);
    expect(rx.records.map((r) => r.seq)).toEqual(range(1, N));
    expect(payloads(rx.records)).toEqual(range(1, N).map((i) => `m${i}`));
    const epoch = (await d.status()).journal.epoch;
    expect(rx.records[0]).toMatchObject({
      id: `${epoch}-1`,
      source: 'mqtt',
      device: 'dev-1',
      topic: 'sensors/t1',
      contentType: '',
    });
    expect(rx.records[N - 1].id).toBe(`${epoch}-${N}`);
    expect([...nodes]).toEqual(['test-node']);
    expect(rx.pushes).toBeGreaterThan(1);
    expect(await sinkStatus(d, 'up')).toMatchObject({ state: 'up', delivered: N, deadLettered: 0 });
  });

  it('rides out the receiver going away mid-stream and coming back on the same port', async () => {
    const N = 10_000;
    const rx = await receiver();
    const port = rx.port;
    // The receiver goes away right after accepting a batch once 2 000 records are in: mid-stream,
    // with the answer to that batch possibly lost (a redelivery the receiver counts).
    let stopped = false;
    rx.respond = () => {
      if (!stopped && rx.received >= 2000) {
        stopped = true;
        setImmediate(() => void rx.stop());
      }
      return status.OK;
    };
    const d = await gateway({
      sinks: [
        {
          name: 'up',
          type: 'grpc',
          target: rx.target,
          batch: { maxRecords: 200 },
          retry: { minMs: 50, maxMs: 500 },
        },
      ],
    });
    const dev = await device(d, 'dev-out');
    await publishRange(dev, 'out/t', 1, N / 2);
    await eventually(() => stopped, 'the receiver stopped mid-stream');
    // Ingest goes on during the outage.
    await publishRange(dev, 'out/t', N / 2 + 1, N);
    await eventually(async () => (await sinkStatus(d, 'up')).state === 'backoff', 'sink in backoff');
    const atOutage = await sinkStatus(d, 'up');
    expect(atOutage.backlog).toBeGreaterThan(0);
    expect(rx.received - rx.duplicates).toBeLessThan(N);

    await rx.start(port);
    expect(rx.port).toBe(port);
    await eventually(() => rx.received - rx.duplicates >= N, 'everything after the restart');
    await eventually(async () => {
      const s = await sinkStatus(d, 'up');
      return s.state === 'up' && s.backlog === 0;
    }, 'sink up again and caught up');
    console.log(
      `grpc sink outage: ${rx.received} received, ${rx.duplicates} duplicates, ${(await sinkStatus(d, 'up')).retries} retries`,
    );
    expect(rx.outOfOrder).toBe(0);
    // Unique records (the receiver keeps each id once), in order, none missing.
    expect(rx.records.map((r) => r.seq)).toEqual(range(1, N));
    expect(payloads(rx.records)).toEqual(range(1, N).map((i) => `m${i}`));
    const final = await sinkStatus(d, 'up');
    expect(final.retries).toBeGreaterThan(0);
    expect(final.deadLettered).toBe(0);
    expect(final.delivered).toBeGreaterThanOrEqual(N);
  });

  it('dead-letters an INVALID_ARGUMENT batch and moves on; retries RESOURCE_EXHAUSTED', async () => {
    const rx = await receiver();
    let poisonCalls = 0;
    let busyCalls = 0;
    rx.respond = (req) => {
      const p = payloads(req.records);
      if (p.includes('poison')) {
        poisonCalls++;
        return status.INVALID_ARGUMENT;
      }
      if (p.includes('busy') && busyCalls++ < 3) return status.RESOURCE_EXHAUSTED;
      return status.OK;
    };
    const d = await gateway({
      sinks: [
        {
          name: 'up',
          type: 'grpc',
          target: rx.target,
          batch: { maxRecords: 1 },
          retry: { minMs: 20, maxMs: 100 },
        },
      ],
    });
    const dev = await device(d, 'dev-dl');
    for (const p of ['ok-1', 'poison', 'ok-2', 'busy', 'ok-3']) await dev.publishAsync('dl/t', p, { qos: 1 });

    await eventually(() => rx.records.length >= 4, 'the four good records');
    await eventually(async () => (await sinkStatus(d, 'up')).backlog === 0, 'sink caught up');
    expect(payloads(rx.records)).toEqual(['ok-1', 'ok-2', 'busy', 'ok-3']);
    expect(rx.records.map((r) => r.seq)).toEqual([1, 3, 4, 5]);
    // Refused for good once: never sent again. Busy: refused three times, then accepted.
    expect(poisonCalls).toBe(1);
    expect(busyCalls).toBe(4);
    const s = await sinkStatus(d, 'up');
    expect(s).toMatchObject({ state: 'up', deadLettered: 1, delivered: 4 });
    expect(s.retries).toBeGreaterThanOrEqual(3);

    const res = await fetch(`http://127.0.0.1:${d.adminPort}/v1/deadletters?sink=up`);
    const dl = (await res.json()) as { deadLetters: { seq: number; reason: string; body: string }[] };
    expect(dl.deadLetters).toHaveLength(1);
    expect(dl.deadLetters[0].seq).toBe(2);
    expect(dl.deadLetters[0].reason).toContain('INVALID_ARGUMENT');
    expect(Buffer.from(dl.deadLetters[0].body, 'base64').includes('poison')).toBe(true);
  });
});

/** A TLS Ingest receiver that requires a client certificate signed by `pki.ca`. */
async function tlsReceiver(pki: TestPki): Promise<{ port: number; records: IngestedRecord[] }> {
  const records: IngestedRecord[] = [];
  const server = new Server();
  server.addService(loadService('edgeferry/v1/ingest.proto', 'Ingest'), {
    Push: (call: ServerUnaryCall<{ records: IngestedRecord[] }, object>, cb: sendUnaryData<object>) => {
      records.push(...call.request.records);
      cb(null, {});
    },
  });
  const port = await bindMtls(server, pki);
  stops.push(() => server.forceShutdown());
  return { port, records };
}

describe('grpc sink over TLS', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = generatePki(tempDir('edgeferry-pki-'));
  });

  it('delivers with a client certificate (mTLS); without one, or not trusting the server, it does not', async () => {
    const N = 500;
    const rx = await tlsReceiver(pki);
    const target = `127.0.0.1:${rx.port}`;
    const retry = { minMs: 50, maxMs: 200 };
    const d = await gateway({
      sinks: [
        {
          name: 'mtls',
          type: 'grpc',
          target,
          tls: { caFile: pki.caFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile },
        },
        { name: 'nocert', type: 'grpc', target, tls: { caFile: pki.caFile }, retry },
        {
          name: 'wrongca',
          type: 'grpc',
          target,
          tls: { caFile: pki.otherCaFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile },
          retry,
        },
      ],
    });
    const dev = await device(d, 'dev-tls');
    await publishRange(dev, 'tls/t', 1, N);

    await eventually(async () => (await sinkStatus(d, 'mtls')).backlog === 0, 'mtls sink caught up');
    await eventually(async () => {
      const s = await d.status();
      return s.sinks.filter((x) => x.name !== 'mtls').every((x) => x.retries >= 2);
    }, 'the other sinks retried');
    // Only the mTLS sink got through: each record exactly once.
    expect(rx.records.map((r) => r.seq)).toEqual(range(1, N));
    expect(payloads(rx.records)).toEqual(range(1, N).map((i) => `m${i}`));
    expect(await sinkStatus(d, 'mtls')).toMatchObject({ state: 'up', delivered: N, deadLettered: 0 });
    for (const name of ['nocert', 'wrongca']) {
      const s = await sinkStatus(d, name);
      // A handshake failure is an outage (retried), not a refusal of the records.
      expect(s, name).toMatchObject({ state: 'backoff', delivered: 0, deadLettered: 0, backlog: N });
      expect(s.lastError, name).toContain('UNAVAILABLE');
    }
  });
});

describe('grpc sink config', () => {
  function checkConfig(sinks: unknown[], extra: Record<string, unknown> = {}) {
    const dir = tempDir();
    const path = writeConfig(dir, baseConfig(dir, { sinks, ...extra }));
    return spawnSync(process.execPath, [BIN, 'check-config', path], { encoding: 'utf8' });
  }

  it('check-config exits 2 and names the field for a bad target and half a client certificate', () => {
    const bad = checkConfig([{ name: 'up', type: 'grpc', target: 'nohost' }]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('sinks[0].target');
    expect(bad.stderr).toContain('host:port');

    const half = checkConfig([
      { name: 'a', type: 'http', url: 'http://127.0.0.1:1/in' },
      { name: 'b', type: 'grpc', target: 'upstream:443', tls: { certFile: '/tmp/c.pem' } },
    ]);
    expect(half.status).toBe(2);
    expect(half.stderr).toContain('sinks[1].tls.certFile');

    const good = checkConfig([
      {
        name: 'up',
        type: 'grpc',
        target: 'ingest.example.com:443',
        tls: { caFile: '/etc/ca.pem', serverName: 'ingest' },
        metadata: { authorization: 'Bearer t' },
      },
    ]);
    expect(good.stderr).toBe('');
    expect(good.status).toBe(0);
    expect(good.stdout).toContain('ok (1 sink)');
  });
});
