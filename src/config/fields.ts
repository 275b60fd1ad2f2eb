// What the config schemas of the core and of every component share: field types with units and
// range checks, sections with defaults, and messages written as `<dotted.path>: <message>` with
// the rejected value as it looked in the YAML. A component's own schema sits beside it
// (src/sources/<name>/config.ts, src/sinks/<name>/config.ts); src/config/schema.ts composes them.

import * as z from 'zod';
import { validateTopicFilter } from '../core/topic-filter.ts';
import { parseBytes, parseDuration } from './units.ts';

// Node clamps a setTimeout delay above 2^31-1 ms to 1 ms, so a "30d" timeout would fire at once.
export const MAX_TIMER_MS = 2 ** 31 - 1;

const NAME = /^[A-Za-z0-9_.-]+$/;
// RFC 9110 token: undici rejects anything else at request time, i.e. on every send.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A rejected value as it looked in the YAML, for `(got ...)` in messages. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  return String(v);
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export const nullToUndefined = (v: unknown): unknown => (v === null ? undefined : v);

/** A section whose keys all have defaults: absent, empty (`journal:` is null in YAML) or partial. */
export function section<S extends z.ZodRawShape>(shape: S) {
  const obj = z.strictObject(shape);
  return z.preprocess(nullToUndefined, obj.prefault({} as z.input<typeof obj>));
}

export function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`;
  return z.number().refine((n) => Number.isSafeInteger(n) && n >= min && n <= max, {
    error: (iss) => `must be an integer ${range} (got ${describeValue(iss.input)})`,
  });
}

export const port = () => integer(0, 65535);

export const nonEmpty = () => z.string().min(1, { error: 'must not be empty' });

/** A byte size or duration: a number in the base unit or a string with a unit, range-checked after conversion. */
export function quantity(kind: 'bytes' | 'duration', min: number, max = Number.MAX_SAFE_INTEGER) {
  const parse = kind === 'bytes' ? parseBytes : parseDuration;
  const unit = kind === 'bytes' ? (min === 1 ? ' byte' : ' bytes') : ' ms';
  const example =
    kind === 'bytes' ? 'a byte size such as 65536 or 64KiB' : 'a duration such as 500, 250ms or 5s';
  return z
    .custom<string | number>((v) => typeof v === 'string' || typeof v === 'number', {
      error: (iss) =>
        iss.input === undefined ? 'required' : `expected ${example} (got ${describeValue(iss.input)})`,
    })
    .transform((v, ctx) => {
      let n: number;
      try {
        n = parse(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message, input: v });
        return z.NEVER;
      }
      if (n < min) {
        ctx.addIssue({
          code: 'custom',
          message: `must be at least ${min}${unit} (got ${describeValue(v)})`,
          input: v,
        });
        return z.NEVER;
      }
      if (n > max) {
        const why = max === MAX_TIMER_MS ? ', the longest timer Node supports' : '';
        ctx.addIssue({
          code: 'custom',
          message: `must be at most ${max}${unit}${why} (got ${describeValue(v)})`,
          input: v,
        });
        return z.NEVER;
      }
      return n;
    });
}

export const bytes = (min = 1) => quantity('bytes', min);
/** A delay handed to a timer, so capped at what setTimeout honours. */
export const timerMs = (min = 0) => quantity('duration', min, MAX_TIMER_MS);

export const httpUrl = z.string().refine(
  (s) => {
    if (!URL.canParse(s)) return false;
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  },
  { error: (iss) => `must be an http(s) URL (got ${describeValue(iss.input)})` },
);

export const topicFilter = z.string().superRefine((filter, ctx) => {
  const problem = validateTopicFilter(filter);
  if (problem) ctx.addIssue({ code: 'custom', message: problem, input: filter });
});

/** A body's length and framing are the sink's: a configured one would contradict it. */
const FRAMING_HEADERS = new Set(['content-length', 'transfer-encoding']);

export const headers = z.record(z.string(), z.string()).superRefine((h, ctx) => {
  for (const [name, value] of Object.entries(h)) {
    if (!HEADER_NAME.test(name)) {
      ctx.addIssue({ code: 'custom', path: [name], message: 'is not a valid HTTP header name', input: name });
    } else if (FRAMING_HEADERS.has(name.toLowerCase())) {
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: 'is set by the sink for each request',
        input: name,
      });
    } else if (/[\r\n\0]/.test(value)) {
      ctx.addIssue({ code: 'custom', path: [name], message: 'must not contain CR, LF or NUL', input: value });
    }
  }
});

export const retry = section({
  minMs: timerMs().prefault(100),
  maxMs: timerMs(1).prefault(30_000),
}).refine((r) => r.minMs <= r.maxMs, {
  path: ['minMs'],
  error: (iss) => {
    const r = iss.input as { minMs: number; maxMs: number };
    return `must be <= maxMs (got ${r.minMs} > ${r.maxMs})`;
  },
});

/** A component's name (a sink, a device): it keys cursors, metrics and API calls. */
export const componentName = () =>
  z.string().regex(NAME, {
    error: (iss) => `must match [A-Za-z0-9_.-]+ (got ${describeValue(iss.input)})`,
  });

export const filePath = () => nonEmpty();

/**
 * A list whose elements' `name` must be unique: each duplicate is reported at its own index,
 * naming the first use. Runs even when some element is invalid, so a duplicate is reported with
 * the other problems.
 */
export function uniqueNames<T extends z.ZodType>(element: T, what: string, listName: string) {
  return z.array(element).superRefine(
    (list, ctx) => {
      const seen = new Map<string, number>();
      (list as unknown[]).forEach((x, i) => {
        // Elements may be unparsed here (see `when`), hence the guard.
        if (!isRecord(x) || typeof x.name !== 'string') return;
        const first = seen.get(x.name);
        if (first === undefined) seen.set(x.name, i);
        else {
          ctx.addIssue({
            code: 'custom',
            path: [i, 'name'],
            message: `duplicate ${what} name ${describeValue(x.name)} (also used by ${listName}[${first}])`,
            input: x.name,
          });
        }
      });
    },
    { when: (payload) => Array.isArray(payload.value) },
  );
}

/** A sink's `routes`: MQTT topic filters, everything by default. */
export const sinkRoutes = () =>
  z
    .array(topicFilter)
    .min(1, { error: 'must list at least one topic filter ("#" for everything)' })
    .default(() => ['#']);

/** A sink's `batch`: what the dispatcher reads and hands over at once. */
export const sinkBatch = () =>
  section({
    maxRecords: integer(1).default(500),
    // Default: 1 MiB, or this sink's share of memory.limit (src/memory/budget.ts).
    maxBytes: z.preprocess(nullToUndefined, bytes().optional()),
    lingerMs: timerMs().prefault(5),
  });

/** TLS towards an upstream: its CA, and a client certificate with its key for mTLS. */
export const clientTls = () =>
  z
    .strictObject({
      caFile: filePath().optional(),
      certFile: filePath().optional(),
      keyFile: filePath().optional(),
      serverName: nonEmpty().optional(),
    })
    .refine((t) => Boolean(t.certFile) === Boolean(t.keyFile), {
      path: ['certFile'],
      error: 'certFile and keyFile go together (client certificate for mTLS)',
    })
    .optional();
