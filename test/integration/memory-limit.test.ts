// Issue 15's memory target against the real daemon: under a 160 MiB limit, a 4 x 100 000 QoS 1
// burst (4 concurrent publishers, 100 in flight each: the bench's load generator in a worker
// thread) into a sink whose upstream refuses connections completes with every message
// acknowledged, RSS never above the limit, and, once the upstream is back, all 400 000 records
// delivered. Once with `memory.limit` in the config, once inside a cgroup v1 memory cgroup the
// test creates (no limit in the config: the daemon must find it).
//
// About 6 s per case with the bin's node flags and GLIBC_TUNABLES (startDaemon runs them, as
// `npm start` does); 45-240 s before those, when the burst spent its time at the pause mark.

import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { prepareLoadInWorker } from '../../bench/lib/mqtt-load.ts';
import {
  BIN,
  baseConfig,
  type DaemonHandle,
  eventually,
  SHEBANG,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';

const MiB = 1024 ** 2;
const LIMIT = 160 * MiB;
const PUBLISHERS = 4;
const PER_PUBLISHER = 100_000;
const TOTAL = PUBLISHERS * PER_PUBLISHER;

/** An upstream that counts distinct seqs (a bitmap: 400 000 parsed records would weigh on the test). */
class CountingUpstream {
  readonly seen = new Uint8Array(TOTAL + 1);
  distinct = 0;
  outOfRange = 0;
  private server: Server | null = null;

  async start(port = 0): Promise<number> {
    const server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        body += c;
      });
      req.on('end', () => {
        for (const line of body.split('\n')) {
          if (line === '') continue;
          const seq = (JSON.parse(line) as { seq: number }).seq;
          if (seq < 1 || seq > TOTAL) this.outOfRange++;
          else if (this.seen[seq] === 0) {
            this.seen[seq] = 1;
            this.distinct++;
          }
        }
        res.end('ok\n');
      });
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/** A port that refuses connections now and that the upstream can listen on later. */
async function refusedPort(): Promise<number> {
  const probe = new CountingUpstream();
  const port = await probe.start();
  await probe.stop();
  return port;
}

function vmKb(pid: number, field: 'VmHWM' | 'VmRSS' | 'RssAnon' | 'RssFile'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN);
}

const daemons: DaemonHandle[] = [];
const upstreams: CountingUpstream[] = [];
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.kill()));
  await Promise.all(upstreams.splice(0).map((u) => u.stop()));
});

function configFor(dir: string, port: number, memory: Record<string, unknown> | undefined) {
  return baseConfig(dir, {
    coap: { enabled: false },
    grpc: { enabled: false },
    ...(memory ? { memory } : {}),
    sinks: [
      {
        name: 'up',
        type: 'http',
        url: `http://127.0.0.1:${port}/ingest`,
        // Back within a second of the upstream's return.
        retry: { minMs: 100, maxMs: '1s' },
      },
    ],
  });
}

/**
 * The burst, RSS sampled meanwhile; then the upstream comes up on the refused port and every
 * record must reach it. Returns what the report needs.
 */
async function burstThenDeliver(d: DaemonHandle, port: number) {
  const pid = d.proc.pid as number;
  const idleKb = vmKb(pid, 'VmRSS');
  let sampledPeakKb = 0;
  let peakAnonKb = 0;
  let peakFileKb = 0;
  const sample = () => {
    sampledPeakKb = Math.max(sampledPeakKb, vmKb(pid, 'VmRSS'));
    peakAnonKb = Math.max(peakAnonKb, vmKb(pid, 'RssAnon'));
    peakFileKb = Math.max(peakFileKb, vmKb(pid, 'RssFile'));
  };
  let sampler = setInterval(sample, 50);
  const load = await prepareLoadInWorker({
    host: '127.0.0.1',
    port: d.mqttPort,
    publishers: PUBLISHERS,
    messages: PER_PUBLISHER,
    qos: 1,
    inflight: 100,
    payloadBytes: 200,
    topicPrefix: 'burst',
    clientIdPrefix: 'burst-pub',
    timeoutMs: 240_000,
  });
  let result: Awaited<ReturnType<typeof load.go>>;
  try {
    result = await load.go();
  } finally {
    clearInterval(sampler);
  }
  const burstHwmKb = vmKb(pid, 'VmHWM');
  const burst = { sampledPeakKb, peakAnonKb, peakFileKb };
  sampledPeakKb = 0;
  peakAnonKb = 0;
  peakFileKb = 0;
  sampler = setInterval(sample, 50);
  // Every message acknowledged, so committed: nothing may be missing later.
  expect(result.acked).toBe(TOTAL);
  const held = await d.status();
  expect(held.journal.records).toBe(TOTAL);
  expect(held.sinks[0].state).toBe('backoff');

  const upstream = new CountingUpstream();
  upstreams.push(upstream);
  await upstream.start(port);
  try {
    await eventually(() => upstream.distinct === TOTAL, `all ${TOTAL} records delivered`, 120_000, 200);
  } finally {
    clearInterval(sampler);
  }
  expect(upstream.outOfRange).toBe(0);
  const after = (await d.status()) as Awaited<ReturnType<DaemonHandle['status']>> & {
    memory: { pauses: number; limit: number; source: string; peakRss: number };
  };
  expect(after.sinks[0].backlog).toBe(0);
  return {
    idleKb,
    burst,
    drain: { sampledPeakKb, peakAnonKb, peakFileKb },
    burstHwmKb,
    finalHwmKb: vmKb(pid, 'VmHWM'),
    rate: Math.round(result.rate),
    memory: after.memory,
  };
}

/** Our own cgroup v1 memory directory, where a child cgroup may be made; or why not. */
function memoryCgroupParent(): { dir: string } | { unavailable: string } {
  if (process.getuid?.() !== 0) return { unavailable: `not root (uid ${process.getuid?.()})` };
  const mount = '/sys/fs/cgroup/memory';
  if (!existsSync(join(mount, 'memory.limit_in_bytes')))
    return { unavailable: `no cgroup v1 memory controller at ${mount}` };
  const line = readFileSync('/proc/self/cgroup', 'utf8')
    .split('\n')
    .find((l) => /^\d+:[^:]*\bmemory\b[^:]*:/.test(l));
  const own = line ? join(mount, line.slice(line.lastIndexOf(':') + 1)) : mount;
  return { dir: existsSync(own) ? own : mount };
}

const cgroup = memoryCgroupParent();
describe('memory.limit under a QoS 1 burst into a down sink', () => {
  it(`with memory.limit 160MiB in the config: ${TOTAL} acknowledged, none lost, VmHWM of the burst under the limit`, async () => {
    const dir = tempDir();
    const port = await refusedPort();
    const configPath = writeConfig(dir, configFor(dir, port, { limit: '160MiB' }));
    const d = await startDaemon(dir, configPath);
    daemons.push(d);
    const r = await burstThenDeliver(d, port);
    console.log(`memory.limit (config): ${JSON.stringify(r)}`);
    expect(r.memory).toMatchObject({ limit: LIMIT, source: 'config' });
    // The burst: the target. The drain after it is not guarded (see guard.ts) and maps
    // LevelDB's tables: reported, not asserted.
    expect(r.burstHwmKb * 1024).toBeLessThanOrEqual(LIMIT);
    expect(d.proc.exitCode).toBeNull();
  }, 300_000);

  const inCgroup = async (parent: string) => {
    const cg = join(parent, `edgeferry-test-${process.pid}`);
    mkdirSync(cg, { recursive: true });
    try {
      writeFileSync(join(cg, 'memory.limit_in_bytes'), String(LIMIT));
      const dir = tempDir();
      const port = await refusedPort();
      // No memory section: the limit must be found in the cgroup.
      const configPath = writeConfig(dir, configFor(dir, port, undefined));
      const d = await startDaemon(dir, configPath, {
        command: {
          file: '/bin/sh',
          // The shell joins the cgroup, then becomes the daemon (same pid): everything it
          // starts, the config loader too, is charged to the cgroup.
          args: [
            '-c',
            'echo $$ > "$0/cgroup.procs" && exec "$@"',
            cg,
            process.execPath,
            ...SHEBANG.flags,
            BIN,
            'run',
            '--config',
            configPath,
          ],
          cwd: dir,
          env: { ...process.env, ...SHEBANG.env, NODE_NAME: '' },
        },
      });
      daemons.push(d);
      const r = await burstThenDeliver(d, port);
      const read = (f: string) => readFileSync(join(cg, f), 'utf8');
      const maxUsage = Number(read('memory.max_usage_in_bytes'));
      // Counts every time usage met the limit, page cache (the journal's files) included: the
      // kernel then reclaims clean cache, no process is harmed. Reported, not asserted.
      const failcnt = Number(read('memory.failcnt'));
      const oomKills = Number(/oom_kill (\d+)/.exec(read('memory.oom_control'))?.[1] ?? 0);
      console.log(`memory cgroup v1: ${JSON.stringify({ ...r, maxUsage, failcnt, oomKills })}`);
      expect(r.memory).toMatchObject({ limit: LIMIT, source: 'cgroup' });
      expect(oomKills).toBe(0);
      expect(maxUsage).toBeLessThanOrEqual(LIMIT);
      expect(r.burstHwmKb * 1024).toBeLessThanOrEqual(LIMIT);
      expect(d.proc.exitCode).toBeNull();
      expect(d.proc.signalCode).toBeNull();
      await d.kill();
    } finally {
      // Empty once the daemon is gone; a leftover would hold nothing.
      await Promise.all(daemons.splice(0).map((d) => d.kill()));
      try {
        rmdirSync(cg);
      } catch {
        // still busy: the kernel removes nothing by itself, but it holds no process either
      }
    }
  };
  const title = `inside a cgroup v1 memory cgroup limited to 160 MiB (no limit in the config): ${TOTAL} acknowledged, none lost, no OOM kill`;
  if ('dir' in cgroup) {
    it(title, () => inCgroup(cgroup.dir), 300_000);
  } else {
    console.warn(`edgeferry memory limit: skipping "${title}": ${cgroup.unavailable}`);
    it.skip(`${title} (skipped: ${cgroup.unavailable})`, () => {});
  }
});
