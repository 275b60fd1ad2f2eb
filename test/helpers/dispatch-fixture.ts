// A real Journal on disk and a real SinkDispatcher over it, for tests of the delivery side that
// run in the test process (no daemon): what they add up is the same code the daemon runs.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../../src/core/logger.ts';
import type { Sink } from '../../src/core/pipeline.ts';
import type { RecordInput } from '../../src/core/record.ts';
import { type DispatchOptions, SinkDispatcher } from '../../src/dispatch/sink-dispatcher.ts';
import { Journal } from '../../src/journal/journal.ts';

const noop = (): void => {};
export const quiet: Logger = { debug: noop, info: noop, warn: noop, error: noop };

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  obj: Record<string, unknown>;
}

/** A Logger that keeps its lines, to count them. */
export function captureLog(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: LogLine['level']) =>
    (obj: object, msg: string): void => {
      lines.push({ level, msg, obj: obj as Record<string, unknown> });
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, k) => from + k);

/** Teardown steps of the current test, run in reverse by `runCleanups` (call it in afterEach). */
const cleanups: (() => Promise<unknown> | unknown)[] = [];
export function onCleanup(f: () => Promise<unknown> | unknown): void {
  cleanups.push(f);
}
export async function runCleanups(): Promise<void> {
  for (const f of cleanups.splice(0).reverse()) await f();
}

/** A fresh journal in a temporary directory, closed and removed by runCleanups. */
export async function openJournal(log: Logger = quiet): Promise<Journal> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeferry-dispatch-'));
  const j = await Journal.open(
    {
      path: path.join(dir, 'journal'),
      maxBytes: 1 << 30,
      onFull: 'reject',
      fsync: false,
      groupCommit: { maxRecords: 256, maxDelayMs: 1 },
      lockWaitMs: 0,
    },
    log,
  );
  onCleanup(async () => {
    await j.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return j;
}

/**
 * Appends records `from..to` with payload `m<i>` (or `payload(i)`) on `topic` (or `topic(i)`);
 * resolves once all are committed.
 */
export function appendRange(
  j: Journal,
  from: number,
  to: number,
  opts: { topic?: string | ((i: number) => string); payload?: (i: number) => Buffer } = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = to - from + 1;
    for (const i of range(from, to)) {
      const r: RecordInput = {
        ts: Date.now(),
        source: 'test',
        device: 'd',
        topic: typeof opts.topic === 'function' ? opts.topic(i) : (opts.topic ?? 't'),
        payload: opts.payload ? opts.payload(i) : Buffer.from(`m${i}`),
      };
      j.append(
        r,
        (err) => {
          if (err) reject(err);
          else if (--left === 0) resolve();
        },
        null,
      );
    }
  });
}

export const DISPATCH_DEFAULTS: DispatchOptions = {
  routes: ['#'],
  batch: { maxRecords: 50, maxBytes: 1 << 20, lingerMs: 0 },
  retry: { minMs: 20, maxMs: 200 },
  timeoutMs: 5_000,
};

/** A started dispatcher over `j`; stopped (1 s grace) by runCleanups. */
export async function startDispatcher(
  sink: Sink,
  j: Journal,
  opts: Partial<DispatchOptions> = {},
  log: Logger = quiet,
): Promise<SinkDispatcher> {
  const d = new SinkDispatcher(sink, j, { ...DISPATCH_DEFAULTS, ...opts }, log);
  await d.start();
  onCleanup(() => d.stop(1_000));
  return d;
}
