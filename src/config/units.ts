// Human-friendly sizes and durations for the config file. Results are whole numbers: byte
// budgets and timer delays below one unit are never meant, so a fraction is reported as a typo
// rather than silently rounded.

// Keys are lower-case: byte units are matched case-insensitively ('64kib', '10mb'), since no
// reading of them is ambiguous for a byte budget.
const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

// Case-sensitive on purpose: 'M' could be read as months and 'D' is not a unit anywhere.
const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60 * 1000,
  h: 60 * 60 * 1000,
  d: 24 * 60 * 60 * 1000,
};

const QUANTITY = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/;

/** Bytes from an integer or a string such as `512`, `64KiB`, `10MB` (KB/MB/GB are 1000-based, KiB/MiB/GiB 1024-based). */
export function parseBytes(v: string | number): number {
  const n = parseQuantity(v, BYTE_UNITS, (unit) => unit.toLowerCase() || 'b');
  if (n === undefined) {
    throw new Error(
      `invalid byte size ${show(v)}: expected a non-negative whole number of bytes, optionally with a unit B, KB, MB, GB, KiB, MiB or GiB`,
    );
  }
  return n;
}

/** Milliseconds from a number (already ms) or a string such as `250ms`, `5s`, `10m`, `2h`, `7d`. */
export function parseDuration(v: string | number): number {
  const n = parseQuantity(v, DURATION_UNITS, (unit) => unit || 'ms');
  if (n === undefined) {
    throw new Error(
      `invalid duration ${show(v)}: expected a non-negative whole number of milliseconds, or a number with a unit ms, s, m, h or d`,
    );
  }
  return n;
}

function parseQuantity(
  v: string | number,
  units: Record<string, number>,
  normalizeUnit: (unit: string) => string,
): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = QUANTITY.exec(v.trim());
  if (!m) return undefined;
  const unit = normalizeUnit(m[2]);
  // hasOwn: a unit spelled like an Object.prototype member ('constructor') must not resolve.
  if (!Object.hasOwn(units, unit)) return undefined;
  const exact = Number(m[1]) * units[unit];
  const n = Math.round(exact);
  // Decimal fractions are inexact in binary ('1.1s' is 1100.0000000000002), so allow for that,
  // but not for a real fraction of a unit ('1.5B', '0.5ms').
  if (Math.abs(exact - n) > 1e-6 || !Number.isSafeInteger(n)) return undefined;
  return n;
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}
