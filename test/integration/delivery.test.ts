import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { distinctSeqs, HttpReceiver } from '../helpers/http-receiver.ts';

const N = 10_000;

describe('MQTT in, HTTP out', () => {
  let daemon: DaemonHandle | null = null;
  let receiver: HttpReceiver | null = null;
  afterEach(async () => {
    await daemon?.kill();
    await receiver?.stop();
    daemon = null;
    receiver = null;
  });

  it('delivers 10 000 QoS 1 messages from mqtt.js, all of them, in order, with unique ids', async () => {
    receiver = new HttpReceiver();
    await receiver.start();
    const dir = tempDir();
    const cfg = baseConfig(dir, {
      sinks: [
        {
          name: 'cloud',
          type: 'http',
          url: receiver.url,
          routes: ['sensors/#'],
          batch: { maxRecords: 500, lingerMs: 5 },
        },
      ],
    });
    daemon = await startDaemon(dir, writeConfig(dir, cfg));

    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`, { clientId: 'dev-1' });
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < N; i++) sends.push(client.publishAsync('sensors/t1', `m${i}`, { qos: 1 }));
    await Promise.all(sends);
    await client.endAsync();

    await eventually(() => receiver!.records.length >= N, `${N} records at the receiver`);
    const recs = receiver.records;
    expect(recs).toHaveLength(N);
    expect(recs.map((r) => Buffer.from(r.payload, 'base64').toString())).toEqual(
      Array.from({ length: N }, (_, i) => `m${i}`),
    );
    expect(distinctSeqs(recs)).toHaveLength(N);
    expect(new Set(recs.map((r) => r.id)).size).toBe(N);
    for (let i = 1; i < recs.length; i++) expect(recs[i].seq).toBeGreaterThan(recs[i - 1].seq);
    expect(recs[0]).toMatchObject({ source: 'mqtt', device: 'dev-1', topic: 'sensors/t1' });
    expect(receiver.batches[0].headers['content-type']).toBe('application/x-ndjson');
    const key = receiver.batches[0].headers['idempotency-key'];
    const b0 = receiver.batches[0].records;
    expect(key).toBe(`${b0[0].id}..${b0[b0.length - 1].id}`);

    const status = await daemon.status();
    expect(status.sinks[0]).toMatchObject({ name: 'cloud', state: 'up', backlog: 0, delivered: N });
    expect(await daemon.stop()).toBe(0);
  });

  it('a backlog goes out in full batches of several hundred KiB, each whole and with its content-length', async () => {
    receiver = new HttpReceiver();
    await receiver.start();
    await receiver.stop();
    const dir = tempDir();
    const cfg = baseConfig(dir, {
      sinks: [
        {
          name: 'cloud',
          type: 'http',
          url: receiver.url,
          batch: { maxRecords: 500, maxBytes: '4MiB' },
          retry: { minMs: 50, maxMs: 200 },
        },
      ],
    });
    daemon = await startDaemon(dir, writeConfig(dir, cfg));
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`);
    const total = 1500;
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < total; i++)
      sends.push(client.publishAsync('bulk', `${i}:`.padEnd(600, 'x'), { qos: 1 }));
    await Promise.all(sends);
    await client.endAsync();
    await receiver.start();
    await eventually(() => receiver!.records.length >= total, `${total} records at the receiver`);
    expect(receiver.records.map((r) => Buffer.from(r.payload, 'base64').toString().split(':')[0])).toEqual(
      Array.from({ length: total }, (_, i) => String(i)),
    );
    for (const b of receiver.batches) {
      expect(b.headers['transfer-encoding']).toBeUndefined();
      expect(Number(b.headers['content-length'])).toBe(b.bytes);
    }
    // A full batch (the first one may have gone out while the backlog was still small, and is
    // retried as it was): 500 records of about 1 KB of NDJSON each.
    const full = receiver.batches.find((b) => b.records.length === 500);
    expect(full?.bytes).toBeGreaterThan(256 * 1024);
  });

  it('routes: a sink sees only matching topics, and its cursor still walks past the rest', async () => {
    receiver = new HttpReceiver();
    await receiver.start();
    const dir = tempDir();
    const cfg = baseConfig(dir, {
      sinks: [
        { name: 'only-a', type: 'http', url: receiver.url, routes: ['site/+/a'], payloadEncoding: 'utf8' },
      ],
    });
    daemon = await startDaemon(dir, writeConfig(dir, cfg));
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`);
    for (const t of ['site/1/a', 'site/1/b', 'site/2/a', 'other/a', 'site/3/a/x'])
      await client.publishAsync(t, t, { qos: 1 });
    await client.endAsync();
    await eventually(
      async () => (await daemon!.status()).sinks[0].backlog === 0 && receiver!.records.length >= 2,
      'sink caught up',
    );
    expect(receiver.records.map((r) => r.payload)).toEqual(['site/1/a', 'site/2/a']);
    expect((await daemon.status()).sinks[0].cursor).toBe(5);
  });

  it('QoS 2: every PUBLISH completes its PUBREC/PUBREL/PUBCOMP exchange and is delivered once', async () => {
    receiver = new HttpReceiver();
    await receiver.start();
    const dir = tempDir();
    const cfg = baseConfig(dir, {
      sinks: [{ name: 'cloud', type: 'http', url: receiver.url, payloadEncoding: 'utf8' }],
    });
    daemon = await startDaemon(dir, writeConfig(dir, cfg));
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`, { clientId: 'dev-q2' });
    const M = 500;
    // Resolves on PUBCOMP, which the gateway sends only after it sent PUBREC for a committed record.
    await Promise.all(Array.from({ length: M }, (_, i) => client.publishAsync('q2/t', `m${i}`, { qos: 2 })));
    await client.endAsync();
    await eventually(() => receiver!.records.length >= M, `${M} records at the receiver`);
    expect(receiver.records.map((r) => r.payload)).toEqual(Array.from({ length: M }, (_, i) => `m${i}`));
    expect((await daemon.status()).journal.lastSeq).toBe(M);
  });
});
