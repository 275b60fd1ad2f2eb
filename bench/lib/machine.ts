import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { binRuns } from './daemon.ts';

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memTotalGb: number;
  node: string;
  kernel: string;
}

export function machineInfo(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1].trim();
  } catch {
    // not Linux
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel,
    memTotalGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
  };
}

export function describeMachine(m: MachineInfo): string {
  return `${m.nproc} cpu (${m.cpuModel}), ${m.memTotalGb} GiB, node ${m.node}, ${m.kernel}`;
}

export interface SourceInfo {
  /** HEAD of the repository the daemon ran from. */
  commit: string | null;
  /** Uncommitted changes under src/, bin/ and package*.json: the daemon measured is not HEAD. */
  uncommitted: string[];
  /** What bin/edgeferry.js runs (BENCH_DAEMON): the compiled dist/ or src/ through type stripping. */
  runs: 'dist' | 'src';
}

/** What code the daemon ran, from git (null/empty outside a git checkout). */
export function sourceInfo(): SourceInfo {
  const root = new URL('../../', import.meta.url).pathname;
  const git = (args: string[]) =>
    execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const commit = git(['rev-parse', 'HEAD']);
    const status = git(['status', '--porcelain', '--', 'src', 'bin', 'package.json', 'package-lock.json']);
    return { commit, uncommitted: status ? status.split('\n').map((l) => l.trim()) : [], runs: binRuns() };
  } catch {
    return { commit: null, uncommitted: [], runs: binRuns() };
  }
}

export function describeSource(s: SourceInfo): string {
  if (!s.commit) return `not a git checkout, runs ${s.runs}/`;
  const dirty =
    s.uncommitted.length > 0 ? ` + ${s.uncommitted.length} uncommitted change(s) under src/bin` : '';
  return `${s.commit.slice(0, 12)}${dirty}, runs ${s.runs}/`;
}
