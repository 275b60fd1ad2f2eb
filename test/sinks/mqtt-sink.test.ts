// The MQTT bridge sink against real mosquitto brokers started per test, through a real
// SinkDispatcher over a real Journal on disk, with an mqtt.js subscriber on the same broker
// counting what arrives. The cases every sink shares are in mqtt.sink-suite.test.ts.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/core/errors.ts';
import { brokerKey } from '../../src/core/mqtt-broker-key.ts';
import type { RecordInput } from '../../src/core/record.ts';
import type { Journal } from '../../src/journal/journal.ts';
import { MqttSink, type MqttSinkOptions } from '../../src/sinks/mqtt/mqtt-sink.ts';
import { templatePrefix } from '../../src/sinks/mqtt/topic-template.ts';
import { generatePki } from '../grpc/certs.ts';
import { baseConfig, eventually, startDaemon, tempDir, writeConfig } from '../helpers/daemon.ts';
import {
  appendRange,
  captureLog,
  onCleanup,
  openJournal,
  range,
  runCleanups,
  startDispatcher,
} from '../helpers/dispatch-fixture.ts';
import { type MosquittoOptions, startMosquitto } from '../helpers/mosquitto-broker.ts';
import { type Received, type Subscriber, subscribe } from '../helpers/mqtt-subscriber.ts';
import { bridgeOptions, MqttUpstream } from '../helpers/mqtt-upstream.ts';
import { itWithPeer, mosquittoBroker } from '../interop/peer-tools.ts';

afterEach(runCleanups);

const MOSQUITTO = mosquittoBroker();
/** The subscriber must not lose what the sink sends faster than it reads. */
const UNBOUNDED_QUEUE = ['max_queued_messages 0'];

async function broker(opts: MosquittoOptions = {}) {
  const b = await startMosquitto({ ...opts, extraConfig: [...UNBOUNDED_QUEUE, ...(opts.extraConfig ?? [])] });
  onCleanup(() => b.close());
  return b;
}

async function subscriber(url: string, opts: Parameters<typeof subscribe>[2] = {}): Promise<Subscriber> {
  const s = await subscribe(url, 'edge/#', opts);
  onCleanup(() => s.close());
  return s;
}

function bridge(url: string, over: Partial<MqttSinkOptions> = {}): MqttSink {
  return new MqttSink(bridgeOptions(url, over));
}

/** Each id once (first arrival), in arrival order. */
function firstArrivals(received: Received[]): Received[] {
  const seen = new Set<string | undefined>();
  return received.filter((m) => !seen.has(m.id) && seen.add(m.id));
}

function expectInOrder(j: Journal, received: Received[], seqs: number[]): void {
  const first = firstArrivals(received);
  expect(first.map((m) => m.id)).toEqual(seqs.map((s) => `${j.epoch}-${s}`));
  expect(first.map((m) => m.payload)).toEqual(seqs.map((s) => `m${s}`));
}

function append(j: Journal, recs: RecordInput[]): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = recs.length;
    for (const r of recs) j.append(r, (err) => (err ? reject(err) : --left === 0 && resolve()), null);
  });
}

/** The pid of the mosquitto listening on `port` (its config file names the port). */
function mosquittoPid(port: number): number {
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const c = argv.indexOf('-c');
      if (!argv[0]?.endsWith('mosquitto') || c < 0) continue;
      const conf = path.resolve(fs.readlinkSync(`/proc/${pid}/cwd`), argv[c + 1]);
      if (fs.readFileSync(conf, 'utf8').includes(`listener ${port} `)) return Number(pid);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  throw new Error(`no mosquitto listening on ${port}`);
}

describe('mqtt bridge sink: delivery to a real mosquitto', () => {
  itWithPeer(
    MOSQUITTO,
    '10 000 records arrive in order, each exactly once, on the templated topic with the record id, many in flight',
    async () => {
      const b = await broker();
      const sub = await subscriber(b.url);
      const j = await openJournal();
      const sink = bridge(b.url);
      const d = await startDispatcher(sink, j, {
        batch: { maxRecords: 500, maxBytes: 1 << 20, lingerMs: 0 },
      });
      await appendRange(j, 1, 10_000, { topic: (i) => `s/${i % 7}` });

      await eventually(() => sub.received.length >= 10_000, '10 000 messages at the subscriber', 60_000);
      await eventually(() => d.position === 10_000, 'the cursor at 10 000');
      expect(sub.received).toHaveLength(10_000);
      expectInOrder(j, sub.received, range(1, 10_000));
      expect(sub.received.map((m) => m.topic)).toEqual(range(1, 10_000).map((i) => `edge/n1/s/${i % 7}`));
      expect(new Set(sub.received.map((m) => m.node))).toEqual(new Set(['n1']));
      expect(sink.stats).toMatchObject({ connections: 1, published: 10_000, loopSkipped: 0 });
      // Pipelined, within the window.
      expect(sink.stats.maxInflight).toBeGreaterThan(1);
      expect(sink.stats.maxInflight).toBeLessThanOrEqual(100);
      expect(d.status().counters).toMatchObject({ delivered: 10_000, retries: 0, deadLettered: 0 });
    },
    90_000,
  );

  itWithPeer(
    MOSQUITTO,
    'mosquitto stopped mid-stream and restarted: all 10 000 arrive in order, duplicates only across the restart',
    async () => {
      const b = await broker({ persistence: true });
      const sub = await subscriber(b.url, { persistent: true, clientId: `persistent-sub-${process.pid}` });
      const j = await openJournal();
      const sink = bridge(b.url);
      const d = await startDispatcher(sink, j, {
        batch: { maxRecords: 500, maxBytes: 1 << 20, lingerMs: 0 },
        retry: { minMs: 50, maxMs: 200 },
      });
      // Appended in steps so the restart falls in the middle of the stream, not after it.
      const appending = (async () => {
        for (let from = 1; from <= 10_000; from += 500) {
          await appendRange(j, from, from + 499);
          await eventually(
            () => d.position >= from - 1000 || d.status().state !== 'up',
            'the sink keeping up',
          );
        }
      })();
      await eventually(() => d.position >= 3000, '3000 delivered before the restart', 60_000);
      await b.stop();
      await eventually(() => d.status().state === 'backoff', 'the sink backing off while mosquitto is down');
      sub.mark = 1;
      await b.start();
      await appending;

      await eventually(() => d.position === 10_000, 'the cursor at 10 000', 60_000);
      await eventually(
        () => new Set(sub.received.map((m) => m.id)).size === 10_000,
        'all 10 000 at the subscriber',
      );
      expectInOrder(j, sub.received, range(1, 10_000));
      // A second copy only after the restart, of a record first sent before it.
      const firstAt = new Map<string | undefined, number>();
      let duplicates = 0;
      for (const m of sub.received) {
        const at = firstAt.get(m.id);
        if (at === undefined) firstAt.set(m.id, m.at);
        else {
          duplicates++;
          expect({ id: m.id, first: at, again: m.at }).toEqual({ id: m.id, first: 0, again: 1 });
        }
      }
      expect(sink.stats.connections).toBe(2);
      expect(d.status().counters.deadLettered).toBe(0);
      console.info(`mqtt bridge restart: ${duplicates} duplicates of ${sub.received.length} messages`);
    },
    120_000,
  );

  itWithPeer(
    MOSQUITTO,
    'a frozen broker (SIGSTOP, half-open link) is found by keepalive, not the deadline; after SIGCONT nothing is lost',
    async () => {
      const b = await broker();
      const sub = await subscriber(b.url);
      const j = await openJournal();
      const log = captureLog();
      const sink = bridge(b.url, { keepaliveSeconds: 1, connectTimeoutMs: 3_000, log });
      // The deadline is far away: only keepalive can end the stalled batch in time.
      const d = await startDispatcher(sink, j, { timeoutMs: 120_000, retry: { minMs: 50, maxMs: 500 } }, log);
      await appendRange(j, 1, 200);
      await eventually(() => d.position === 200, 'the first 200 delivered');
      const pid = mosquittoPid(b.port);
      process.kill(pid, 'SIGSTOP');
      let frozen = true;
      onCleanup(() => frozen && process.kill(pid, 'SIGCONT'));
      const t0 = Date.now();
      await appendRange(j, 201, 500);
      await eventually(() => d.status().state === 'backoff', 'the sink giving up on the frozen link', 30_000);
      const detectedMs = Date.now() - t0;
      expect(d.status().lastError).toContain('Keepalive timeout');
      expect(d.position).toBe(200);
      process.kill(pid, 'SIGCONT');
      frozen = false;

      await eventually(() => d.position === 500, 'the cursor at 500 after SIGCONT', 60_000);
      await eventually(
        () => new Set(sub.received.map((m) => m.id)).size === 500,
        'all 500 at the subscriber',
      );
      expectInOrder(j, sub.received, range(1, 500));
      expect(sink.stats.connections).toBeGreaterThanOrEqual(2);
      console.info(`mqtt bridge half-open link found after ${detectedMs} ms (keepalive 1 s)`);
    },
    120_000,
  );
});

describe('mqtt bridge sink: records it must not send', () => {
  itWithPeer(
    MOSQUITTO,
    'a record whose topic renders invalid (wildcard, empty) is dead-lettered alone; the rest arrive in order',
    async () => {
      const b = await broker();
      const sub = await subscribe(b.url, '#');
      onCleanup(() => sub.close());
      const j = await openJournal();
      const d = await startDispatcher(bridge(b.url, { topic: '{topic}' }), j, {
        batch: { maxRecords: 20, maxBytes: 1 << 20, lingerMs: 0 },
      });
      await appendRange(j, 1, 30, { topic: (i) => (i === 5 ? 'edge/a/+' : i === 8 ? '' : `edge/t/${i}`) });

      await eventually(() => d.position === 30, 'the cursor at 30');
      const kept = range(1, 30).filter((i) => i !== 5 && i !== 8);
      await eventually(() => sub.received.length >= kept.length, 'the valid records at the subscriber');
      expectInOrder(j, sub.received, kept);
      const dl = await j.listDeadLetters('bridge', 10);
      expect(dl.map((l) => l.seq)).toEqual([5, 8]);
      expect(dl[0].reason).toContain('wildcard');
      expect(dl[1].reason).toContain('empty');
      expect(d.status()).toMatchObject({ state: 'up' });
      expect(d.status().counters).toMatchObject({ delivered: 28, deadLettered: 2 });
    },
    60_000,
  );

  itWithPeer(
    MOSQUITTO,
    'loop rule: a record the client source took from this same broker is not published back; one from another broker is (content type kept)',
    async () => {
      const b = await broker();
      const sub = await subscriber(b.url);
      const j = await openJournal();
      const sink = bridge(b.url);
      const d = await startDispatcher(sink, j);
      const rec = (i: number, source: string, brokerAttr?: string): RecordInput => ({
        ts: Date.now(),
        source,
        device: 'site-broker',
        topic: `t/${i}`,
        payload: Buffer.from(`m${i}`),
        contentType: i === 1 ? 'application/json' : undefined,
        attributes: brokerAttr ? { broker: brokerAttr, qos: '1' } : undefined,
      });
      const own = brokerKey(b.url);
      await append(j, [
        rec(1, 'mqtt'),
        rec(2, 'mqtt-client', own),
        rec(3, 'mqtt-client', 'other.example:1883'),
        rec(4, 'mqtt-client', own),
        rec(5, 'mqtt', own),
      ]);

      await eventually(() => d.position === 5, 'the cursor at 5');
      await eventually(() => sub.received.length >= 3, 'the three that may go');
      expectInOrder(j, sub.received, [1, 3, 5]);
      expect(sub.received.map((m) => m.contentType)).toEqual(['application/json', undefined, undefined]);
      expect(sink.stats).toMatchObject({ published: 3, loopSkipped: 2 });
      expect(d.status().counters).toMatchObject({ delivered: 5, deadLettered: 0 });
    },
    30_000,
  );
});

describe('mqtt bridge sink: the broker sets the terms', () => {
  itWithPeer(
    MOSQUITTO,
    'wrong credentials: auth-failing (SinkAuthError), never dead-lettered; a corrected passwordFile is read at the next connect',
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeferry-mqtt-auth-'));
      onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
      const passwd = path.join(dir, 'passwd');
      execFileSync('mosquitto_passwd', ['-b', '-c', passwd, 'edge', 's3cret']);
      const b = await broker({ extraConfig: ['allow_anonymous false', `password_file ${passwd}`] });
      const passwordFile = path.join(dir, 'edge.password');
      fs.writeFileSync(passwordFile, 'wrong\n');
      const j = await openJournal();
      const log = captureLog();
      const sink = bridge(b.url, { username: 'edge', passwordFile });
      const d = await startDispatcher(sink, j, { retry: { minMs: 20, maxMs: 100 } }, log);
      await appendRange(j, 1, 20);

      await eventually(() => d.status().state === 'auth-failing', 'the sink auth-failing');
      expect(d.status().lastError).toMatch(/Bad User Name or Password|Not authorized/);
      expect(log.lines.filter((l) => l.obj.code === 'EF_SINK_AUTH')).toHaveLength(1);
      expect(d.status().counters.deadLettered).toBe(0);
      expect(sink.stats.connections).toBe(0);

      const sub = await subscribe(b.url, 'edge/#', { clientId: 'watcher' }).catch(() => null);
      expect(sub).toBeNull(); // anonymous is refused too: the broker really checks
      fs.writeFileSync(passwordFile, 's3cret\n');
      await eventually(() => d.position === 20, 'delivered with the corrected password');
      expect(d.status()).toMatchObject({ state: 'up', lastError: null });
    },
    30_000,
  );

  itWithPeer(
    MOSQUITTO,
    'mqtts:// with a client certificate (mTLS) delivers; a client certificate from another CA does not',
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeferry-mqtt-tls-'));
      onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
      const pki = generatePki(dir);
      const b = await broker({
        extraConfig: [
          `cafile ${pki.caFile}`,
          `certfile ${pki.serverCertFile}`,
          `keyfile ${pki.serverKeyFile}`,
          'require_certificate true',
        ],
      });
      const url = `mqtts://127.0.0.1:${b.port}`;
      const tls = { caFile: pki.caFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile };
      const j = await openJournal();
      const good = await startDispatcher(bridge(url, { tls, name: 'good' }), j);
      const wrong = { ...tls, certFile: pki.otherClientCertFile, keyFile: pki.otherClientKeyFile };
      const bad = await startDispatcher(bridge(url, { tls: wrong, name: 'bad' }), j, {
        retry: { minMs: 20, maxMs: 100 },
      });
      await appendRange(j, 1, 50);

      await eventually(() => good.position === 50, 'delivered over mTLS');
      await eventually(() => bad.status().counters.retries >= 2, 'the other CA refused');
      expect(bad.status()).toMatchObject({ state: 'backoff', cursor: 0 });
    },
    30_000,
  );

  itWithPeer(
    MOSQUITTO,
    "the window stays within the broker's Receive Maximum (mosquitto max_inflight_messages 5)",
    async () => {
      const b = await broker({ extraConfig: ['max_inflight_messages 5'] });
      const sub = await subscriber(b.url);
      const j = await openJournal();
      const sink = bridge(b.url, { window: 100 });
      const d = await startDispatcher(sink, j, {
        batch: { maxRecords: 200, maxBytes: 1 << 20, lingerMs: 0 },
      });
      await appendRange(j, 1, 1000);

      await eventually(() => d.position === 1000, 'the cursor at 1000');
      await eventually(() => sub.received.length >= 1000, '1000 at the subscriber');
      expectInOrder(j, sub.received, range(1, 1000));
      expect(sink.window).toBe(5);
      expect(sink.stats.maxInflight).toBe(5);
    },
    30_000,
  );

  itWithPeer(
    MOSQUITTO,
    "a record over the broker's Maximum Packet Size is dead-lettered alone, never sent; the rest arrive",
    async () => {
      const b = await broker({ extraConfig: ['max_packet_size 1000'] });
      const sub = await subscriber(b.url);
      const j = await openJournal();
      const sink = bridge(b.url);
      const d = await startDispatcher(sink, j);
      await appendRange(j, 1, 20, {
        payload: (i) => Buffer.from(i === 7 ? `m${i}`.padEnd(2000, '.') : `m${i}`),
      });

      await eventually(() => d.position === 20, 'the cursor at 20');
      await eventually(() => sub.received.length >= 19, '19 at the subscriber');
      expectInOrder(
        j,
        sub.received,
        range(1, 20).filter((i) => i !== 7),
      );
      const dl = await j.listDeadLetters('bridge', 10);
      expect(dl.map((l) => l.seq)).toEqual([7]);
      expect(dl[0].reason).toContain("over the broker's Maximum Packet Size 1000");
      expect(sink.stats).toMatchObject({ connections: 1, published: 19 });
    },
    30_000,
  );

  itWithPeer(
    MOSQUITTO,
    'a broker that takes QoS 0 only (CONNACK Maximum QoS 0) is not published to at QoS 1: backoff, with the reason',
    async () => {
      const b = await broker({ extraConfig: ['max_qos 0'] });
      const j = await openJournal();
      const sink = bridge(b.url);
      const d = await startDispatcher(sink, j, { retry: { minMs: 20, maxMs: 100 } });
      await appendRange(j, 1, 5);

      await eventually(
        () => d.status().state === 'backoff' && d.status().counters.retries >= 2,
        'backing off',
      );
      expect(d.status().lastError).toContain('CONNACK Maximum QoS): set qos: 0');
      expect(sink.stats).toMatchObject({ connections: 0, published: 0 });
      expect(d.status()).toMatchObject({ cursor: 0, counters: { deadLettered: 0 } });
    },
    30_000,
  );

  itWithPeer(
    MOSQUITTO,
    'MQTT 3.1.1 and QoS 0: delivered in order without user properties',
    async () => {
      const b = await broker();
      const sub = await subscribe(b.url, 'up/#', { protocolVersion: 4 });
      onCleanup(() => sub.close());
      const j = await openJournal();
      const d = await startDispatcher(
        bridge(b.url, { protocolVersion: 4, qos: 0, topic: 'up/{source}/{device}' }),
        j,
      );
      await appendRange(j, 1, 300);

      await eventually(() => d.position === 300, 'the cursor at 300');
      await eventually(() => sub.received.length >= 300, '300 at the subscriber');
      expect(sub.received.map((m) => m.payload)).toEqual(range(1, 300).map((i) => `m${i}`));
      expect(new Set(sub.received.map((m) => `${m.topic} ${m.id}`))).toEqual(
        new Set(['up/test/d undefined']),
      );
    },
    30_000,
  );
});

describe('mqtt bridge sink: in the daemon', () => {
  itWithPeer(
    MOSQUITTO,
    'a device publishes to the embedded broker; the bridge delivers to mosquitto as edgeferry-<node>, on edge/<node>/<topic>',
    async () => {
      const b = await broker();
      const sub = await subscriber(b.url);
      const dir = tempDir();
      onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
      const cfg = baseConfig(dir, {
        sinks: [{ name: 'cloud-mqtt', type: 'mqtt', url: b.url, batch: { lingerMs: 1 } }],
      });
      const daemon = await startDaemon(dir, writeConfig(dir, cfg));
      onCleanup(() => daemon.kill());
      const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`, { clientId: 'dev-1' });
      onCleanup(() => device.endAsync(true));
      for (let i = 1; i <= 100; i++) await device.publishAsync(`sensors/t${i % 3}`, `m${i}`, { qos: 1 });

      await eventually(() => sub.received.length >= 100, '100 messages at the subscriber');
      const epoch = (await daemon.status()).journal.epoch;
      expect(sub.received.map((m) => m.payload)).toEqual(range(1, 100).map((i) => `m${i}`));
      expect(sub.received.map((m) => m.id)).toEqual(range(1, 100).map((i) => `${epoch}-${i}`));
      expect(sub.received.map((m) => m.topic)).toEqual(
        range(1, 100).map((i) => `edge/test-node/sensors/t${i % 3}`),
      );
      expect(new Set(sub.received.map((m) => m.node))).toEqual(new Set(['test-node']));
      const client = await mqtt.connectAsync(b.url, { clientId: 'edgeferry-test-node', protocolVersion: 5 });
      // The broker takes the session over from the sink: proof of the default client id.
      await daemon.waitForLog((l) => l.msg === 'broker connection lost' && l.sink === 'cloud-mqtt');
      await client.endAsync(true);
      const sink = (await daemon.status()).sinks[0];
      expect(sink).toMatchObject({ name: 'cloud-mqtt', cursor: 100, deadLettered: 0 });
    },
    60_000,
  );
});

describe('mqtt bridge sink: config', () => {
  const parse = (s: Record<string, unknown>) =>
    parseConfig({ sinks: [{ name: 'cloud', type: 'mqtt', ...s }] }, {});
  const problem = (s: Record<string, unknown>): string => {
    try {
      parse(s);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error('accepted');
  };

  it('fills the defaults', () => {
    expect(parse({ url: 'mqtts://cloud.example' }).sinks[0]).toMatchObject({
      protocolVersion: 5,
      topic: 'edge/{node}/{topic}',
      qos: 1,
      retain: false,
      window: 100,
      keepaliveSeconds: 30,
      routes: ['#'],
    });
  });

  it('refuses bad fields, naming them', () => {
    expect(problem({ url: 'http://cloud.example' })).toContain(
      'sinks[0].url: must be an mqtt:// or mqtts:// URL',
    );
    expect(problem({ url: 'mqtt://c', topic: 'edge/{nodes}/{topic}' })).toContain(
      'sinks[0].topic: unknown placeholder {nodes}',
    );
    expect(problem({ url: 'mqtt://c', topic: 'edge/+/{topic}' })).toContain(
      'sinks[0].topic: contains a wildcard',
    );
    expect(problem({ url: 'mqtt://c', topic: 'edge/{topic' })).toContain('sinks[0].topic: has an unmatched');
    expect(problem({ url: 'mqtt://c', qos: 2 })).toContain('sinks[0].qos: expected 0 or 1');
    expect(problem({ url: 'mqtt://c', protocolVersion: 3 })).toContain(
      'sinks[0].protocolVersion: expected 4',
    );
    expect(problem({ url: 'mqtt://c', window: 0 })).toContain(
      'sinks[0].window: must be an integer in 1..65535',
    );
    expect(problem({ url: 'mqtt://c', password: 'x' })).toContain(
      'sinks[0].username: required with password',
    );
    expect(problem({ url: 'mqtt://c', username: 'u', password: 'x', passwordFile: '/p' })).toContain(
      'sinks[0].passwordFile: password and passwordFile exclude each other',
    );
    expect(problem({ url: 'mqtt://c', tls: { caFile: '/ca' } })).toContain('sinks[0].url: must be mqtts://');
    expect(problem({ url: 'mqtts://c', tls: { certFile: '/c' } })).toContain('sinks[0].tls.certFile');
    expect(problem({ url: 'mqtt://c', windw: 5 })).toContain('windw');
  });
});

describe('mqtt bridge sink: topic template prefix (for the client source on MQTT 3.1.1)', () => {
  it('is the literal start of every rendered topic, or null when a record field comes first', () => {
    expect(templatePrefix('edge/{node}/{topic}', 'n1')).toBe('edge/n1/');
    expect(templatePrefix('up/{node}', 'n1')).toBe('up/n1');
    expect(templatePrefix('fixed/topic', 'n1')).toBe('fixed/topic');
    expect(templatePrefix('{topic}/x', 'n1')).toBeNull();
    expect(templatePrefix('{node}{device}', 'n1')).toBe('n1');
  });
});

describe('mqtt bridge sink: resources', () => {
  it('200 connections dropped under it leave no socket or client behind, and lose nothing', async () => {
    const up = new MqttUpstream();
    await up.start();
    onCleanup(() => up.stop());
    let drops = 0;
    up.answer = () => (drops++ < 200 ? 'retry' : 'accept');
    const count = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;
    const sockets = () => count('TCPSocketWrap');
    const before = sockets();
    const timersBefore = count('Timeout');
    const j = await openJournal();
    const sink = bridge(up.url);
    const d = await startDispatcher(sink, j, { retry: { minMs: 1, maxMs: 2 } });
    await appendRange(j, 1, 20);

    await eventually(() => d.position === 20, 'delivered after 200 dropped connections');
    expect(sink.stats.connections).toBe(201);
    expect(up.accepted.map((m) => m.payload.toString())).toEqual(range(1, 20).map((i) => `m${i}`));
    // The live connection: its two ends.
    await eventually(() => sockets() <= before + 2, 'only the live connection open');
    // A dead client's keepalive or connect timer would stay: 200 of them.
    expect(count('Timeout')).toBeLessThan(timersBefore + 10);
    console.info(`mqtt bridge after 200 reconnects: ${count('Timeout') - timersBefore} more timers`);
  });
});
