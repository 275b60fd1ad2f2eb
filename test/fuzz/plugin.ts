// What the fuzz harness (harness.ts) needs from a protocol: a generator of hostile cases and a
// transport that throws one case at the daemon. MQTT implements it (mqtt-plugin.ts); the other
// sources plug in the same way:
//  - CoAP: `make` returns datagrams (a mutated CON/NON request, a bad option delta, a truncated
//    token, a Block1 with a bad offset); the transport sends each as one UDP datagram to
//    `daemon.coapPort` from a fresh socket and waits briefly for any answer.
//  - Modbus responses: the daemon is the client there, so `configure` starts a TCP server and
//    adds it to the config as a `modbus.devices` entry before the daemon starts; the transport
//    answers each poll the daemon sends with the next `frame` (wrong transaction id, wrong
//    function code, a byte count past the end, an exception code, a truncated MBAP header).
// The harness itself is protocol-free: it seeds every case, runs them on many concurrent
// transports, and meanwhile checks the well-behaved client, the daemon's RSS and the sink.

import type { DaemonHandle } from '../helpers/daemon.ts';
import type { Rng } from './rng.ts';

export interface FuzzCase {
  /** Which family of malformed input (random bytes, truncated, ...), for the per-kind counts. */
  kind: string;
  /** Packets (MQTT), datagrams (CoAP) or responses (Modbus), in order; most are malformed. */
  frames: Buffer[];
  /** Open a well-formed session first (MQTT: a valid CONNECT), so the frames get past it. */
  session: boolean;
  /** Write the frames one per write (with a loop turn between) instead of all at once. */
  split: boolean;
}

/** What became of one delivered case. */
export type FuzzOutcome = 'closed-by-daemon' | 'closed-by-us';

export interface FuzzTransport {
  deliver(c: FuzzCase, index: number): Promise<FuzzOutcome>;
  close(): Promise<void>;
}

export interface FuzzPlugin {
  protocol: string;
  kinds: readonly string[];
  /** Case number `index` of a run, from its own seeded generator. */
  make(rng: Rng): FuzzCase;
  /** Adds what the plugin needs to the daemon's config before it starts (a Modbus device). */
  configure?(config: Record<string, unknown>): Promise<void>;
  open(daemon: DaemonHandle): FuzzTransport;
}
