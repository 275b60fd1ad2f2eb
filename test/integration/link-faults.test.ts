// Real link faults between the daemon and its upstream. network-faults.test.ts cuts and stalls
// connections in a TCP proxy on loopback: the kernel still answers for both ends, so it cannot
// make a link whose packets vanish. Here the upstream runs in a network namespace of the test's
// own behind a veth pair, and the link itself fails under steady QoS 1 traffic: carrier lost,
// every packet dropped (half-open: no FIN, no RST, writes still succeed locally), every segment
// refused with a RST, and a 4G-like upload capped by a token bucket. Nothing acknowledged may be
// lost, first arrivals keep journal order, and each dead link must be noticed (the sink leaves
// `up` in /v1/status) within the sink's deadline.

import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { afterEach, describe, expect } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { createNetns, itWithNetns, type LinkFault, type Netns, netnsUnavailable } from '../helpers/netns.ts';

const RECEIVER = new URL('../helpers/netns-receiver.ts', import.meta.url).pathname;
/** The sink's deadline for one call: the bound a dead link must be noticed within. */
const TIMEOUT_MS = 2000;
/**
 * Added to the bound: a batch may linger 5 ms before it goes, /v1/status is polled every 50 ms,
 * and two shared cores running other tests delay timers (2.33 s was the slowest of 24 cuts in
 * a 240 s run); a link missed by the first call shows up one more deadline late, past the bound.
 */
const SLACK_MS = 1500;
const RATE = 100;
const PAD = 'x'.repeat(300);

const unavailable = await netnsUnavailable();

let daemon: DaemonHandle | null = null;
let ns: Netns | null = null;

afterEach(async () => {
  // The daemon first: nothing may still be sending to the namespace's address once it is gone.
  await daemon?.kill();
  daemon = null;
  await ns?.remove();
  ns = null;
});

interface Arrivals {
  seqs: number[];
  payloads: number[];
  duplicatesReported: number;
}

async function startReceiver(n: Netns, kind: 'http' | 'grpc'): Promise<{ port: number; rx: Arrivals }> {
  const p = n.spawn(process.execPath, [RECEIVER, kind, n.nsIp]);
  const rx: Arrivals = { seqs: [], payloads: [], duplicatesReported: 0 };
  let port = 0;
  let buf = '';
  let stderr = '';
  p.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  p.stdout!.setEncoding('utf8');
  p.stdout!.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const msg = JSON.parse(buf.slice(0, nl)) as { port?: number; s?: number[]; p?: number[]; dup?: number };
      buf = buf.slice(nl + 1);
      if (msg.port !== undefined) port = msg.port;
      if (msg.dup !== undefined) rx.duplicatesReported = msg.dup;
      if (msg.s && msg.p) {
        for (const s of msg.s) rx.seqs.push(s);
        for (const v of msg.p) rx.payloads.push(v);
      }
    }
  });
  await eventually(() => port > 0 || p.exitCode !== null, 'the receiver in the namespace listening', 15_000);
  if (port === 0) throw new Error(`receiver exited (${p.exitCode}): ${stderr}`);
  return { port, rx };
}

/**
 * First arrivals keep journal order (one publisher's order); a redelivery repeats what already
 * arrived and never brings a record ahead of one still missing. Returns the redeliveries.
 */
function expectFirstArrivalsInOrder(rx: Arrivals): number {
  const firstSeqs: number[] = [];
  const firstPayloads: number[] = [];
  const seen = new Set<number>();
  rx.seqs.forEach((s, k) => {
    if (seen.has(s)) return;
    seen.add(s);
    firstSeqs.push(s);
    firstPayloads.push(rx.payloads[k]);
  });
  expect(firstSeqs).toEqual([...firstSeqs].sort((a, b) => a - b));
  expect(firstPayloads).toEqual([...firstPayloads].sort((a, b) => a - b));
  return rx.seqs.length - seen.size + rx.duplicatesReported;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

interface Transition {
  at: number;
  state: string;
}

interface FaultWindow {
  name: string;
  dead: boolean;
  from: number;
  to: number;
  deliveredBefore: number;
  deliveredAfter: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

async function scenario(kind: 'http' | 'grpc', runMs: number, holdMs: number): Promise<void> {
  ns = await createNetns();
  const n = ns;
  const { port, rx } = await startReceiver(n, kind);
  const common = {
    name: 'up',
    routes: ['lf/#'],
    timeoutMs: `${TIMEOUT_MS}ms`,
    batch: { maxRecords: 200, lingerMs: 5 },
    retry: { minMs: 100, maxMs: 1000 },
  };
  const sink =
    kind === 'http'
      ? { ...common, type: 'http', url: `http://${n.nsIp}:${port}/ingest`, payloadEncoding: 'utf8' }
      : { ...common, type: 'grpc', target: `${n.nsIp}:${port}` };
  const dir = tempDir();
  daemon = await startDaemon(dir, writeConfig(dir, baseConfig(dir, { sinks: [sink] })));
  const d = daemon;
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, { clientId: `lf-${kind}` });

  // The sink's state as /v1/status shows it, every 50 ms, with the moment each change was seen.
  const transitions: Transition[] = [];
  let delivered = 0;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const s = (await d.status().catch(() => null))?.sinks[0] as
        | { state: string; delivered: number }
        | undefined;
      if (s === undefined) break;
      delivered = s.delivered;
      if (transitions.at(-1)?.state !== s.state) transitions.push({ at: Date.now(), state: s.state });
      await sleep(50);
    }
  })();
  const stateNow = () => transitions.at(-1)?.state;

  const acked: number[] = [];
  const rss: number[] = [rssMiB(d.proc.pid!)];
  const t0 = Date.now();
  const total = (RATE * runMs) / 1000;
  const publisher = (async () => {
    const pending: Promise<unknown>[] = [];
    for (let i = 1; i <= total; i++) {
      await sleep(t0 + (i * 1000) / RATE - Date.now());
      pending.push(client.publishAsync('lf/t', `m${i} ${PAD}`, { qos: 1 }).then(() => acked.push(i)));
      if (i % (RATE * 10) === 0) rss.push(rssMiB(d.proc.pid!));
    }
    await Promise.all(pending);
  })();

  // Each fault starts once the sink is up and has caught up with the last one, so every cut
  // hits a healthy link (the schedule fits in the traffic with room for slow recoveries).
  const faults: { fault: LinkFault; dead: boolean; holdMs: number }[] = [
    { fault: n.linkDown(), dead: true, holdMs },
    { fault: n.drop(), dead: true, holdMs },
    { fault: n.reject(), dead: true, holdMs: (holdMs * 2) / 3 },
    { fault: n.slowLink('1mbit'), dead: false, holdMs: holdMs * 1.5 },
  ];
  const windows: FaultWindow[] = [];
  await sleep(3000);
  for (const { fault, dead, holdMs } of faults) {
    await eventually(
      () => stateNow() === 'up' && delivered >= acked.length - 2 * RATE,
      `sink up before ${fault.name}`,
    );
    // A cut after the traffic stopped would meet no call to notice it.
    if (Date.now() + holdMs > t0 + runMs)
      throw new Error(`no traffic left for ${fault.name}: slow recoveries`);
    const deliveredBefore = delivered;
    const from = Date.now();
    await fault.apply();
    try {
      await sleep(holdMs);
    } finally {
      await fault.clear();
    }
    windows.push({
      name: fault.name,
      dead,
      from,
      to: Date.now(),
      deliveredBefore,
      deliveredAfter: delivered,
    });
  }
  await publisher;
  rss.push(rssMiB(d.proc.pid!));
  await client.endAsync();

  const want = new Set(acked);
  await eventually(
    () => {
      const got = new Set(rx.payloads);
      for (const i of want) if (!got.has(i)) return false;
      return true;
    },
    `all ${acked.length} acknowledged messages at the receiver`,
    60_000,
  );
  await eventually(() => stateNow() === 'up', 'sink up at the end');
  polling = false;
  await poller;

  // Nothing acknowledged is lost.
  expect(acked).toHaveLength(total);
  const got = new Set(rx.payloads);
  expect([...want].filter((i) => !got.has(i))).toEqual([]);

  const duplicates = expectFirstArrivalsInOrder(rx);

  // Each dead link noticed within the deadline: the sink left `up` no later than TIMEOUT_MS
  // (plus slack) after the cut; the slow link kept delivering.
  const report = windows.map((w) => {
    // A dead link may be noticed after it came back (then too late, which the bound reports).
    const until = w.dead ? Number.POSITIVE_INFINITY : w.to;
    const left = transitions.find((t) => t.at >= w.from && t.at <= until && t.state !== 'up');
    return {
      fault: w.name,
      noticedAfterMs: left ? left.at - w.from : null,
      stateSeen: left?.state ?? 'up',
      deliveredDuring: w.deliveredAfter - w.deliveredBefore,
    };
  });
  console.log(
    `link faults (${kind}): ${JSON.stringify(report)}; duplicates ${duplicates}; daemon RSS MiB ${rss.join(' → ')}`,
  );
  for (const [k, w] of windows.entries()) {
    if (!w.dead) continue;
    expect(report[k].noticedAfterMs, `${w.name} noticed`).not.toBeNull();
    expect(report[k].noticedAfterMs!, `${w.name} noticed within the deadline`).toBeLessThanOrEqual(
      TIMEOUT_MS + SLACK_MS,
    );
  }
  // 100 messages of ~450 B a second fit in 1 Mbit/s: slow, not dead, and not taken for dead.
  const slow = report.find((r) => r.fault.startsWith('tc tbf'))!;
  expect(slow.deliveredDuring, 'the slow link still delivers').toBeGreaterThan(0);
  expect(slow.stateSeen, 'the slow link is not taken for a dead one').toBe('up');
}

/**
 * A backlog over a link that cannot carry one full batch within the deadline: 500 records of
 * about 450 bytes are 1.8 Mbit, 3.5 s at 512 kbit/s against a 2 s deadline. Resending the same
 * batch would time out forever; the dispatcher must send less after a deadline.
 */
async function slowDrain(): Promise<void> {
  ns = await createNetns();
  const n = ns;
  const { port, rx } = await startReceiver(n, 'http');
  const sink = {
    name: 'up',
    type: 'http',
    url: `http://${n.nsIp}:${port}/ingest`,
    payloadEncoding: 'utf8',
    timeoutMs: `${TIMEOUT_MS}ms`,
    batch: { maxRecords: 500, lingerMs: 5 },
    retry: { minMs: 100, maxMs: 1000 },
  };
  const slow = n.slowLink('512kbit');
  await slow.apply();
  const dir = tempDir();
  daemon = await startDaemon(dir, writeConfig(dir, baseConfig(dir, { sinks: [sink] })));
  const d = daemon;
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, { clientId: 'lf-slow' });
  const N = 1000;
  await Promise.all(
    Array.from({ length: N }, (_, k) => client.publishAsync('lf/t', `m${k + 1} ${PAD}`, { qos: 1 })),
  );
  await client.endAsync();
  await eventually(() => new Set(rx.payloads).size >= N, `${N} records over the slow link`, 90_000, 200);
  const st = (await d.status()).sinks[0];
  const duplicates = expectFirstArrivalsInOrder(rx);
  // A call abandoned at its deadline ends with a TCP reset, so the kernel drops its unsent
  // bytes instead of delivering the batch after all (with a graceful close 875 of the 1000
  // records arrived twice; with the reset 0).
  console.log(`slow drain: ${N} records, ${st.retries} retries, ${duplicates} redelivered`);
  expect(duplicates, 'records of abandoned calls delivered anyway').toBeLessThan(N / 2);
  // It did hit the deadline (the case under test), and recovered from it.
  expect(st.retries).toBeGreaterThan(0);
  expect(new Set(rx.payloads)).toEqual(new Set(Array.from({ length: N }, (_, k) => k + 1)));
}

describe('real link faults: the upstream in its own network namespace', () => {
  itWithNetns(
    unavailable,
    'http sink: a link too slow for a full batch within the deadline still drains a backlog',
    slowDrain,
    150_000,
  );

  itWithNetns(
    unavailable,
    'http sink: link down, DROP, REJECT and a 1 Mbit/s link during 60 s of QoS 1 traffic lose nothing and keep order',
    () => scenario('http', 60_000, 8000),
    180_000,
  );
  itWithNetns(
    unavailable,
    'grpc sink: link down, DROP, REJECT and a 1 Mbit/s link during 30 s of QoS 1 traffic lose nothing and keep order',
    () => scenario('grpc', 30_000, 4000),
    150_000,
  );
});
