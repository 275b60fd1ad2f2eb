// Child processes of a benchmark run (tracked so none outlives the bench process), free ports,
// temp dirs, and a /proc sampler for a child's memory and CPU.

import { type ChildProcess, execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

/** Registers a child to be killed when the bench process exits, however it exits. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function killAllChildren(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

let installed = false;

/** Kills the children on exit, on SIGINT/SIGTERM and on an uncaught error. */
export function installExitHandlers(): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAllChildren);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping children\n`);
      killAllChildren();
      process.exit(130);
    });
  }
  const die = (err: unknown) => {
    process.stderr.write(`bench: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
    killAllChildren();
    process.exit(1);
  };
  process.on('uncaughtException', die);
  process.on('unhandledRejection', die);
}

/** A temp dir removed at exit (or earlier with `removeTempDir`). */
export function makeTempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

export function removeTempDir(d: string): void {
  tempDirs.delete(d);
  rmSync(d, { recursive: true, force: true });
}

/** A port that was free a moment ago (bind 0, read, close): the child binds it right after. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A UDP port that was free a moment ago (bind 0, read, close). */
export function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, host, () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

/** Cores this process may run on. */
export function nproc(): number {
  return availableParallelism();
}

let clkTck = 0;
function ticksPerSecond(): number {
  if (clkTck === 0) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

export interface ProcReading {
  at: number;
  /** utime + stime, seconds. */
  cpuSec: number;
  rssKb: number;
  /** Anonymous memory (heap, malloc) and file pages mapped in (LevelDB reads its tables by mmap). */
  rssAnonKb: number;
  rssFileKb: number;
  hwmKb: number;
}

/** One reading of /proc/<pid>/status (VmRSS, VmHWM) and /proc/<pid>/stat (utime + stime). */
export function readProc(pid: number): ProcReading | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised comm (which may hold spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[14 - 3]) + Number(fields[15 - 3]);
    return {
      at: performance.now(),
      cpuSec: ticks / ticksPerSecond(),
      rssKb: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0),
      rssAnonKb: Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0),
      rssFileKb: Number(/RssFile:\s+(\d+)/.exec(status)?.[1] ?? 0),
      hwmKb: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0),
    };
  } catch {
    return null;
  }
}

/**
 * RSS of two mappings that move with a backlog, from /proc/<pid>/smaps: LevelDB's tables (it
 * reads them through mmap: file pages) and the main thread's malloc heap (`[heap]`, grown by
 * brk: where V8's ArrayBuffer backing stores come from).
 */
export function readMappedRss(pid: number): { tablesKb: number; brkHeapKb: number } | null {
  try {
    let tablesKb = 0;
    let brkHeapKb = 0;
    let kind: 'tables' | 'heap' | null = null;
    for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
      const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (header) {
        const name = header[1];
        kind = name.endsWith('.ldb') ? 'tables' : name === '[heap]' ? 'heap' : null;
        continue;
      }
      if (kind === null || !line.startsWith('Rss:')) continue;
      const kb = Number(/^Rss:\s+(\d+)/.exec(line)?.[1] ?? 0);
      if (kind === 'tables') tablesKb += kb;
      else brkHeapKb += kb;
    }
    return { tablesKb, brkHeapKb };
  } catch {
    return null;
  }
}

export interface WindowStats {
  /** Largest VmRSS seen in the window, MB. */
  peakRssMb: number;
  /** VmRSS when the window began (after start-up and warm-up), MB. */
  startRssMb: number;
  /** VmHWM at the end of the window (peak over the whole process life), MB. */
  hwmMb: number;
  /** CPU time over wall time in the window, % of one core (can exceed 100). */
  cpuPct: number;
  wallMs: number;
  samples: number;
}

/**
 * Samples a process every `everyMs` between `begin()` and `end()`; with `keepSeries` every
 * reading is kept too (RSS over time: `series`).
 */
export class ProcSampler {
  private readonly pid: number;
  private readonly everyMs: number;
  private readonly keepSeries: boolean;
  private timer: NodeJS.Timeout | null = null;
  private first: ProcReading | null = null;
  private last: ProcReading | null = null;
  private peakRssKb = 0;
  private samples = 0;
  /** Every reading since `begin()` (with `keepSeries`). */
  readonly series: ProcReading[] = [];

  constructor(pid: number, everyMs = 200, keepSeries = false) {
    this.pid = pid;
    this.everyMs = everyMs;
    this.keepSeries = keepSeries;
  }

  begin(): void {
    this.first = readProc(this.pid);
    this.last = this.first;
    this.peakRssKb = this.first?.rssKb ?? 0;
    this.samples = 1;
    this.series.length = 0;
    if (this.keepSeries && this.first) this.series.push(this.first);
    this.timer = setInterval(() => this.sample(), this.everyMs);
  }

  /** The latest reading (taken now). */
  now(): ProcReading | null {
    this.sample();
    return this.last;
  }

  end(): WindowStats {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    const a = this.first;
    const b = this.last;
    const wallMs = a && b ? b.at - a.at : 0;
    return {
      peakRssMb: this.peakRssKb / 1024,
      startRssMb: (a?.rssKb ?? 0) / 1024,
      hwmMb: (b?.hwmKb ?? 0) / 1024,
      cpuPct: a && b && wallMs > 0 ? ((b.cpuSec - a.cpuSec) * 100_000) / wallMs : Number.NaN,
      wallMs,
      samples: this.samples,
    };
  }

  private sample(): void {
    const r = readProc(this.pid);
    if (!r) return;
    this.samples++;
    this.last = r;
    if (this.keepSeries) this.series.push(r);
    if (r.rssKb > this.peakRssKb) this.peakRssKb = r.rssKb;
  }
}

/**
 * CPU time (utime + stime, seconds) of the calling thread: in a worker thread, that worker's own
 * (its event loop and its sockets' syscalls run there), apart from the rest of the process.
 * NaN where /proc/thread-self is not readable.
 */
export function threadCpuSec(): number {
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / ticksPerSecond();
  } catch {
    return Number.NaN;
  }
}

/** CPU of this process (all threads: the load worker, the main thread's samplers), % of one core. */
export class SelfCpu {
  private t0 = 0;
  private u0: NodeJS.CpuUsage = { user: 0, system: 0 };

  begin(): void {
    this.t0 = performance.now();
    this.u0 = process.cpuUsage();
  }

  end(): number {
    const u = process.cpuUsage(this.u0);
    const ms = performance.now() - this.t0;
    return ms > 0 ? (u.user + u.system) / 10 / ms : Number.NaN;
  }
}

/**
 * The machine's UDP counters from /proc/net/snmp (RcvbufErrors: datagrams dropped because a
 * socket's receive buffer was full), or null where unreadable.
 */
export function udpCounters(): Record<string, number> | null {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('Udp:'));
    if (lines.length < 2) return null;
    const names = lines[0].split(/\s+/).slice(1);
    const values = lines[1].split(/\s+/).slice(1).map(Number);
    return Object.fromEntries(names.map((n, i) => [n, values[i]]));
  } catch {
    return null;
  }
}

/** Busy time of the whole machine from /proc/stat, % of one core (up to nproc x 100). */
export class SystemCpu {
  private t0 = 0;
  private busy0 = 0;

  private static busySec(): number {
    try {
      const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
      // cpu user nice system idle iowait irq softirq steal ...
      const f = line.trim().split(/\s+/).slice(1).map(Number);
      return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / ticksPerSecond();
    } catch {
      return Number.NaN;
    }
  }

  begin(): void {
    this.t0 = performance.now();
    this.busy0 = SystemCpu.busySec();
  }

  end(): number {
    const ms = performance.now() - this.t0;
    return ms > 0 ? ((SystemCpu.busySec() - this.busy0) * 100_000) / ms : Number.NaN;
  }
}
