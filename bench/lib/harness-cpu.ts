// CPU per part of a measured run: the target (its own sampler), the load generator (the bench
// process minus its main thread: the generator's worker thread and the V8 helper threads that
// collect its garbage), the consumer (its own process, or the bench main thread when it runs
// there), and the machine. Issue 15: a row is only a comparison
// when the target, not a part of the harness, set its rate; the busier of the load generator and
// the consumer is the harness part that could have.

import type { Consumer } from './consumer.ts';
import { nproc, readProc, SelfCpu, SystemCpu, threadCpuSec } from './proc.ts';
import { type Column, formatNumber } from './report.ts';

export interface CpuParts {
  [key: string]: number | null;
  /**
   * The load generator, % of one core: the bench process minus its main thread (which only
   * samples and talks to the consumer process, unless the consumer runs there).
   */
  loadgenCpuPct: number;
  /** The generator's worker thread alone (its event loop and socket syscalls; no GC helpers). */
  loadgenThreadCpuPct: number | null;
  /** The consumer: its own process, or the bench main thread when it runs in the bench process. */
  consumerCpuPct: number | null;
  /** The bench main thread (samplers, IPC; and the consumer when it runs there). */
  mainThreadCpuPct: number;
  /** The busier of the two: the harness part that could have set the rate. */
  harnessCpuPct: number;
  /** The whole bench process (generator, main thread, an in-process consumer). */
  benchCpuPct: number;
  /** Machine busy time (/proc/stat), % of one core (up to nproc x 100). */
  machineCpuPct: number;
  /** Machine busy time not charged to the target, the bench process or the consumer's process. */
  otherCpuPct: number;
}

/** The CPU columns every load scenario prints after the target's own `CPU %`. */
export const PART_COLUMNS: Column[] = [
  { key: 'loadgenCpuPct', label: 'loadgen CPU %', digits: 0 },
  { key: 'consumerCpuPct', label: 'consumer CPU %', digits: 0 },
  { key: 'otherCpuPct', label: 'other CPU %', digits: 0 },
  { key: 'boundBy', label: 'bound by', digits: 0, text: true },
];

/** Measures the parts over one window: `begin()` with the window, `end()` after the consumer's wait. */
export class PartsCpu {
  private readonly consumerPid: number | null;
  /** Without one (the null broker, the bare CoAP server), `consumerCpuPct` is null. */
  private readonly hasConsumer: boolean;
  private readonly self = new SelfCpu();
  private readonly machine = new SystemCpu();
  private t0 = 0;
  private consumer0 = 0;
  private main0 = 0;

  constructor(consumer: Consumer | null) {
    this.consumerPid = consumer?.pid ?? null;
    this.hasConsumer = consumer !== null;
  }

  begin(): void {
    this.t0 = performance.now();
    this.consumer0 = this.consumerPid ? (readProc(this.consumerPid)?.cpuSec ?? Number.NaN) : 0;
    this.main0 = threadCpuSec();
    this.self.begin();
    this.machine.begin();
  }

  /** `targetCpuPct` from the target's sampler; `loadThreadSec` the generator thread's CPU seconds. */
  end(targetCpuPct: number, loadThreadSec: number): CpuParts {
    const mainSec = threadCpuSec() - this.main0;
    const benchCpuPct = this.self.end();
    const machineCpuPct = this.machine.end();
    const ms = performance.now() - this.t0;
    const pct = (sec: number) => (ms > 0 ? (sec * 100_000) / ms : Number.NaN);
    const main = Number.isNaN(mainSec) ? 0 : pct(mainSec);
    const loadgen = Math.max(0, benchCpuPct - main);
    let consumer: number | null = this.hasConsumer ? main : null;
    let consumerProcess = 0;
    if (this.consumerPid) {
      consumerProcess = pct((readProc(this.consumerPid)?.cpuSec ?? Number.NaN) - this.consumer0);
      consumer = Number.isNaN(consumerProcess) ? null : consumerProcess;
      if (consumer === null) consumerProcess = 0;
    }
    return {
      loadgenCpuPct: loadgen,
      loadgenThreadCpuPct: Number.isNaN(loadThreadSec) ? null : pct(loadThreadSec),
      consumerCpuPct: consumer,
      mainThreadCpuPct: main,
      harnessCpuPct: Math.max(loadgen, consumer ?? 0),
      benchCpuPct,
      machineCpuPct,
      otherCpuPct: Math.max(0, machineCpuPct - targetCpuPct - benchCpuPct - consumerProcess),
    };
  }
}

/** The machine's cores busy to this share or more: none of the parts had a free core. */
const CORES_FULL = 0.9;

/** A part this busy (% of one core) or more is taken as saturated. */
const SATURATED_PCT = 90;

/**
 * What set a row's rate: `pace` when a paced load got the rate it offered; else the busiest of
 * the target, the load generator and the consumer (by CPU), with "cores full" when the machine
 * had no idle core left in the window; `none saturated` when no part reached 90 % of a core and
 * cores were free (a closed loop: in flight / round trip).
 */
export function boundBy(m: Record<string, number | null>, offeredRate = 0): string {
  if (offeredRate > 0 && (m.ingestRate ?? 0) >= 0.95 * offeredRate) return 'pace';
  const parts: [string, number][] = [
    ['target', m.cpuPct ?? Number.NaN],
    ['loadgen', m.loadgenCpuPct ?? Number.NaN],
    ['consumer', m.consumerCpuPct ?? Number.NaN],
  ];
  let best = parts[0];
  for (const p of parts.slice(1))
    if (!Number.isNaN(p[1]) && (Number.isNaN(best[1]) || p[1] > best[1])) best = p;
  if ((m.machineCpuPct ?? 0) >= CORES_FULL * nproc() * 100) return `${best[0]}, cores full`;
  return best[1] >= SATURATED_PCT ? best[0] : 'none saturated';
}

/** "target 150 %, loadgen 60 %, consumer 40 %" for a log line or note. */
export function describeParts(m: Record<string, number | null>): string {
  return (
    `target ${formatNumber(m.cpuPct, 0)} %, loadgen ${formatNumber(m.loadgenCpuPct, 0)} %, ` +
    `consumer ${formatNumber(m.consumerCpuPct, 0)} %, other ${formatNumber(m.otherCpuPct, 0)} %`
  );
}
