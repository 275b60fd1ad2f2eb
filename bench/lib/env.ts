// Benchmark knobs from the environment, validated once.

function int(name: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new Error(`${name} must be an integer in ${min}..${max} (got ${raw})`);
  }
  return n;
}

export interface BenchEnv {
  /** Messages per publisher (BENCH_MESSAGES). */
  messages: number;
  /** Publisher connections for multi-publisher scenarios (BENCH_PUBLISHERS). */
  publishers: number;
  /** Unacked QoS 1 publishes per connection (BENCH_INFLIGHT). */
  inflight: number;
  /** Payload size, >= 8 (BENCH_PAYLOAD_BYTES). */
  payloadBytes: number;
  /** Messages sent through each target before measuring, for JIT and connection warm-up (BENCH_WARMUP). */
  warmup: number;
  /** Baselines to run beside edgeferry: subset of aedes,mosquitto, or none (BENCH_BASELINES). */
  baselines: string[];
  /** Interleaved rounds per target; the best round is reported (BENCH_ROUNDS). */
  rounds: number;
  /** Deadline of one measured run (BENCH_TIMEOUT_MS). */
  timeoutMs: number;
  /** When set, the daemon runs with --cpu-prof into this directory (BENCH_CPU_PROF). */
  cpuProfDir: string | null;
  /**
   * JSON object deep-merged over every generated edgeferry config (BENCH_EDGEFERRY_CONFIG), e.g.
   * '{"journal":{"groupCommit":{"maxDelayMs":0}}}'.
   */
  edgeferryOverrides: Record<string, unknown> | null;
  /** `mqtt-bridge`: the MQTT sink's window, publishes awaiting PUBACK (BENCH_MQTT_WINDOW). */
  mqttWindow: number;
  /** Total msgs/s of the paced scenarios, spread over the publishers (BENCH_RATE). */
  rate: number;
  /** Length of the paced run in `mqtt-qos1-paced` (BENCH_PACED_SECONDS). */
  pacedSeconds: number;
  /** Total msgs/s in `mqtt-qos0`; 0 = unpaced, TCP back-pressure only (BENCH_QOS0_RATE). */
  qos0Rate: number;
  /** `outage-drain`: how long the receiver is down while publishers go on (BENCH_OUTAGE_SECONDS). */
  outageSeconds: number;
  /** `outage-drain`: live traffic after the receiver is back (BENCH_DRAIN_SECONDS). */
  drainSeconds: number;
  /** How the receiver is down: 'refuse' (not listening) or '503' (BENCH_OUTAGE_MODE). */
  outageMode: 'refuse' | '503';
  /** `backlog-1m`: records buffered while the receiver is down (BENCH_BACKLOG). */
  backlog: number;
  /** `backlog-1m`: also run the same traffic with the receiver up, no backlog (BENCH_BACKLOG_CONTROL=1). */
  backlogControl: boolean;
  /** backlog-1m: backlog and control runs, interleaved; the median pair is the figure (BENCH_BACKLOG_ROUNDS). */
  backlogRounds: number;
  /** `coap`: UDP clients (BENCH_COAP_CLIENTS). */
  coapClients: number;
  /** `coap`: requests outstanding per client (BENCH_COAP_INFLIGHT). */
  coapInflight: number;
  /** `coap`: messages per client (BENCH_COAP_MESSAGES). */
  coapMessages: number;
  /** `coap`: which message types, in order: con, non or both (BENCH_COAP_TYPES). */
  coapTypes: ('con' | 'non')[];
  /** `coap`: RFC 7252 ACK_TIMEOUT, ms (BENCH_COAP_ACK_TIMEOUT_MS). */
  coapAckTimeoutMs: number;
  /** `coap`: RFC 7252 MAX_RETRANSMIT (BENCH_COAP_MAX_RETRANSMIT). */
  coapMaxRetransmit: number;
  /** `coap`: a NON without a response frees its window slot after this long, ms (BENCH_COAP_NON_WAIT_MS). */
  coapNonWaitMs: number;
  /** `modbus`: simulated PLCs (BENCH_MODBUS_DEVICES). */
  modbusDevices: number;
  /** `modbus`: uint16 holding registers per PLC, addresses 0..n-1, one request per poll up to 125 (BENCH_MODBUS_REGISTERS). */
  modbusRegisters: number;
  /** `modbus`: poll interval of every PLC, ms (BENCH_MODBUS_INTERVAL_MS). */
  modbusIntervalMs: number;
  /** `modbus`: the poller's request timeout, ms (BENCH_MODBUS_TIMEOUT_MS). */
  modbusTimeoutMs: number;
}

function jsonObject(name: string): Record<string, unknown> | null {
  const raw = process.env[name];
  if (!raw) return null;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    throw new Error(`${name} is not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new Error(`${name} must be a JSON object`);
  return v as Record<string, unknown>;
}

function outageMode(): 'refuse' | '503' {
  const raw = process.env.BENCH_OUTAGE_MODE || 'refuse';
  if (raw !== 'refuse' && raw !== '503')
    throw new Error(`BENCH_OUTAGE_MODE must be refuse or 503 (got ${raw})`);
  return raw;
}

function coapTypes(): ('con' | 'non')[] {
  const raw = (process.env.BENCH_COAP_TYPES || 'con,non').split(',').map((s) => s.trim().toLowerCase());
  const out: ('con' | 'non')[] = [];
  for (const t of raw) {
    if (t !== 'con' && t !== 'non') throw new Error(`BENCH_COAP_TYPES: expected con and/or non (got ${t})`);
    if (!out.includes(t)) out.push(t);
  }
  return out;
}

export function readEnv(): BenchEnv {
  const baselines = (process.env.BENCH_BASELINES ?? 'aedes,mosquitto')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s && s !== 'none');
  for (const b of baselines) {
    if (b !== 'aedes' && b !== 'mosquitto') throw new Error(`BENCH_BASELINES: unknown baseline ${b}`);
  }
  return {
    messages: int('BENCH_MESSAGES', 50_000, 1),
    publishers: int('BENCH_PUBLISHERS', 4, 1),
    inflight: int('BENCH_INFLIGHT', 100, 1, 65_535),
    payloadBytes: int('BENCH_PAYLOAD_BYTES', 200, 8, 200_000),
    warmup: int('BENCH_WARMUP', 5000, 0),
    baselines,
    rounds: int('BENCH_ROUNDS', 2, 1),
    timeoutMs: int('BENCH_TIMEOUT_MS', 120_000, 1000),
    cpuProfDir: process.env.BENCH_CPU_PROF || null,
    edgeferryOverrides: jsonObject('BENCH_EDGEFERRY_CONFIG'),
    mqttWindow: int('BENCH_MQTT_WINDOW', 100, 1, 65535),
    rate: int('BENCH_RATE', 20_000, 1),
    pacedSeconds: int('BENCH_PACED_SECONDS', 6, 1, 3600),
    qos0Rate: int('BENCH_QOS0_RATE', 0, 0),
    outageSeconds: int('BENCH_OUTAGE_SECONDS', 5, 1, 3600),
    drainSeconds: int('BENCH_DRAIN_SECONDS', 10, 1, 3600),
    outageMode: outageMode(),
    backlog: int('BENCH_BACKLOG', 1_000_000, 1000),
    backlogControl: int('BENCH_BACKLOG_CONTROL', 1, 0, 1) === 1,
    backlogRounds: int('BENCH_BACKLOG_ROUNDS', 3, 1, 9),
    coapClients: int('BENCH_COAP_CLIENTS', 4, 1, 1024),
    coapInflight: int('BENCH_COAP_INFLIGHT', 32, 1, 65_535),
    coapMessages: int('BENCH_COAP_MESSAGES', 25_000, 1),
    coapTypes: coapTypes(),
    coapAckTimeoutMs: int('BENCH_COAP_ACK_TIMEOUT_MS', 2000, 1, 60_000),
    coapMaxRetransmit: int('BENCH_COAP_MAX_RETRANSMIT', 4, 0, 20),
    coapNonWaitMs: int('BENCH_COAP_NON_WAIT_MS', 100, 1, 60_000),
    modbusDevices: int('BENCH_MODBUS_DEVICES', 100, 1, 1000),
    modbusRegisters: int('BENCH_MODBUS_REGISTERS', 100, 1, 1000),
    modbusIntervalMs: int('BENCH_MODBUS_INTERVAL_MS', 100, 10, 3_600_000),
    modbusTimeoutMs: int('BENCH_MODBUS_TIMEOUT_MS', 1000, 1, 60_000),
  };
}
