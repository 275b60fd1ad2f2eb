// The MQTT client source against a real mosquitto: everything published is journaled, nothing is
// acknowledged before its commit (the broker redelivers what was not), a refused append leads to
// a redelivery, a saturated journal stops the reading, and the loop rule.

import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterEach, describe, expect } from 'vitest';
import type { RecordAppender } from '../../src/core/pipeline.ts';
import type {
  MqttClientSource,
  MqttClientSourceOptions,
} from '../../src/sources/mqtt-client/mqtt-client-source.ts';
import { generatePki } from '../grpc/certs.ts';
import { eventually } from '../helpers/daemon.ts';
import { type MosquittoBroker, startMosquitto } from '../helpers/mosquitto-broker.ts';
import { itWithPeer, mosquittoBroker } from '../interop/peer-tools.ts';
import { JournalKit } from '../journal/journal-kit.ts';
import {
  clientSource,
  HoldingAppender,
  journalRecords,
  payloadsOf,
  publishAll,
  publisher,
} from './client-kit.ts';

// mosquitto drops QoS 1 messages for a subscriber past max_queued_messages (default 1000) and
// sends a 3.1.1 client at most max_inflight_messages (default 20) unacknowledged.
const ROOMY = ['max_queued_messages 0', 'max_inflight_messages 1000'];

const range = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

describe('mqtt client source', () => {
  let broker: MosquittoBroker | null = null;
  const sources: MqttClientSource[] = [];
  const clients: MqttClient[] = [];
  let kit: JournalKit | null = null;

  afterEach(async () => {
    for (const s of sources.splice(0)) await s.stop();
    for (const c of clients.splice(0)) await c.endAsync(true);
    await kit?.cleanup();
    kit = null;
    await broker?.close();
    broker = null;
  });

  async function pub(url: string, opts = {}): Promise<MqttClient> {
    const c = await publisher(url, opts);
    clients.push(c);
    return c;
  }

  /**
   * The source started on `broker`, and a publisher whose probe message (`site/probe`) proved the
   * subscription: the SUBACK is not visible from outside.
   */
  async function subscribed(
    appender: RecordAppender,
    over: Record<string, unknown> = {},
    internal: Partial<MqttClientSourceOptions> = {},
    pubOpts: IClientOptions = {},
  ): Promise<{ source: MqttClientSource; p: MqttClient }> {
    const url = (broker as MosquittoBroker).url;
    const source = clientSource(appender, url, over, internal);
    sources.push(source);
    await source.start();
    await eventually(() => source.counters.state === 'connected', 'source connected');
    const p = await pub(url, pubOpts);
    await eventually(async () => {
      await p.publishAsync('site/probe', 'probe', { qos: 1 });
      return source.counters.received > 0;
    }, 'subscription active');
    return { source, p };
  }

  itWithPeer(
    mosquittoBroker(),
    'journals 10 000 QoS 1 messages published to mosquitto, exactly the set sent',
    async () => {
      broker = await startMosquitto({ extraConfig: ROOMY });
      kit = new JournalKit();
      const journal = await kit.open();
      const { source, p } = await subscribed(journal);
      const sent = range(10_000, 'm');
      await publishAll(p, (i) => `site/dev${i % 7}/t`, sent, 1);
      await eventually(
        () => journal.lastCommittedSeq >= source.counters.received && source.counters.received >= 10_001,
        'all journaled',
        60_000,
      );
      const recs = (await journalRecords(journal)).filter((r) => r.topic !== 'site/probe');
      expect(new Set(payloadsOf(recs))).toEqual(new Set(sent));
      expect(recs[0]).toMatchObject({
        source: 'mqtt-client',
        device: 'site-broker',
        attributes: { broker: `127.0.0.1:${broker.port}`, qos: '1' },
      });
      expect(source.counters.refused).toBe(0);
    },
    90_000,
  );

  itWithPeer(
    mosquittoBroker(),
    'acknowledges nothing before the commit: mosquitto redelivers the uncommitted QoS 1 and 2 messages to the same clientId',
    async () => {
      broker = await startMosquitto({ extraConfig: ROOMY });
      const appender = new HoldingAppender();
      const { source, p } = await subscribed(appender, { qos: 2 });
      await publishAll(p, (i) => `site/q${i % 2 === 0 ? 1 : 2}`, range(20, 'held'), 1);
      await publishAll(p, () => 'site/q2', range(10, 'held2'), 2);
      await eventually(() => appender.appended.length >= 31, 'all appended (not committed)');
      // Never committed: stop() gives up waiting and disconnects with the acks unsent.
      await source.stop();
      // The session's messages come right after the CONNACK: listen before connecting.
      const again = mqtt.connect(broker.url, { clientId: 'edge-1', clean: false, reconnectPeriod: 0 });
      clients.push(again);
      const redelivered: string[] = [];
      again.on('message', (_t, payload) => redelivered.push(payload.toString()));
      await eventually(() => redelivered.length >= 31, 'redelivered by mosquitto', 15_000).catch((err) => {
        throw new Error(`${err.message}: got ${redelivered.length}: ${redelivered.join(' ')}`);
      });
      const uniq = new Set(redelivered);
      for (const x of [...range(20, 'held'), ...range(10, 'held2')]) expect(uniq.has(x)).toBe(true);
    },
    60_000,
  );

  itWithPeer(
    mosquittoBroker(),
    'after the commit every QoS 1 and 2 message is acknowledged: the same clientId reconnecting gets nothing again',
    async () => {
      broker = await startMosquitto({ extraConfig: ROOMY });
      kit = new JournalKit();
      const journal = await kit.open();
      const { source, p } = await subscribed(journal, { qos: 2 });
      await publishAll(p, () => 'site/one', range(300, 'one'), 1);
      await publishAll(p, () => 'site/two', range(300, 'two'), 2);
      await eventually(() => source.counters.received >= 601, 'all received');
      await eventually(() => journal.lastCommittedSeq >= 601, 'all committed');
      const recs = await journalRecords(journal);
      expect(recs.filter((r) => r.attributes.qos === '2').length).toBe(300);
      await source.stop();
      // Anything unacknowledged is resent right after the CONNACK, before a message published later.
      const again = mqtt.connect(broker.url, { clientId: 'edge-1', clean: false, reconnectPeriod: 0 });
      clients.push(again);
      const got: string[] = [];
      again.on('message', (_t, payload) => got.push(payload.toString()));
      await new Promise((r) => again.once('connect', r));
      await p.publishAsync('site/marker', 'marker', { qos: 1 });
      await eventually(() => got.includes('marker'), 'marker delivered');
      expect(got).toEqual(['marker']);
    },
    60_000,
  );

  itWithPeer(
    mosquittoBroker(),
    'a message over maxPacketBytes (MQTT 3.1.1) is acknowledged and dropped, counted; the next one is journaled and nothing is redelivered',
    async () => {
      broker = await startMosquitto({ extraConfig: ROOMY });
      const appender = new HoldingAppender();
      const { source, p } = await subscribed(appender, { maxPacketBytes: '1KiB' });
      appender.release();
      await p.publishAsync('site/big', Buffer.alloc(4096, 0x61), { qos: 1 });
      await p.publishAsync('site/small', 'after', { qos: 1 });
      await eventually(() => appender.appended.some((r) => r.payload.toString() === 'after'), 'next one in');
      appender.release();
      expect(payloadsOf(appender.appended).filter((x) => x !== 'probe')).toEqual(['after']);
      expect(source.counters.oversizeDropped).toBe(1);
      await eventually(() => source.counters.state === 'connected', 'still connected');
      await source.stop();
      // The big one was acknowledged: the session holds nothing for edge-1.
      const again = mqtt.connect(broker.url, { clientId: 'edge-1', clean: false, reconnectPeriod: 0 });
      clients.push(again);
      const got: string[] = [];
      again.on('message', (t) => got.push(t));
      await new Promise((r) => again.once('connect', r));
      await p.publishAsync('site/marker', 'marker', { qos: 1 });
      await eventually(() => got.includes('site/marker'), 'marker delivered');
      expect(got).toEqual(['site/marker']);
    },
    30_000,
  );

  itWithPeer(
    mosquittoBroker(),
    'a refused append disconnects unacknowledged; after the backoff the broker redelivers and nothing is lost',
    async () => {
      broker = await startMosquitto({ extraConfig: ROOMY });
      kit = new JournalKit();
      const journal = await kit.open();
      let refusals = 3;
      const appender = {
        get saturated() {
          return journal.saturated;
        },
        whenUnsaturated: (cb: () => void) => journal.whenUnsaturated(cb),
        append: ((rec, cb, state) => {
          if (rec.payload.toString().startsWith('r-') && refusals > 0) {
            refusals--;
            setImmediate(() => cb?.(new Error('journal full'), 0, state));
            return;
          }
          journal.append(rec, cb, state);
        }) as typeof journal.append,
      };
      const { source, p } = await subscribed(appender);
      const sent = range(200, 'r');
      await publishAll(p, () => 'site/r', sent, 1);
      await eventually(async () => {
        const got = new Set(payloadsOf(await journalRecords(journal)));
        return sent.every((s) => got.has(s));
      }, 'every message journaled despite the refusals');
      expect(source.counters.refused).toBeGreaterThanOrEqual(1);
      expect(source.counters.reconnects).toBeGreaterThanOrEqual(1);
    },
    60_000,
  );

  itWithPeer(
    mosquittoBroker(),
    'a saturated journal stops the reading; intake resumes when it drains, nothing lost',
    async () => {
      broker = await startMosquitto({ extraConfig: ROOMY });
      const appender = new HoldingAppender();
      const { source, p } = await subscribed(appender);
      const before = appender.appended.length;
      appender.saturated = true;
      await publishAll(p, () => 'site/bp', range(50, 'bp'), 1);
      await eventually(() => appender.appended.length > before, 'first message read');
      // Held: one message read, then the pump waits for whenUnsaturated (nothing to poll for:
      // the check is that no more come in this while).
      await new Promise((r) => setTimeout(r, 300));
      expect(appender.appended.length).toBe(before + 1);
      expect(source.counters.pauses).toBe(1);
      appender.unsaturate();
      await eventually(
        () => appender.appended.length >= before + 50,
        'the rest read after the journal drained',
      );
      appender.release();
      const bp = payloadsOf(appender.appended).filter((x) => x.startsWith('bp-'));
      expect(new Set(bp)).toEqual(new Set(range(50, 'bp')));
    },
    30_000,
  );

  itWithPeer(
    mosquittoBroker(),
    'mqtts with a client certificate: journals from a mosquitto that requires one; a certificate of another CA is refused and reported',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'edgeferry-mqtt-pki-'));
      try {
        const pki = generatePki(dir);
        // mosquitto started as root reads them as the mosquitto user.
        chmodSync(dir, 0o755);
        for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
        broker = await startMosquitto({
          extraConfig: [
            `cafile ${pki.caFile}`,
            `certfile ${pki.serverCertFile}`,
            `keyfile ${pki.serverKeyFile}`,
            'require_certificate true',
          ],
        });
        const url = `mqtts://127.0.0.1:${broker.port}`;
        const tls = { caFile: pki.caFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile };
        const appender = new HoldingAppender();
        const source = clientSource(appender, url, { tls });
        sources.push(source);
        await source.start();
        await eventually(() => source.counters.state === 'connected', 'connected over TLS');
        const p = await pub(url, { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey });
        await eventually(async () => {
          await p.publishAsync('site/tls', 'over-tls', { qos: 1 });
          return appender.appended.length > 0;
        }, 'journaled over TLS');
        expect(appender.appended[0].attributes?.broker).toBe(`127.0.0.1:${broker.port}`);

        const stranger = clientSource(appender, url, {
          clientId: 'edge-2',
          tls: { caFile: pki.caFile, certFile: pki.otherClientCertFile, keyFile: pki.otherClientKeyFile },
        });
        sources.push(stranger);
        await stranger.start();
        await eventually(() => stranger.counters.reconnects >= 2, 'refused and retried');
        expect(stranger.counters.connects).toBe(0);
        expect(stranger.counters.lastError).not.toBeNull();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    30_000,
  );

  itWithPeer(
    mosquittoBroker(),
    'loop rule: drops (acks, counts) messages stamped with our node id and those under ignoreTopicPrefixes',
    async () => {
      broker = await startMosquitto({ extraConfig: ROOMY });
      const appender = new HoldingAppender();
      const { source, p } = await subscribed(
        appender,
        { protocolVersion: 5 },
        { ignoreTopicPrefixes: ['site/edge/test-node/'] },
        { protocolVersion: 5 },
      );
      const own = { qos: 1 as const, properties: { userProperties: { 'edgeferry-node': 'test-node' } } };
      const other = { qos: 1 as const, properties: { userProperties: { 'edgeferry-node': 'other-node' } } };
      await p.publishAsync('site/a', 'own', own);
      await p.publishAsync('site/edge/test-node/x', 'prefixed', { qos: 1 });
      await p.publishAsync('site/b', 'foreign', other);
      await eventually(() => appender.appended.some((r) => r.payload.toString() === 'foreign'), 'foreign in');
      appender.release();
      expect(payloadsOf(appender.appended).filter((x) => x !== 'probe')).toEqual(['foreign']);
      expect(source.counters.loopDropped).toBe(2);
    },
    30_000,
  );
});
