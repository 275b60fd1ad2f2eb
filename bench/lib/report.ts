// Scenario results: the shape written to bench/results/*.json and the printed table.

import type { MachineInfo, SourceInfo } from './machine.ts';

export interface Column {
  key: string;
  label: string;
  /** Decimals shown. */
  digits: number;
  /** Show reference/row beside the figure on non-reference rows. */
  ratio?: boolean;
  /** A text cell: `row.detail[key]` as it is (e.g. what bound the row), '-' when absent. */
  text?: boolean;
}

export interface ResultRow {
  /** What ran: 'edgeferry', 'aedes', 'mosquitto', 'null-broker qos1 x4', ... */
  target: string;
  metrics: Record<string, number | null>;
  /** Everything else worth keeping in the JSON (per-connection figures, raw windows). */
  detail?: Record<string, unknown>;
  error?: string;
  /**
   * The row this row's ratios are against, when not the outcome's `reference` (e.g. a NON row
   * against edgeferry's NON row while CON rows go against edgeferry's CON row).
   */
  reference?: string;
}

export interface ScenarioOutcome {
  params: Record<string, unknown>;
  columns: Column[];
  rows: ResultRow[];
  /** Target whose figures the other rows are compared with (ratio = reference / row). */
  reference?: string;
  /** Heading of the first column ('target' when absent; e.g. 'phase'). */
  rowLabel?: string;
  notes: string[];
}

export interface ScenarioResult extends ScenarioOutcome {
  scenario: string;
  description: string;
  startedAt: string;
  finishedAt: string;
  machine: MachineInfo;
  /** The daemon's code: git HEAD and uncommitted changes (figures of a dirty tree are not HEAD's). */
  source?: SourceInfo;
  error?: string;
}

export function formatNumber(v: number | null | undefined, digits: number): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function formatRatio(ref: number | null | undefined, v: number | null | undefined): string {
  if (ref == null || v == null || Number.isNaN(ref) || Number.isNaN(v) || v === 0) return '';
  const r = ref / v;
  return ` (${r >= 10 ? r.toFixed(0) : r.toFixed(2)}x)`;
}

/** A plain-text table; a ratio "(reference/row)" follows each figure of non-reference rows. */
export function formatTable(
  result: Pick<ScenarioResult, 'scenario' | 'columns' | 'rows' | 'reference' | 'rowLabel'>,
): string {
  const ref = result.rows.find((r) => r.target === result.reference && !r.error);
  const header = [result.rowLabel ?? 'target', ...result.columns.map((c) => c.label)];
  const body = result.rows.map((row) => {
    if (row.error) return [row.target, `ERROR: ${row.error.replace(/\s+/g, ' ').slice(0, 160)}`];
    const rowRef = row.reference ? result.rows.find((r) => r.target === row.reference && !r.error) : ref;
    return [
      row.target,
      ...result.columns.map((c) => {
        if (c.text) return String(row.detail?.[c.key] ?? '-');
        const v = row.metrics[c.key];
        const text = formatNumber(v, c.digits);
        return c.ratio && rowRef && row !== rowRef ? text + formatRatio(rowRef.metrics[c.key], v) : text;
      }),
    ];
  });
  const widths = header.map((h, i) =>
    Math.max(h.length, ...body.filter((r) => i === 0 || r.length > 2).map((r) => r[i].length)),
  );
  const line = (cells: string[]) =>
    cells.length === 2 && cells[1].startsWith('ERROR')
      ? `${cells[0].padEnd(widths[0])}  ${cells[1]}`
      : cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...body.map(line)].join('\n');
}
