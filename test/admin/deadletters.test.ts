// Dead letters over the admin HTTP API of the real daemon: a validated, paged, size-bounded
// listing, deletion by number or up to a number, replay through the sink's dispatcher, and the
// count and bytes per sink in /v1/status. Real upstreams that refuse with 400 make the dead
// letters; everything on 127.0.0.1.

import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';

const daemons: DaemonHandle[] = [];
const devices: MqttClient[] = [];
const receivers: HttpReceiver[] = [];

afterEach(async () => {
  for (const d of devices.splice(0)) d.end(true);
  await Promise.all(daemons.splice(0).map((d) => d.kill()));
  for (const r of receivers.splice(0)) await r.stop();
});

async function refusingReceiver(): Promise<HttpReceiver> {
  const rx = new HttpReceiver();
  rx.respond = () => ({ status: 400 });
  await rx.start();
  receivers.push(rx);
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

/** Publishes `count` QoS 1 messages, `window` in flight. */
async function publish(dev: MqttClient, topic: string, count: number, payload: (i: number) => string) {
  for (let i = 0; i < count; i += 500) {
    const n = Math.min(500, count - i);
    await Promise.all(
      Array.from({ length: n }, (_, k) => dev.publishAsync(topic, payload(i + k), { qos: 1 })),
    );
  }
}

interface Letter {
  n: number;
  seq: number;
  at: string;
  reason: string;
  body: string;
}

async function http(d: DaemonHandle, method: string, path: string) {
  const res = await fetch(`http://127.0.0.1:${d.adminPort}${path}`, { method });
  const text = await res.text();
  return {
    status: res.status,
    allow: res.headers.get('allow'),
    length: text.length,
    // biome-ignore lint/suspicious/noExplicitAny: a JSON document under test
    body: text ? (JSON.parse(text) as any) : null,
  };
}

interface SinkStatusDoc {
  name: string;
  deadLettered: number;
  deadLetters: { count: number; bytes: number };
}

async function sinkStatus(d: DaemonHandle, name: string): Promise<SinkStatusDoc> {
  const st = (await d.status()) as unknown as { sinks: SinkStatusDoc[] };
  return st.sinks.find((s) => s.name === name)!;
}

describe('GET /v1/deadletters', () => {
  it('validates limit (1..1000, default 100) and after, pages with next, 404s an unknown sink, 405s other methods', async () => {
    const rx = await refusingReceiver();
    const d = await gateway({ sinks: [{ name: 'up', type: 'http', url: rx.url }] });
    const dev = await device(d, 'dl-dev');
    const N = 2500;
    await publish(dev, 'dl/t', N, (i) => `m${i + 1}`);
    await eventually(async () => (await sinkStatus(d, 'up')).deadLettered === N, `${N} dead-lettered`);

    // The limits that used to return everything, and other bad values: a 400 naming the parameter.
    for (const bad of ['-1', '0.5', '0', '1001', 'abc', '', '1e3', ' 5']) {
      const r = await http(d, 'GET', `/v1/deadletters?sink=up&limit=${encodeURIComponent(bad)}`);
      expect(r.status, `limit=${bad}`).toBe(400);
      expect(r.body.error, `limit=${bad}`).toBe(
        `limit: must be an integer 1..1000 (got ${JSON.stringify(bad)})`,
      );
    }
    expect((await http(d, 'GET', '/v1/deadletters?sink=up&after=-3')).status).toBe(400);
    expect((await http(d, 'GET', '/v1/deadletters?limit=5')).body).toEqual({
      error: 'sink: query parameter required',
    });
    expect((await http(d, 'GET', '/v1/deadletters?sink=nope')).status).toBe(404);

    const first = await http(d, 'GET', '/v1/deadletters?sink=up');
    expect(first.status).toBe(200);
    expect(first.body.deadLetters).toHaveLength(100);
    expect(first.body).toMatchObject({ sink: 'up', count: N, next: 100 });

    // Walk every page: each dead letter exactly once, in order, with its record.
    const seen: Letter[] = [];
    let after = 0;
    for (let page = 0; page < 10; page++) {
      const r = await http(d, 'GET', `/v1/deadletters?sink=up&limit=1000&after=${after}`);
      expect(r.status).toBe(200);
      seen.push(...r.body.deadLetters);
      if (r.body.next === null) break;
      after = r.body.next;
    }
    expect(seen.map((l) => l.n)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(seen.map((l) => l.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(seen.every((l) => /400/.test(l.reason))).toBe(true);
    // The body is the stored record; its payload is in there as sent.
    expect(Buffer.from(seen[41].body, 'base64').includes(Buffer.from('m42'))).toBe(true);

    expect(await http(d, 'POST', '/v1/deadletters?sink=up')).toMatchObject({
      status: 405,
      allow: 'GET, HEAD, DELETE',
    });
    expect(await http(d, 'GET', '/v1/deadletters/replay?sink=up')).toMatchObject({
      status: 405,
      allow: 'POST',
    });
  });

  it('stops a page at about 4 MiB of bodies, with next pointing at the rest', async () => {
    const rx = await refusingReceiver();
    const d = await gateway({
      sinks: [{ name: 'big', type: 'http', url: rx.url, batch: { maxRecords: 5 } }],
    });
    const dev = await device(d, 'dl-big');
    const N = 30;
    await publish(dev, 'big/t', N, (i) => `${i}:${'p'.repeat(200 * 1024)}`);
    await eventually(async () => (await sinkStatus(d, 'big')).deadLettered === N, `${N} dead-lettered`);
    const r = await http(d, 'GET', '/v1/deadletters?sink=big&limit=1000');
    expect(r.status).toBe(200);
    const got = r.body.deadLetters.length;
    expect(got).toBeGreaterThan(0);
    expect(got).toBeLessThan(N);
    expect(r.length).toBeLessThan(5 * 1024 * 1024);
    expect(r.body.next).toBe(r.body.deadLetters[got - 1].n);
    const rest = await http(d, 'GET', `/v1/deadletters?sink=big&limit=1000&after=${r.body.next}`);
    const rest2 =
      rest.body.next === null
        ? []
        : (await http(d, 'GET', `/v1/deadletters?sink=big&limit=1000&after=${rest.body.next}`)).body
            .deadLetters;
    expect([...r.body.deadLetters, ...rest.body.deadLetters, ...rest2].map((l: Letter) => l.n)).toEqual(
      Array.from({ length: N }, (_, i) => i + 1),
    );
  });
});

describe('DELETE /v1/deadletters and the count in /v1/status', () => {
  it('deletes by number and up to a number; /v1/status shows count and bytes per sink', async () => {
    const rx = await refusingReceiver();
    const d = await gateway({ sinks: [{ name: 'up', type: 'http', url: rx.url }] });
    const dev = await device(d, 'dl-del');
    const N = 1500;
    await publish(dev, 'del/t', N, (i) => `m${i + 1}`);
    await eventually(async () => (await sinkStatus(d, 'up')).deadLetters.count === N, `${N} kept`);
    const full = await sinkStatus(d, 'up');
    expect(full.deadLetters.bytes).toBeGreaterThan(N * 2);
    const st = (await d.status()) as unknown as { journal: { deadLetters: Record<string, unknown> } };
    expect(st.journal.deadLetters).toEqual({ up: full.deadLetters });

    for (const q of ['', '&n=1&upTo=3', '&n=', '&n=1,x', '&n=0', '&upTo=-1', '&upTo=']) {
      expect((await http(d, 'DELETE', `/v1/deadletters?sink=up${q}`)).status, q).toBe(400);
    }
    expect((await http(d, 'DELETE', '/v1/deadletters?sink=nope&n=1')).status).toBe(404);

    expect((await http(d, 'DELETE', '/v1/deadletters?sink=up&n=1,2,3,3')).body).toEqual({
      sink: 'up',
      deleted: 3,
    });
    expect((await http(d, 'DELETE', '/v1/deadletters?sink=up&n=2,4')).body).toEqual({
      sink: 'up',
      deleted: 1,
    });
    expect((await http(d, 'DELETE', '/v1/deadletters?sink=up&upTo=1200')).body).toEqual({
      sink: 'up',
      deleted: 1196,
    });
    const left = await http(d, 'GET', '/v1/deadletters?sink=up&limit=1000');
    expect(left.body.deadLetters.map((l: Letter) => l.n)).toEqual(
      Array.from({ length: 300 }, (_, i) => 1201 + i),
    );
    expect(left.body.next).toBeNull();
    const after = await sinkStatus(d, 'up');
    expect(after.deadLetters.count).toBe(300);
    expect(after.deadLetters.bytes).toBeLessThan(full.deadLetters.bytes / 4);
    expect((await http(d, 'DELETE', '/v1/deadletters?sink=up&upTo=5000')).body).toEqual({
      sink: 'up',
      deleted: 300,
    });
    expect((await sinkStatus(d, 'up')).deadLetters).toEqual({ count: 0, bytes: 0 });
  });
});

describe('POST /v1/deadletters/replay', () => {
  it('sends the oldest dead letters again through the sink and deletes the acknowledged ones', async () => {
    const rx = await refusingReceiver();
    const d = await gateway({ sinks: [{ name: 'up', type: 'http', url: rx.url }] });
    const dev = await device(d, 'dl-replay');
    await publish(dev, 'rp/t', 120, (i) => `r${i + 1}`);
    await eventually(async () => (await sinkStatus(d, 'up')).deadLetters.count === 120, '120 kept');
    expect((await http(d, 'POST', '/v1/deadletters/replay?sink=up&limit=0')).status).toBe(400);
    expect((await http(d, 'POST', '/v1/deadletters/replay?sink=nope')).status).toBe(404);

    rx.respond = () => ({ status: 200 });
    const r = await http(d, 'POST', '/v1/deadletters/replay?sink=up&limit=50');
    expect(r).toMatchObject({ status: 200, body: { sink: 'up', replayed: 50, remaining: true } });
    // The HTTP sink sends payloads base64 by default.
    const payloads = () => rx.records.map((x) => Buffer.from(x.payload, 'base64').toString());
    expect(payloads()).toEqual(Array.from({ length: 50 }, (_, i) => `r${i + 1}`));
    expect((await sinkStatus(d, 'up')).deadLetters.count).toBe(70);
    const rest = await http(d, 'POST', '/v1/deadletters/replay?sink=up&limit=1000');
    expect(rest.body).toMatchObject({ replayed: 70, remaining: false });
    expect(payloads()).toEqual(Array.from({ length: 120 }, (_, i) => `r${i + 1}`));
    expect((await sinkStatus(d, 'up')).deadLetters).toEqual({ count: 0, bytes: 0 });
  });
});
