// The configuration schema: the single source of the YAML shape, its defaults and the parsed
// `Config` type. Objects are strict so a misspelt key fails loudly instead of silently falling
// back to its default. Messages are written to be shown as `<dotted.path>: <message>`.

import os from 'node:os';
import * as z from 'zod';
import { validateTopicFilter } from '../core/topic-filter.ts';
import { parseBytes, parseDuration } from './units.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const ON_FULL_POLICIES = ['drop-oldest', 'reject'] as const;
export const PAYLOAD_ENCODINGS = ['base64', 'utf8'] as const;

// Node clamps a setTimeout delay above 2^31-1 ms to 1 ms, so a "30d" timeout would fire at once.
const MAX_TIMER_MS = 2 ** 31 - 1;

const SINK_NAME = /^[A-Za-z0-9_.-]+$/;
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

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const nullToUndefined = (v: unknown): unknown => (v === null ? undefined : v);

/** A section whose keys all have defaults: absent, empty (`journal:` is null in YAML) or partial. */
function section<S extends z.ZodRawShape>(shape: S) {
  const obj = z.strictObject(shape);
  return z.preprocess(nullToUndefined, obj.prefault({} as z.input<typeof obj>));
}

function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`;
  return z.number().refine((n) => Number.isSafeInteger(n) && n >= min && n <= max, {
    error: (iss) => `must be an integer ${range} (got ${describeValue(iss.input)})`,
  });
}

const port = () => integer(0, 65535);

const nonEmpty = () => z.string().min(1, { error: 'must not be empty' });

/** A byte size or duration: a number in the base unit or a string with a unit, range-checked after conversion. */
function quantity(kind: 'bytes' | 'duration', min: number, max = Number.MAX_SAFE_INTEGER) {
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

const bytes = (min = 1) => quantity('bytes', min);
/** A delay handed to a timer, so capped at what setTimeout honours. */
const timerMs = (min = 0) => quantity('duration', min, MAX_TIMER_MS);

const httpUrl = z.string().refine(
  (s) => {
    if (!URL.canParse(s)) return false;
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  },
  { error: (iss) => `must be an http(s) URL (got ${describeValue(iss.input)})` },
);

const topicFilter = z.string().superRefine((filter, ctx) => {
  const problem = validateTopicFilter(filter);
  if (problem) ctx.addIssue({ code: 'custom', message: problem, input: filter });
});

/** A body's length and framing are the sink's: a configured one would contradict it. */
const FRAMING_HEADERS = new Set(['content-length', 'transfer-encoding']);

const headers = z.record(z.string(), z.string()).superRefine((h, ctx) => {
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

const retry = section({
  minMs: timerMs().prefault(100),
  maxMs: timerMs(1).prefault(30_000),
}).refine((r) => r.minMs <= r.maxMs, {
  path: ['minMs'],
  error: (iss) => {
    const r = iss.input as { minMs: number; maxMs: number };
    return `must be <= maxMs (got ${r.minMs} > ${r.maxMs})`;
  },
});

const httpSink = z.strictObject({
  name: z.string().regex(SINK_NAME, {
    error: (iss) => `must match [A-Za-z0-9_.-]+ (got ${describeValue(iss.input)})`,
  }),
  type: z.literal('http'),
  url: httpUrl,
  routes: z
    .array(topicFilter)
    .min(1, { error: 'must list at least one topic filter ("#" for everything)' })
    .default(() => ['#']),
  headers: headers.optional(),
  payloadEncoding: z.enum(PAYLOAD_ENCODINGS).default('base64'),
  timeoutMs: timerMs(1).prefault('10s'),
  batch: section({
    maxRecords: integer(1).default(500),
    maxBytes: bytes().prefault('1MiB'),
    lingerMs: timerMs().prefault(5),
  }),
  retry,
});

const filePath = () => nonEmpty();

const coapUrl = z.string().refine(
  (s) => {
    if (!URL.canParse(s)) return false;
    const u = new URL(s);
    return (u.protocol === 'coap:' || u.protocol === 'coaps:') && u.hostname !== '';
  },
  { error: (iss) => `must be a coap:// or coaps:// URL of the device (got ${describeValue(iss.input)})` },
);

/** A device resource the gateway follows: observed (RFC 7641), or polled where observe is off. */
const coapResource = z
  .strictObject({
    path: z.string().regex(/^\/[^?#\s]*$/, {
      error: (iss) => `must be an absolute path such as /temp (got ${describeValue(iss.input)})`,
    }),
    topic: nonEmpty(),
    observe: z.boolean().default(true),
    // Poll with GET at this interval; required when observe is false.
    pollIntervalMs: timerMs(100).optional(),
  })
  .refine((r) => r.observe || r.pollIntervalMs !== undefined, {
    path: ['pollIntervalMs'],
    error: 'required when observe is false',
  });

/** A southbound CoAP device: observed resources, and the target of Gateway.Command. */
const coapDevice = z
  .strictObject({
    name: z.string().regex(SINK_NAME, {
      error: (iss) => `must match [A-Za-z0-9_.-]+ (got ${describeValue(iss.input)})`,
    }),
    url: coapUrl,
    // DTLS pre-shared key, for coaps:// devices.
    psk: z.strictObject({ identity: nonEmpty(), key: nonEmpty() }).optional(),
    timeoutMs: timerMs(1).prefault('5s'),
    retry: section({
      minMs: timerMs().prefault('1s'),
      maxMs: timerMs(1).prefault('60s'),
    }),
    resources: z.array(coapResource).default(() => []),
  })
  .refine((d) => !d.url.startsWith('coaps:') || d.psk !== undefined, {
    path: ['psk'],
    error: 'required for a coaps:// device (DTLS with a pre-shared key)',
  });

const grpcSink = z.strictObject({
  name: z.string().regex(SINK_NAME, {
    error: (iss) => `must match [A-Za-z0-9_.-]+ (got ${describeValue(iss.input)})`,
  }),
  type: z.literal('grpc'),
  target: z.string().regex(/^[^\s/]+:\d{1,5}$/, {
    error: (iss) => `must be host:port of the upstream Ingest service (got ${describeValue(iss.input)})`,
  }),
  routes: z
    .array(topicFilter)
    .min(1, { error: 'must list at least one topic filter ("#" for everything)' })
    .default(() => ['#']),
  metadata: headers.optional(),
  timeoutMs: timerMs(1).prefault('10s'),
  // gRPC servers refuse messages over 4 MiB unless raised; a larger batch is split to fit.
  maxMessageBytes: quantity('bytes', 1024, 1024 ** 3).prefault('4MiB'),
  tls: z
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
    .optional(),
  batch: section({
    maxRecords: integer(1).default(500),
    maxBytes: bytes().prefault('1MiB'),
    lingerMs: timerMs().prefault(5),
  }),
  retry,
});

// A union on `type` so further sink kinds ('mqtt-bridge') slot in as new options.
const sink = z.discriminatedUnion('type', [httpSink, grpcSink], {
  error: (iss) => {
    if (iss.code !== 'invalid_union' || !('options' in iss)) return undefined;
    const options = (iss.options as unknown[]).join('|');
    const type = isRecord(iss.input) ? iss.input.type : undefined;
    return type === undefined
      ? `required (one of ${options})`
      : `expected one of ${options} (got ${describeValue(type)})`;
  },
});

const sinks = z.preprocess(
  nullToUndefined,
  z
    .array(sink)
    .superRefine(
      (list, ctx) => {
        // Names key delivery cursors and metrics, so two sinks must never share one.
        const seen = new Map<string, number>();
        (list as unknown[]).forEach((s, i) => {
          // Elements may be unparsed here (see `when`), hence the guard.
          if (!isRecord(s) || typeof s.name !== 'string') return;
          const first = seen.get(s.name);
          if (first === undefined) seen.set(s.name, i);
          else {
            ctx.addIssue({
              code: 'custom',
              path: [i, 'name'],
              message: `duplicate sink name ${describeValue(s.name)} (also used by sinks[${first}])`,
              input: s.name,
            });
          }
        });
      },
      // Run even when some sink is invalid, so a duplicate is reported with the other problems.
      { when: (payload) => Array.isArray(payload.value) },
    )
    .default(() => []),
);

export const configSchema = z.preprocess(
  nullToUndefined,
  z
    .strictObject({
      node: section({ id: nonEmpty().default(() => os.hostname()) }),
      journal: section({
        path: nonEmpty().default('./data'),
        maxBytes: bytes().prefault('1GiB'),
        onFull: z.enum(ON_FULL_POLICIES).default('drop-oldest'),
        // Not a timer (records are aged against their timestamps), so no setTimeout cap.
        ttl: z.preprocess(nullToUndefined, quantity('duration', 1).optional()),
        fsync: z.boolean().default(false),
        groupCommit: section({
          maxRecords: integer(1).default(4096),
          maxDelayMs: timerMs().prefault(0),
        }),
        maxPendingBytes: bytes().prefault('16MiB'),
        lockWaitMs: timerMs().prefault('30s'),
        // Dead letters' own disk budget, apart from maxBytes; default a tenth of maxBytes (>= 1 MiB).
        deadLetterMaxBytes: bytes().optional(),
      }),
      // CoAP (RFC 7252): the server devices POST/PUT telemetry to, and the southbound devices the
      // gateway observes and sends commands to.
      coap: section({
        enabled: z.boolean().default(true),
        host: nonEmpty().default('0.0.0.0'),
        port: port().default(5683),
        // POST/PUT /<prefix>/<topic path> becomes a record on <topic path>.
        prefix: z
          .string()
          .regex(/^[A-Za-z0-9_.~-]+$/, {
            error: (iss) => `must be one path segment such as t (got ${describeValue(iss.input)})`,
          })
          .default('t'),
        // Larger payloads get 4.13 Request Entity Too Large (block-wise ones included).
        maxPayloadBytes: bytes().prefault('64KiB'),
        devices: z
          .array(coapDevice)
          .superRefine((list, ctx) => {
            const seen = new Map<string, number>();
            list.forEach((d, i) => {
              const first = seen.get(d.name);
              if (first === undefined) seen.set(d.name, i);
              else
                ctx.addIssue({
                  code: 'custom',
                  path: [i, 'name'],
                  message: `duplicate device name ${describeValue(d.name)} (also used by devices[${first}])`,
                  input: d.name,
                });
            });
          })
          .default(() => []),
      }),
      mqtt: section({
        enabled: z.boolean().default(true),
        host: nonEmpty().default('0.0.0.0'),
        port: port().default(1883),
        maxPacketBytes: bytes().prefault('256KiB'),
        // mosquitto's max_queued_messages / max_queued_bytes: per client, what waits to be sent
        // to it (in its socket while connected, in its session while a clean: false client is away).
        maxQueuedMessages: integer(1).default(1000),
        maxQueuedBytes: bytes().prefault('1MiB'),
        // All away sessions together; past it the oldest message held for any of them goes.
        maxQueuedMessagesTotal: integer(1).default(100_000),
        maxQueuedBytesTotal: bytes().prefault('64MiB'),
        maxRetainedMessages: integer(1).default(10_000),
        maxRetainedBytes: bytes().prefault('16MiB'),
        // Incoming QoS 2 messages awaiting PUBREL (EMQX's max_awaiting_rel), per client and in all.
        maxAwaitingRel: integer(1, 65535).default(1000),
        maxAwaitingRelTotal: integer(1).default(100_000),
      }),
      admin: section({
        enabled: z.boolean().default(true),
        host: nonEmpty().default('0.0.0.0'),
        port: port().default(8080),
      }),
      grpc: section({
        enabled: z.boolean().default(true),
        host: nonEmpty().default('0.0.0.0'),
        port: port().default(50051),
        tls: z
          .strictObject({ certFile: filePath(), keyFile: filePath(), caFile: filePath().optional() })
          .optional(),
        // An app that froze or vanished without a FIN holds its stream open for ever unless
        // an unanswered HTTP/2 PING ends it: found within timeMs + timeoutMs.
        keepalive: section({
          timeMs: timerMs(100).prefault('20s'),
          timeoutMs: timerMs(100).prefault('10s'),
        }),
        // A durable consumer nobody streams from or acks for this long is removed: abandoned,
        // its cursor would hold the journal's oldest records for ever.
        consumers: section({ expireAfter: timerMs(1).prefault('1d') }),
      }),
      log: section({ level: z.enum(LOG_LEVELS).default('info') }),
      shutdown: section({ drainTimeoutMs: timerMs().prefault('10s') }),
      sinks,
    })
    .prefault({}),
);

/** The parsed configuration: defaults filled in, byte sizes in bytes, durations in ms. */
export type Config = z.output<typeof configSchema>;
export type SinkConfig = Config['sinks'][number];
export type HttpSinkConfig = Extract<SinkConfig, { type: 'http' }>;
export type GrpcSinkConfig = Extract<SinkConfig, { type: 'grpc' }>;
export type CoapConfig = Config['coap'];
export type CoapDeviceConfig = CoapConfig['devices'][number];
export type LogLevel = Config['log']['level'];
