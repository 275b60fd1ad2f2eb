// The MQTT client source in the real daemon: SIGKILL mid-stream loses nothing (the broker keeps
// the persistent session and redelivers what was not acknowledged), a broker that cannot be
// reached or refuses the credentials shows in /v1/status and /metrics and is retried, and an
// MQTT 5 shared subscription receives.

import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';
import { type MosquittoBroker, startMosquitto } from '../helpers/mosquitto-broker.ts';
import { allOf, itWithPeer, mosquittoBroker, mosquittoClients } from '../interop/peer-tools.ts';
import { publisher } from './client-kit.ts';

const ROOMY = ['max_queued_messages 0', 'max_inflight_messages 1000'];

interface ClientStatus {
  state: string;
  lastError: string | null;
  reconnects: number;
  received: number;
  connects: number;
}

async function clientStatus(d: DaemonHandle): Promise<ClientStatus | undefined> {
  const s = (await d.status()).sources.find((x) => x.name === 'mqtt-client');
  return s?.counters as unknown as ClientStatus | undefined;
}

function decodePayload(p: string): string {
  return Buffer.from(p, 'base64').toString();
}

describe('mqtt client source in the daemon', () => {
  let broker: MosquittoBroker | null = null;
  const daemons: DaemonHandle[] = [];
  const clients: MqttClient[] = [];
  const receiver = new HttpReceiver();
  const dirs: string[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true);
    for (const d of daemons.splice(0)) await d.kill('SIGKILL');
    await receiver.stop();
    receiver.records.length = 0;
    receiver.batches.length = 0;
    await broker?.close();
    broker = null;
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  function config(dir: string, mqttClient: Record<string, unknown>): string {
    return writeConfig(
      dir,
      baseConfig(dir, {
        mqttClient: {
          clientId: 'edge-1',
          topics: ['site/#'],
          retry: { minMs: 50, maxMs: 1000 },
          ...mqttClient,
        },
        sinks: [{ name: 'up', type: 'http', url: receiver.url, batch: { maxRecords: 1000, lingerMs: 5 } }],
      }),
    );
  }

  async function daemon(dir: string, cfg: string): Promise<DaemonHandle> {
    const d = await startDaemon(dir, cfg);
    daemons.push(d);
    return d;
  }

  itWithPeer(
    mosquittoBroker(),
    'SIGKILL mid-stream, restart with the same config: every published message arrives (duplicates counted, none missing)',
    async () => {
      broker = await startMosquitto({ extraConfig: ROOMY });
      await receiver.start();
      const dir = tempDir();
      dirs.push(dir);
      const cfg = config(dir, { url: broker.url });
      const first = await daemon(dir, cfg);
      await eventually(async () => (await clientStatus(first))?.state === 'connected', 'connected');
      const pub = await publisher(broker.url);
      clients.push(pub);
      const TOTAL = 6000;
      let sent = 0;
      // The publisher keeps going while the daemon dies and comes back: mosquitto (up throughout)
      // keeps the session's messages meanwhile.
      const publishing = (async () => {
        while (sent < TOTAL) {
          const chunk = Array.from({ length: 100 }, (_, i) => `k-${sent + i}`);
          await Promise.all(chunk.map((p) => pub.publishAsync('site/kill', p, { qos: 1 })));
          sent += chunk.length;
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      await eventually(() => receiver.records.length >= 1000, 'some records delivered before the kill');
      await first.kill('SIGKILL');
      const killedAt = sent;
      const second = await daemon(dir, cfg);
      await publishing;
      await eventually(
        () => new Set(receiver.records.map((r) => decodePayload(r.payload))).size >= TOTAL,
        'every message delivered after the restart',
        60_000,
      ).catch((err) => {
        const got = new Set(receiver.records.map((r) => decodePayload(r.payload)));
        const missing = Array.from({ length: TOTAL }, (_, i) => `k-${i}`).filter((k) => !got.has(k));
        throw new Error(`${err.message}: ${missing.length} missing, e.g. ${missing.slice(0, 5).join(' ')}`);
      });
      const payloads = receiver.records.map((r) => decodePayload(r.payload));
      const distinct = new Set(payloads);
      for (let i = 0; i < TOTAL; i++) expect(distinct.has(`k-${i}`)).toBe(true);
      expect(killedAt).toBeLessThan(TOTAL);
      expect(receiver.records[0].source).toBe('mqtt-client');
      // Duplicates (at-least-once) are allowed; the count is printed for the report.
      console.log(
        `sigkill: ${TOTAL} sent, killed after ${killedAt} published, ${payloads.length - distinct.size} duplicates`,
      );
      expect((await clientStatus(second))?.state).toBe('connected');
    },
    120_000,
  );

  itWithPeer(
    mosquittoBroker(),
    'an unreachable broker shows in status and metrics and is retried with backoff; the daemon stays up',
    async () => {
      // A port that nothing listens on: a broker started and stopped again.
      broker = await startMosquitto();
      await broker.stop();
      await receiver.start();
      const dir = tempDir();
      dirs.push(dir);
      const d = await daemon(dir, config(dir, { url: broker.url }));
      await eventually(
        async () => ((await clientStatus(d))?.reconnects ?? 0) >= 3,
        'three reconnect attempts',
      );
      const st = (await clientStatus(d)) as ClientStatus;
      expect(['backoff', 'connecting']).toContain(st.state);
      expect(st.lastError).toMatch(/ECONNREFUSED/);
      expect((await d.status()).ready).toBe(true);
      const metrics = await d.metrics();
      expect(metrics).toMatch(/edgeferry_mqtt_client_connected 0/);
      expect(metrics).toMatch(/edgeferry_mqtt_client_reconnects_total [1-9]/);
      // The broker comes back: the source connects without a restart.
      await broker.start();
      await eventually(async () => (await clientStatus(d))?.state === 'connected', 'connected once it is up');
      expect(await d.metrics()).toMatch(/edgeferry_mqtt_client_connected 1/);
    },
    60_000,
  );

  itWithPeer(
    allOf(mosquittoBroker(), mosquittoClients()),
    'a wrong password is reported (CONNACK refused) and retried, never crashing the daemon',
    async () => {
      const secrets = mkdtempSync(join(tmpdir(), 'edgeferry-secrets-'));
      dirs.push(secrets);
      const pwfile = join(secrets, 'passwd');
      const r = spawnSync('mosquitto_passwd', ['-b', '-c', pwfile, 'edge', 'right']);
      expect(r.status).toBe(0);
      // mosquitto started as root reads it as the mosquitto user.
      chmodSync(secrets, 0o755);
      chmodSync(pwfile, 0o644);
      broker = await startMosquitto({ extraConfig: ['allow_anonymous false', `password_file ${pwfile}`] });
      const wrong = join(secrets, 'wrong');
      writeFileSync(wrong, 'not-it\n');
      await receiver.start();
      const dir = tempDir();
      dirs.push(dir);
      const d = await daemon(dir, config(dir, { url: broker.url, username: 'edge', passwordFile: wrong }));
      await eventually(async () => ((await clientStatus(d))?.reconnects ?? 0) >= 2, 'retried');
      const st = (await clientStatus(d)) as ClientStatus;
      expect(st.connects).toBe(0);
      expect(st.lastError).toMatch(/Not authorized|Bad username or password/i);
      expect(d.proc.exitCode).toBeNull();
    },
    60_000,
  );

  itWithPeer(
    mosquittoBroker(),
    'MQTT 5 shared subscription: two daemons in one $share group split the messages, none lost',
    async () => {
      broker = await startMosquitto({ extraConfig: ROOMY });
      await receiver.start();
      const ds: DaemonHandle[] = [];
      for (const id of ['edge-a', 'edge-b']) {
        const dir = tempDir();
        dirs.push(dir);
        const d = await daemon(
          dir,
          config(dir, { url: broker.url, clientId: id, protocolVersion: 5, topics: ['$share/gw/site/#'] }),
        );
        await eventually(async () => (await clientStatus(d))?.state === 'connected', `${id} connected`);
        ds.push(d);
      }
      const pub = await publisher(broker.url, { protocolVersion: 5 });
      clients.push(pub);
      // Subscriptions are made after the CONNACK: publish until both members have had messages.
      let n = 0;
      await eventually(async () => {
        await Promise.all(
          Array.from({ length: 20 }, () => pub.publishAsync('site/s', `s-${n++}`, { qos: 1 })),
        );
        const counts = await Promise.all(ds.map(async (d) => (await clientStatus(d))?.received ?? 0));
        return counts.every((c) => c > 0);
      }, 'both members of the group received');
      // Now both are subscribed: a fresh batch goes to the group, each message to one member.
      const fresh = Array.from({ length: 200 }, (_, i) => `f-${i}`);
      await Promise.all(fresh.map((p) => pub.publishAsync('site/s', p, { qos: 1 })));
      const freshOf = () =>
        receiver.records.map((r) => decodePayload(r.payload)).filter((p) => p.startsWith('f-'));
      await eventually(() => new Set(freshOf()).size >= fresh.length, 'the fresh batch delivered');
      expect(freshOf().length).toBe(fresh.length);
    },
    60_000,
  );
});
