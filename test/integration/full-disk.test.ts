// The daemon on a disk that fills up, for real: its journal on an 8 MiB tmpfs that another file
// fills. Publishes made while the disk is full get no PUBACK (the connection closes); once space
// is back, publishing works again, and every message that was acknowledged survives a SIGKILL
// and restart and reaches the sink. Mounting needs root; elsewhere the test is skipped with the
// reason in its title.

import { appendFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { healthClient } from '../grpc/grpc-client.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';
import { mountTmpfs } from '../helpers/tmpfs.ts';
import { isCi } from '../interop/peer-tools.ts';

const tmpfs = mountTmpfs('edgeferry-daemon-fulldisk-', '8m');
const disk = tmpfs.dir;
const mounted = tmpfs.mounted;

let daemon: DaemonHandle | null = null;
let receiver: HttpReceiver | null = null;
afterAll(async () => {
  await daemon?.kill();
  await receiver?.stop();
  tmpfs.remove();
});

/** One QoS 1 publish on a fresh connection: true once PUBACKed, false if refused or timed out. */
async function publishOnce(port: number, payload: string): Promise<boolean> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId: 'disk-dev',
    reconnectPeriod: 0,
    connectTimeout: 2000,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 2000);
      c.once('close', () => resolve(false));
      c.publish('disk/t', payload, { qos: 1 }, (err) => {
        clearTimeout(timer);
        resolve(!err);
      });
    });
  } catch {
    return false;
  } finally {
    c.end(true);
  }
}

/** grpc.health.v1 Check of the whole server (''). */
function healthStatus(h: ReturnType<typeof healthClient>): Promise<string> {
  return new Promise((resolve, reject) =>
    h.Check({ service: '' }, { deadline: Date.now() + 10_000 }, (err: Error | null, r: { status: string }) =>
      err ? reject(err) : resolve(r.status),
    ),
  );
}

const title = mounted
  ? 'refuses publishes while the disk is full, recovers when space returns, and delivers every acknowledged message'
  : 'daemon on a full disk (skipped: cannot mount a tmpfs here, needs root)';

describe('daemon on a full disk', () => {
  it.skipIf(!mounted)(title, async () => {
    receiver = new HttpReceiver();
    await receiver.start();
    const dir = tempDir();
    const cfg = baseConfig(dir, {
      journal: { path: join(disk, 'journal') },
      sinks: [{ name: 'cloud', type: 'http', url: receiver.url, payloadEncoding: 'utf8' }],
    });
    const configPath = writeConfig(dir, cfg);
    daemon = await startDaemon(dir, configPath);
    const acked: string[] = [];
    const publish = async (p: string): Promise<boolean> => {
      const ok = await publishOnce(daemon!.mqttPort, p);
      if (ok) acked.push(p);
      return ok;
    };
    for (let i = 0; i < 20; i++) expect(await publish(`before-${i}`)).toBe(true);
    await eventually(() => receiver!.records.length >= 20, 'the first 20 delivered');
    // From here on the upstream refuses: what is acknowledged must come from the journal.
    receiver.respond = () => ({ status: 503 });

    // Fill the disk to the last few KiB, then publish until one is refused.
    writeFileSync(join(disk, 'filler'), Buffer.alloc(8 * 1024 * 1024 - 64 * 1024));
    let refusedAt = -1;
    for (let i = 0; i < 2000 && refusedAt < 0; i++) {
      if (!(await publish(`full-${i}-${'x'.repeat(2000)}`))) refusedAt = i;
    }
    expect(refusedAt).toBeGreaterThanOrEqual(0);
    // Take the last free bytes too, so the journal's reopen attempts fail while we look.
    try {
      for (let k = 0; k < 10_000; k++) appendFileSync(join(disk, 'filler'), Buffer.alloc(4096));
    } catch {
      // ENOSPC: full
    }
    expect(await publish('while-full')).toBe(false);
    // Operators see it: not writable, in status and metrics.
    const full = (await daemon.status()) as unknown as { journal: { writable: boolean } };
    expect(full.journal.writable).toBe(false);
    expect(await daemon.metrics()).toMatch(/^edgeferry_journal_writable 0$/m);
    // Not ready while every write is refused: Kubernetes takes the pod out of its Services.
    expect((await fetch(`http://127.0.0.1:${daemon.adminPort}/readyz`)).status).toBe(503);
    const health = healthClient(`127.0.0.1:${daemon.grpcPort}`);
    expect(await healthStatus(health)).toBe('NOT_SERVING');
    await daemon.waitForLog(
      (l) => l.msg === 'journal write failed: refusing records until the database is reopened',
    );

    rmSync(join(disk, 'filler'));
    await eventually(() => publish('after-0'), 'a publish acknowledged once space is back', 20_000, 200);
    for (let i = 1; i < 20; i++) expect(await publish(`after-${i}`)).toBe(true);
    await daemon.waitForLog((l) => l.msg === 'journal reopened after a write error');
    expect(await daemon.metrics()).toMatch(/^edgeferry_journal_writable 1$/m);
    expect((await fetch(`http://127.0.0.1:${daemon.adminPort}/readyz`)).status).toBe(200);
    expect(await healthStatus(health)).toBe('SERVING');
    health.close();
    expect(await daemon.metrics()).toMatch(/^edgeferry_journal_reopened_total [1-9]/m);

    // Acknowledged means on disk: a crash and restart replay the journal's log.
    await daemon.kill('SIGKILL');
    daemon = await startDaemon(dir, configPath);
    receiver.respond = () => ({ status: 200 });

    // Every acknowledged message arrives, in order; nothing refused was delivered.
    await eventually(
      () => receiver!.records.length >= acked.length,
      `${acked.length} records at the receiver`,
    );
    const got = receiver.records.map((r) => r.payload);
    expect(new Set(got).size).toBe(got.length);
    expect(got).toEqual(acked);
    expect(got).not.toContain('while-full');
  });
});

/** `p`, or a rejection naming `what` after `ms`: a hang detector, not a speed check. */
function withinOrHang<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms (hangs)`)), ms);
  });
  return Promise.race([p, hang]).finally(() => clearTimeout(timer));
}

const recoveryDisk = mountTmpfs('edgeferry-daemon-recovery-', '16m');
afterAll(() => recoveryDisk.remove());

describe('daemon while its journal recovers from a full disk', () => {
  it.skipIf(!recoveryDisk.mounted && !isCi())(
    recoveryDisk.mounted
      ? 'answers /metrics and /v1/status from memory, is not ready, and exits on SIGTERM within drainTimeoutMs'
      : 'daemon recovery on a full disk (skipped: cannot mount a tmpfs here, needs root)',
    async () => {
      // Under CI a tmpfs must be mountable (root): the test fails there instead of skipping.
      expect(recoveryDisk.mounted).toBe(true);
      const upstream = new HttpReceiver();
      await upstream.start();
      // The upstream refuses everything: the whole backlog stays, older than the in-memory tail.
      upstream.respond = () => ({ status: 503 });
      const dir = tempDir();
      const cfg = baseConfig(dir, {
        journal: { path: join(recoveryDisk.dir, 'journal') },
        shutdown: { drainTimeoutMs: '2s' },
        sinks: [{ name: 'cloud', type: 'http', url: upstream.url, retry: { minMs: 50, maxMs: 200 } }],
      });
      let d: DaemonHandle | null = await startDaemon(dir, writeConfig(dir, cfg));
      try {
        // 6000 x 1 KiB: more than the journal's 4 MiB tail, so the oldest undelivered record's
        // age must come from disk unless status answers from memory.
        const c = mqtt.connect(`mqtt://127.0.0.1:${d.mqttPort}`, {
          clientId: 'recovery-dev',
          reconnectPeriod: 0,
        });
        await new Promise<void>((resolve, reject) => {
          c.once('connect', () => resolve());
          c.once('error', reject);
        });
        const body = 'y'.repeat(1024);
        await Promise.all(
          Array.from(
            { length: 6000 },
            (_, i) =>
              new Promise<void>((res, rej) =>
                c.publish(`rec/${i}`, body, { qos: 1 }, (e) => (e ? rej(e) : res())),
              ),
          ),
        );
        c.end(true);
        const before = await d.status();
        expect(before.sinks[0].backlog).toBe(6000);

        // Fill the disk, then publish until the journal fails a write and starts recovering; its
        // reopen attempts keep failing while the disk stays full.
        try {
          for (let k = 0; k < 10_000; k++)
            appendFileSync(join(recoveryDisk.dir, 'filler'), Buffer.alloc(16 * 1024));
        } catch {
          // ENOSPC: full
        }
        let refused = false;
        for (let i = 0; i < 200 && !refused; i++) refused = !(await publishOnce(d.mqttPort, `full-${i}`));
        expect(refused).toBe(true);
        await d.waitForLog(
          (l) => l.msg === 'journal write failed: refusing records until the database is reopened',
        );

        const port = d.adminPort;
        const status = await withinOrHang(d.status(), 10_000, '/v1/status during recovery');
        expect((status.journal as unknown as { writable: boolean }).writable).toBe(false);
        expect(status.sinks[0].backlog).toBeGreaterThanOrEqual(6000);
        const metrics = await withinOrHang(d.metrics(), 10_000, '/metrics during recovery');
        expect(metrics).toMatch(/^edgeferry_journal_writable 0$/m);
        const ready = await withinOrHang(fetch(`http://127.0.0.1:${port}/readyz`), 10_000, '/readyz');
        expect(ready.status).toBe(503);

        // SIGTERM: the recovery is abandoned and the daemon exits cleanly, well within the
        // pod's grace period, instead of waiting for space that does not come back.
        const code = await withinOrHang(d.stop(), 15_000, 'exit after SIGTERM during recovery');
        expect(code).toBe(0);
        expect(d.logs.some((l) => l.msg === 'shutdown complete')).toBe(true);
        d = null;
      } finally {
        await d?.kill();
        await upstream.stop();
      }
    },
    90_000,
  );
});
