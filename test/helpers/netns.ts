// A network namespace of the test's own behind a veth pair, for link faults a TCP proxy cannot
// make: carrier loss, packets silently dropped (half-open), RSTs from the far side, a slow link.
// The root side gets .1 and the namespace .2 of a /30 in 10.251.0.0/16. A blackhole route with a
// high metric sits under the /30 for as long as it exists: while the link is down (its connected
// route gone) the daemon's retries hit it instead of following the default route off the machine.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { it } from 'vitest';
import { allOf, iproute2, iptables, isCi, itWithPeer, type PeerTool } from '../interop/peer-tools.ts';

const run = promisify(execFile);

/** Under the connected route's metric (0), so it only ever catches what that route no longer takes. */
const GUARD_METRIC = 4242;

export interface LinkFault {
  /** For messages and reports: `link down`, `iptables DROP`, ... */
  name: string;
  apply(): Promise<void>;
  clear(): Promise<void>;
}

export class Netns {
  private readonly procs = new Set<ChildProcess>();
  private removed = false;

  readonly name: string;
  /** The veth end in the root namespace (where the daemon runs). */
  readonly hostIf: string;
  /** Its peer inside the namespace. */
  readonly nsIf: string;
  readonly hostIp: string;
  readonly nsIp: string;
  readonly subnet: string;

  constructor(
    name: string,
    hostIf: string,
    nsIf: string,
    addrs: { hostIp: string; nsIp: string; subnet: string },
  ) {
    this.name = name;
    this.hostIf = hostIf;
    this.nsIf = nsIf;
    this.hostIp = addrs.hostIp;
    this.nsIp = addrs.nsIp;
    this.subnet = addrs.subnet;
  }

  /** Runs a command inside the namespace and returns its stdout. */
  async exec(file: string, args: string[]): Promise<string> {
    const { stdout } = await run('ip', ['netns', 'exec', this.name, file, ...args]);
    return stdout;
  }

  /** Starts a long-running process inside the namespace; remove() kills it. */
  spawn(file: string, args: string[]): ChildProcess {
    const p = spawn('ip', ['netns', 'exec', this.name, file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.add(p);
    p.once('exit', () => this.procs.delete(p));
    return p;
  }

  /** The root side of the link administratively down: carrier lost, as a pulled cable. */
  linkDown(): LinkFault {
    return {
      name: 'link down',
      apply: () => ip(['link', 'set', 'dev', this.hostIf, 'down']),
      // Up again, the device gets its connected route back from the kernel.
      clear: () => ip(['link', 'set', 'dev', this.hostIf, 'up']),
    };
  }

  /** Every packet in or out of the namespace dropped without a word: a half-open link. */
  drop(): LinkFault {
    const rules = [
      ['INPUT', '-i', this.nsIf, '-j', 'DROP'],
      ['OUTPUT', '-o', this.nsIf, '-j', 'DROP'],
    ];
    return this.iptablesFault('iptables DROP', rules);
  }

  /** Every TCP segment into the namespace answered with a RST (a firewall that refuses). */
  reject(): LinkFault {
    return this.iptablesFault('iptables REJECT tcp-reset', [
      ['INPUT', '-i', this.nsIf, '-p', 'tcp', '-j', 'REJECT', '--reject-with', 'tcp-reset'],
    ]);
  }

  /**
   * A token-bucket cap on the root side's egress (the daemon's upload): `rate` as tc spells it
   * (`1mbit`). Packets queued past `latencyMs` are dropped, as a congested radio link does.
   */
  slowLink(rate: string, latencyMs = 300): LinkFault {
    return {
      name: `tc tbf ${rate}`,
      apply: () =>
        tc([
          'qdisc',
          'add',
          'dev',
          this.hostIf,
          'root',
          'tbf',
          'rate',
          rate,
          'burst',
          '32kbit',
          'latency',
          `${latencyMs}ms`,
        ]),
      clear: () => tc(['qdisc', 'del', 'dev', this.hostIf, 'root']),
    };
  }

  private iptablesFault(name: string, rules: string[][]): LinkFault {
    return {
      name,
      apply: async () => {
        for (const r of rules) await this.exec('iptables', ['-A', ...r]);
      },
      clear: async () => {
        for (const r of rules) await this.exec('iptables', ['-D', ...r]);
      },
    };
  }

  /** Kills what runs inside, deletes the pair and the namespace, then the guard route. Idempotent. */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    await Promise.all(
      [...this.procs].map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            p.once('exit', () => resolve());
            p.kill('SIGKILL');
          }),
      ),
    );
    // Deleting the namespace deletes its veth end only asynchronously; delete the pair first.
    await ip(['link', 'del', 'dev', this.hostIf]).catch(() => {});
    await ip(['netns', 'del', this.name]).catch(() => {});
    await ip(['route', 'del', 'blackhole', this.subnet, 'metric', String(GUARD_METRIC)]).catch(() => {});
  }
}

async function ip(args: string[]): Promise<void> {
  await run('ip', args);
}

async function tc(args: string[]): Promise<void> {
  await run('tc', args);
}

let created = 0;

/** The /30 for the n-th namespace: .1 root side, .2 inside. */
async function freeSubnet(): Promise<{ subnet: string; hostIp: string; nsIp: string }> {
  const { stdout } = await run('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (let k = 0; k < 16384; k++) {
    const idx = (process.pid * 7 + created + k) % 16384;
    const base = `10.251.${idx >> 6}.${(idx & 63) * 4}`;
    const subnet = `${base}/30`;
    if (stdout.includes(subnet)) continue;
    const prefix = base.slice(0, base.lastIndexOf('.') + 1);
    const last = (idx & 63) * 4;
    return { subnet, hostIp: `${prefix}${last + 1}`, nsIp: `${prefix}${last + 2}` };
  }
  throw new Error('no free /30 left in 10.251.0.0/16');
}

/** Creates a namespace of this test process's own, linked to the root namespace by a veth pair. */
export async function createNetns(): Promise<Netns> {
  await removeStale();
  const n = created++;
  const name = `eflf-${process.pid}-${n}`;
  // Interface names are at most 15 bytes.
  const tag = `${process.pid % 10_000_000}${n % 10}`;
  const hostIf = `ef${tag}h`;
  const nsIf = `ef${tag}n`;
  const addrs = await freeSubnet();
  const { subnet, hostIp, nsIp } = addrs;
  const ns = new Netns(name, hostIf, nsIf, addrs);
  try {
    await ip(['route', 'add', 'blackhole', subnet, 'metric', String(GUARD_METRIC)]);
    await ip(['netns', 'add', name]);
    await ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
    await ip(['link', 'set', nsIf, 'netns', name]);
    await ip(['addr', 'add', `${hostIp}/30`, 'dev', hostIf]);
    await ip(['link', 'set', hostIf, 'up']);
    await ns.exec('ip', ['addr', 'add', `${nsIp}/30`, 'dev', nsIf]);
    await ns.exec('ip', ['link', 'set', nsIf, 'up']);
    await ns.exec('ip', ['link', 'set', 'lo', 'up']);
  } catch (err) {
    await ns.remove();
    throw err;
  }
  return ns;
}

/** Namespaces left by a test process that died before its cleanup (its pid is gone). */
async function removeStale(): Promise<void> {
  const { stdout } = await run('ip', ['netns', 'list']);
  for (const line of stdout.split('\n')) {
    const m = /^eflf-(\d+)-(\d+)/.exec(line);
    if (!m || existsSync(`/proc/${m[1]}`)) continue;
    const tag = `${Number(m[1]) % 10_000_000}${Number(m[2]) % 10}`;
    await ip(['link', 'del', 'dev', `ef${tag}h`]).catch(() => {});
    await ip(['netns', 'del', `eflf-${m[1]}-${m[2]}`]).catch(() => {});
  }
}

/** Null when this process may create namespaces, else why not (not root, no CAP_NET_ADMIN, ...). */
export async function netnsUnavailable(): Promise<string | null> {
  const probe = `eflf-probe-${process.pid}`;
  try {
    await run('ip', ['netns', 'add', probe]);
    await run('ip', ['netns', 'exec', probe, 'iptables', '-S']);
    return null;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return `network namespaces are not allowed here (uid ${process.getuid?.()}): ${(e.stderr || e.message).trim()}`;
  } finally {
    await run('ip', ['netns', 'del', probe]).catch(() => {});
  }
}

/**
 * A test that needs namespaces: the tools as any peer tool (itWithPeer's policy), then the right
 * to use them, checked once before the tests run. Not allowed: skipped with the reason in its
 * title and a warning, or failed under CI.
 */
export function itWithNetns(
  unavailable: string | null,
  title: string,
  fn: () => Promise<void>,
  timeoutMs?: number,
): void {
  const tools: PeerTool = allOf(iproute2(), iptables());
  if (!tools.available || unavailable === null) {
    itWithPeer(tools, title, fn, timeoutMs);
  } else if (isCi()) {
    it(title, () => {
      throw new Error(`${unavailable}; CI runs as root and requires them (see .ci/run)`);
    });
  } else {
    console.warn(`edgeferry link faults: skipping "${title}": ${unavailable}`);
    it.skip(`${title} (skipped: ${unavailable})`, fn);
  }
}
