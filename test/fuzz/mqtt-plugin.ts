// Hostile MQTT for the fuzz harness: each case is one TCP connection to the daemon's broker,
// with (mostly) a valid CONNECT first so the malformed packets get past the handshake, then a
// few packets from one family: random bytes, mutated valid packets, absurd Remaining Lengths,
// truncated frames, ill-formed UTF-8 in every string field, and MQTT 3.1.1 rule violations.

import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { publishPacket, pubrelPacket, varint } from '../helpers/mqtt-wire.ts';
import { field, frame, rawConnect, rawSubscribe, rawUnsubscribe } from '../helpers/mqtt-wire-raw.ts';
import type { FuzzCase, FuzzOutcome, FuzzPlugin, FuzzTransport } from './plugin.ts';
import type { Rng } from './rng.ts';

const KINDS = [
  'random-bytes',
  'mutated',
  'absurd-length',
  'truncated',
  'invalid-utf8',
  'rule-violation',
] as const;
type Kind = (typeof KINDS)[number];
/** How often each kind is drawn, in the order of KINDS. */
const WEIGHTS = [15, 35, 10, 15, 20, 5];

const TOPICS = ['sensors/t', 'fuzz/a/b/c', 'température/ü', '日本/😀', '$SYS/x', 'a', 'x/'.repeat(30)];
const FILTERS = ['#', 'fuzz/+/b/#', '+', 'sensors/t', '日本/#', '$SYS/#'];

/** Ill-formed UTF-8 [MQTT-1.5.3-1] and U+0000 [MQTT-1.5.3-2] in the forms decoders get wrong. */
const BAD_UTF8 = [
  [0xff],
  [0xfe],
  [0x80],
  [0xbf],
  [0xc0, 0xaf], // overlong '/'
  [0xc0, 0x80], // overlong U+0000
  [0xc1, 0xbf],
  [0xe0, 0x80, 0xaf],
  [0xed, 0xa0, 0x80], // a UTF-16 surrogate
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
  [0xf5, 0x80, 0x80, 0x80],
  [0xe6, 0x97], // truncated
  [0xc3],
  [0x00],
].map((b) => Buffer.from(b));

/** A client id from a small set, so clean: false sessions and takeovers stay bounded. */
const clientId = (rng: Rng) => `fz-${rng.int(64)}`;

function payload(rng: Rng): Buffer {
  return rng.bytes(rng.int(64));
}

function validConnect(rng: Rng): Buffer {
  return rawConnect({
    clientId: clientId(rng),
    clean: rng.chance(0.7),
    keepalive: rng.pick([0, 5, 60]),
    will: rng.chance(0.2) ? { topic: rng.pick(TOPICS), message: payload(rng), qos: rng.int(3) } : undefined,
    username: rng.chance(0.2) ? 'user' : undefined,
  });
}

/** A well-formed packet a client may send after CONNECT. */
function validPacket(rng: Rng): Buffer {
  const id = rng.range(1, 65535);
  switch (rng.int(8)) {
    case 0:
    case 1:
    case 2:
      return publishPacket(rng.pick(TOPICS), payload(rng), rng.int(3) as 0 | 1 | 2, id, {
        retain: rng.chance(0.1),
        dup: rng.chance(0.1),
      });
    case 3:
      return rawSubscribe(id, [{ filter: rng.pick(FILTERS), qos: rng.int(3) }]);
    case 4:
      return rawUnsubscribe(id, [rng.pick(FILTERS)]);
    case 5:
      return pubrelPacket(id);
    case 6:
      return Buffer.from([rng.pick([0x40, 0x50, 0x70]), 2, id >> 8, id & 0xff]); // PUBACK, PUBREC, PUBCOMP
    default:
      return Buffer.from([0xc0, 0]); // PINGREQ
  }
}

function mutate(rng: Rng, p: Buffer): Buffer {
  const at = rng.int(p.length);
  switch (rng.int(7)) {
    case 0: {
      const out = Buffer.from(p);
      out[at] ^= 1 << rng.int(8);
      return out;
    }
    case 1: {
      const out = Buffer.from(p);
      out[at] = rng.int(256);
      return out;
    }
    case 2:
      return Buffer.concat([p.subarray(0, at), rng.bytes(rng.range(1, 8)), p.subarray(at)]);
    case 3:
      return Buffer.concat([p.subarray(0, at), p.subarray(at + rng.range(1, 8))]);
    case 4:
      return Buffer.concat([p.subarray(0, at), p.subarray(rng.int(p.length))]);
    case 5:
      return Buffer.concat([Buffer.from([p[0]]), varint(rng.int(2 ** 28)), p.subarray(2)]);
    default:
      return Buffer.concat([Buffer.from([rng.int(256)]), p.subarray(1)]);
  }
}

function badString(rng: Rng): Buffer {
  const head = Buffer.from(rng.pick(TOPICS).slice(0, rng.int(10)));
  return Buffer.concat([head, rng.pick(BAD_UTF8), Buffer.from(rng.chance(0.5) ? '/tail' : '')]);
}

function invalidUtf8(rng: Rng): { frame: Buffer; session: boolean } {
  const id = rng.range(1, 65535);
  switch (rng.int(7)) {
    case 0:
    case 1:
    case 2:
      return {
        frame: publishPacket(badString(rng), Buffer.from('fuzz'), rng.int(3) as 0 | 1 | 2, id),
        session: true,
      };
    case 3:
      return { frame: rawSubscribe(id, [{ filter: badString(rng), qos: 1 }]), session: true };
    case 4:
      return { frame: rawUnsubscribe(id, [badString(rng)]), session: true };
    case 5:
      return { frame: rawConnect({ clientId: badString(rng) }), session: false };
    default:
      return {
        frame: rawConnect({
          clientId: clientId(rng),
          will: { topic: badString(rng), message: payload(rng) },
        }),
        session: false,
      };
  }
}

/** One packet breaking a rule that the conformance checks or mqtt-packet enforce. */
function ruleViolation(rng: Rng): { frame: Buffer; session: boolean } {
  const violations: (() => { frame: Buffer; session: boolean })[] = [
    () => ({ frame: publishPacket('fuzz/id0', payload(rng), 1, 0), session: true }),
    () => ({ frame: rawSubscribe(0, [{ filter: '#', qos: 0 }]), session: true }),
    () => ({ frame: rawUnsubscribe(rng.range(1, 9), []), session: true }),
    () => ({ frame: rawSubscribe(rng.range(1, 9), []), session: true }),
    () => ({ frame: Buffer.from([0x36, 5, 0, 1, 0x61, 0, 1]), session: true }), // QoS 3
    () => ({ frame: Buffer.from([0x60, 2, 0, 1]), session: true }), // PUBREL flags 0
    () => ({ frame: Buffer.from([rng.pick([0x00, 0xf0, 0x20, 0x90, 0xb0, 0xd0]), 0]), session: true }),
    () => ({ frame: publishPacket('fuzz/+/wild', payload(rng), 1, 1), session: true }),
    () => ({ frame: validConnect(rng), session: true }), // a second CONNECT
    () => ({ frame: publishPacket('fuzz/early', payload(rng), 1, 1), session: false }),
    () => ({ frame: rawConnect({ clientId: '', flags: 0 }), session: false }),
    () => ({
      frame: rawConnect({ clientId: 'x', flags: rng.pick([0x03, 0x0a, 0x22, 0x42, 0x1e]) }),
      session: false,
    }),
    () => ({
      frame: frame(0x10, Buffer.concat([field('MQTX'), Buffer.from([4, 2, 0, 60]), field('x')])),
      session: false,
    }),
  ];
  return rng.pick(violations)();
}

function pickKind(rng: Rng): Kind {
  let r = rng.int(WEIGHTS.reduce((a, b) => a + b, 0));
  for (let i = 0; i < KINDS.length; i++) {
    r -= WEIGHTS[i];
    if (r < 0) return KINDS[i];
  }
  return KINDS[0];
}

export function makeMqttCase(rng: Rng, maxPacketBytes: number): FuzzCase {
  const kind = pickKind(rng);
  const n = rng.range(1, 4);
  const frames: Buffer[] = [];
  let session = rng.chance(0.8);
  for (let i = 0; i < n; i++) {
    switch (kind) {
      case 'random-bytes': {
        const b = rng.bytes(rng.range(1, 512));
        if (rng.chance(0.3)) b[0] = rng.pick([0x10, 0x30, 0x32, 0x82, 0xa2, 0x62]);
        frames.push(b);
        break;
      }
      case 'mutated': {
        let p = rng.chance(0.15) ? validConnect(rng) : validPacket(rng);
        for (let m = rng.range(1, 3); m > 0; m--) p = mutate(rng, p);
        frames.push(p);
        break;
      }
      case 'absurd-length': {
        const lengths = [
          Buffer.from([0xff, 0xff, 0xff, 0x7f]), // 268 435 455, the largest there is
          Buffer.from([0xff, 0xff, 0xff, 0xff, 0x01]), // a fifth length byte
          Buffer.from([0x80, 0x80, 0x80, 0x80]),
          varint(maxPacketBytes + 1),
          varint(rng.int(2 ** 28)),
        ];
        const type = rng.pick([0x10, 0x30, 0x32, 0x34, 0x82, 0xa2, 0x62, 0xc0]);
        frames.push(Buffer.concat([Buffer.from([type]), rng.pick(lengths), rng.bytes(rng.int(64))]));
        break;
      }
      case 'truncated': {
        const p = rng.chance(0.2) ? validConnect(rng) : validPacket(rng);
        frames.push(p.subarray(0, rng.range(1, Math.max(1, p.length - 1))));
        // What follows is read as the rest of the cut packet.
        if (rng.chance(0.5)) frames.push(validPacket(rng));
        break;
      }
      case 'invalid-utf8': {
        const v = invalidUtf8(rng);
        if (i === 0) session = v.session;
        frames.push(v.session === session ? v.frame : validPacket(rng));
        break;
      }
      default: {
        const v = ruleViolation(rng);
        if (i === 0) session = v.session;
        frames.push(v.session === session ? v.frame : validPacket(rng));
      }
    }
  }
  return { kind, frames, session, split: rng.chance(0.3) };
}

export interface MqttFuzzOptions {
  /** The daemon's mqtt.maxPacketBytes, for Remaining Lengths just past it. */
  maxPacketBytes: number;
  /** How long a connection is left open for the daemon to close it before we do. */
  lingerMs: number;
}

export function mqttPlugin(opts: MqttFuzzOptions): FuzzPlugin {
  return {
    protocol: 'mqtt',
    kinds: KINDS,
    make: (rng) => makeMqttCase(rng, opts.maxPacketBytes),
    open(daemon): FuzzTransport {
      return {
        deliver: (c, index) => deliver(daemon.mqttPort, c, index, opts.lingerMs),
        close: async () => {},
      };
    },
  };
}

async function deliver(port: number, c: FuzzCase, index: number, lingerMs: number): Promise<FuzzOutcome> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  // Whatever the daemon answers is read and dropped, so its writes never wait on us.
  socket.resume();
  // A reset (the daemon closing on a packet we are still writing) is an 'error' then a 'close'.
  const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
  try {
    await Promise.race([new Promise((resolve) => socket.once('connect', resolve)), closed]);
    if (c.session) socket.write(rawConnect({ clientId: `fz-s-${index % 256}` }));
    if (c.split) {
      for (const f of c.frames) {
        if (socket.destroyed) break;
        socket.write(f);
        await new Promise((r) => setImmediate(r));
      }
    } else if (!socket.destroyed) {
      socket.write(Buffer.concat(c.frames));
    }
    if (await Promise.race([closed, sleep(lingerMs, false)])) return 'closed-by-daemon';
    socket.end();
    await Promise.race([closed, sleep(2000)]);
    return 'closed-by-us';
  } finally {
    socket.destroy();
  }
}
