// The memory budget: from one limit (`memory.limit`, or the container's), the sizes of the
// buffers that grow with load. Pure arithmetic, shared by the config check (a setting that
// cannot fit is a config error naming it) and the daemon's start-up.

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * RSS of the daemon before any load: about 77 MB idle from dist/, 100-107 MB from src/ through
 * type stripping (README; bench/tools/idle-rss.ts). The budgets share what lies above it.
 */
export const BASE_RSS = 80 * MiB;
/** Below this the headroom left for load cannot hold even the smallest buffers. */
export const MIN_HEADROOM = 32 * MiB;
export const MIN_LIMIT = BASE_RSS + MIN_HEADROOM;
/** The last guard: intake pauses above this share of the limit, resumes below the lower one. */
export const PAUSE_AT = 0.9;
export const RESUME_AT = 0.8;
/** Above this share a concurrent major collection is started early, intake untouched. */
export const COLLECT_AT = 0.7;

/**
 * One buffer that grows with load. `weight`: its share of the headroom above BASE_RSS. `cost`:
 * bytes of RSS per unit of the setting, measured or reasoned (a byte waiting for commit is also
 * an aedes packet and a socket read chunk; a sink batch is its records and their encoded body,
 * for `copies` of it at once). The weights add up to 0.7: the rest is the V8 young generation's
 * and old generation's garbage between collections, which no setting bounds.
 */
interface PartSpec {
  /** Config path of the setting, for messages; null when it has none. */
  field: string | null;
  weight: number;
  cost: number;
  default: number;
  min: number;
  unit: 'bytes' | 'messages';
}

export const PARTS = {
  pendingBytes: {
    field: 'journal.maxPendingBytes',
    weight: 0.15,
    cost: 2,
    default: 16 * MiB,
    min: 256 * KiB,
    unit: 'bytes',
  },
  tailBytes: { field: null, weight: 0.05, cost: 1.5, default: 4 * MiB, min: 256 * KiB, unit: 'bytes' },
  // Shared by every sink; one batch in flight each, its records and its upstream body (cost 3).
  sinkBatchBytes: {
    field: 'sinks[].batch.maxBytes',
    weight: 0.2,
    cost: 3,
    default: 1 * MiB,
    min: 64 * KiB,
    unit: 'bytes',
  },
  // One journal read per gRPC Subscribe stream, for up to 4 streams at once (cost 2 x 4).
  subscriberReadBytes: { field: null, weight: 0.05, cost: 8, default: 1 * MiB, min: 64 * KiB, unit: 'bytes' },
  // Per MQTT subscriber, what waits in its socket, for up to 4 such subscribers.
  mqttQueuedBytes: {
    field: 'mqtt.maxQueuedBytes',
    weight: 0.05,
    cost: 4,
    default: 1 * MiB,
    min: 64 * KiB,
    unit: 'bytes',
  },
  // Messages kept for clean: false sessions that are away: topic + payload, and aedes' packet
  // object around each (1.2-2.2 KB a message, LIBRARIES.md).
  mqttQueuedBytesTotal: {
    field: 'mqtt.maxQueuedBytesTotal',
    weight: 0.1,
    cost: 2,
    default: 64 * MiB,
    min: 256 * KiB,
    unit: 'bytes',
  },
  mqttQueuedMessagesTotal: {
    field: 'mqtt.maxQueuedMessagesTotal',
    weight: 0.1,
    cost: 2 * KiB,
    default: 100_000,
    min: 100,
    unit: 'messages',
  },
} as const satisfies Record<string, PartSpec>;

export type PartName = keyof typeof PARTS;

export type LimitSource = 'config' | 'cgroup' | 'none';

/** What the operator set: undefined where the budget decides. */
export interface ExplicitSettings {
  pendingBytes?: number;
  mqttQueuedBytes?: number;
  mqttQueuedBytesTotal?: number;
  mqttQueuedMessagesTotal?: number;
  /** One entry per sink, in config order. */
  sinkBatchBytes: (number | undefined)[];
}

export interface MemoryBudget {
  /** Bytes, or null without a limit (then every part is its fixed default). */
  limit: number | null;
  source: LimitSource;
  pendingBytes: number;
  tailBytes: number;
  /** Per sink, in config order. */
  sinkBatchBytes: number[];
  subscriberReadBytes: number;
  mqttQueuedBytes: number;
  mqttQueuedBytesTotal: number;
  mqttQueuedMessagesTotal: number;
  /** RSS above which intake pauses, and below which it resumes; null without a limit. */
  pauseAtBytes: number | null;
  resumeAtBytes: number | null;
  collectAtBytes: number | null;
}

export interface BudgetProblem {
  /** Config path: `journal.maxPendingBytes`, `sinks[2].batch.maxBytes`, `memory.limit`. */
  path: (string | number)[];
  message: string;
}

/**
 * Sizes every part from `limit`. An explicit setting wins over its derived size and is paid
 * first, at its cost; the parts left to the budget share what remains by weight, each capped at
 * its fixed default (a larger limit never makes a buffer larger than without one) and floored at
 * its minimum. Explicit settings that together take more than the headroom above BASE_RSS are
 * problems, each named; so is a limit below MIN_LIMIT.
 */
export function deriveBudget(
  limit: number | null,
  source: LimitSource,
  explicit: ExplicitSettings,
): { budget: MemoryBudget; problems: BudgetProblem[] } {
  const problems: BudgetProblem[] = [];
  const sinks = explicit.sinkBatchBytes.length;
  if (limit === null) {
    return {
      problems,
      budget: {
        limit: null,
        source: 'none',
        pendingBytes: explicit.pendingBytes ?? PARTS.pendingBytes.default,
        tailBytes: PARTS.tailBytes.default,
        sinkBatchBytes: explicit.sinkBatchBytes.map((b) => b ?? PARTS.sinkBatchBytes.default),
        subscriberReadBytes: PARTS.subscriberReadBytes.default,
        mqttQueuedBytes: explicit.mqttQueuedBytes ?? PARTS.mqttQueuedBytes.default,
        mqttQueuedBytesTotal: explicit.mqttQueuedBytesTotal ?? PARTS.mqttQueuedBytesTotal.default,
        mqttQueuedMessagesTotal: explicit.mqttQueuedMessagesTotal ?? PARTS.mqttQueuedMessagesTotal.default,
        pauseAtBytes: null,
        resumeAtBytes: null,
        collectAtBytes: null,
      },
    };
  }
  if (limit < MIN_LIMIT) {
    problems.push({
      path: ['memory', 'limit'],
      message: `${mib(limit)} is below the ${mib(MIN_LIMIT)} the daemon needs (about ${mib(BASE_RSS)} before any load, plus ${mib(MIN_HEADROOM)} for its buffers)`,
    });
  }
  const headroom = Math.max(MIN_HEADROOM, limit - BASE_RSS);

  // What the explicit settings take, at their cost; the sink part counts per explicit sink.
  const paid: { path: (string | number)[]; rss: number }[] = [];
  const pay = (path: (string | number)[], value: number | undefined, cost: number) => {
    if (value !== undefined) paid.push({ path, rss: value * cost });
  };
  pay(['journal', 'maxPendingBytes'], explicit.pendingBytes, PARTS.pendingBytes.cost);
  pay(['mqtt', 'maxQueuedBytes'], explicit.mqttQueuedBytes, PARTS.mqttQueuedBytes.cost);
  pay(['mqtt', 'maxQueuedBytesTotal'], explicit.mqttQueuedBytesTotal, PARTS.mqttQueuedBytesTotal.cost);
  pay(
    ['mqtt', 'maxQueuedMessagesTotal'],
    explicit.mqttQueuedMessagesTotal,
    PARTS.mqttQueuedMessagesTotal.cost,
  );
  for (const [i, b] of explicit.sinkBatchBytes.entries()) {
    pay(['sinks', i, 'batch', 'maxBytes'], b, PARTS.sinkBatchBytes.cost);
  }
  const spent = paid.reduce((s, p) => s + p.rss, 0);
  if (spent > headroom) {
    for (const p of paid) {
      problems.push({
        path: p.path,
        message: `does not fit memory.limit ${mib(limit)} (${source}): the settings named here need about ${mib(spent)} of memory, and ${mib(headroom)} is left above the daemon's base of ${mib(BASE_RSS)}; lower them, or raise the limit`,
      });
    }
  }
  const left = Math.max(0, headroom - spent);
  const size = (part: PartSpec, share = 1): number =>
    Math.max(part.min, Math.min(part.default, Math.floor((part.weight * share * left) / part.cost)));
  const perSink = sinks === 0 ? 1 : 1 / sinks;
  return {
    problems,
    budget: {
      limit,
      source,
      pendingBytes: explicit.pendingBytes ?? size(PARTS.pendingBytes),
      tailBytes: size(PARTS.tailBytes),
      sinkBatchBytes: explicit.sinkBatchBytes.map((b) => b ?? size(PARTS.sinkBatchBytes, perSink)),
      subscriberReadBytes: size(PARTS.subscriberReadBytes),
      mqttQueuedBytes: explicit.mqttQueuedBytes ?? size(PARTS.mqttQueuedBytes),
      mqttQueuedBytesTotal: explicit.mqttQueuedBytesTotal ?? size(PARTS.mqttQueuedBytesTotal),
      mqttQueuedMessagesTotal: explicit.mqttQueuedMessagesTotal ?? size(PARTS.mqttQueuedMessagesTotal),
      pauseAtBytes: Math.floor(limit * PAUSE_AT),
      resumeAtBytes: Math.floor(limit * RESUME_AT),
      collectAtBytes: Math.floor(limit * COLLECT_AT),
    },
  };
}

export function mib(bytes: number): string {
  return `${Math.round((bytes / MiB) * 10) / 10} MiB`;
}
