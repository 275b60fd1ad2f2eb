// A CoAP endpoint for tests, on a UDP socket connected to the daemon on 127.0.0.1. Requests are
// encoded with node-coap's codec (coap-packet), an implementation independent of the server's,
// so the two check each other. CON requests are retransmitted with the same message id
// (RFC 7252 §4.2) until answered; the peer counts as down once the daemon's port is closed
// (ICMP port unreachable: ECONNREFUSED) or a CON went unanswered through every retransmission.

import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { generate, type ParsedPacket, parse } from 'coap-packet';

export interface CoapRequest {
  confirmable?: boolean;
  /** 'POST', 'PUT', 'GET', 'DELETE' or a code such as '0.05'. */
  method?: string;
  /** Uri-Path segments. */
  path: string[];
  query?: string[];
  contentFormat?: number;
  payload?: Buffer | string;
  /** Block1 option value (NUM << 4 | M << 3 | SZX). */
  block1?: number;
  size1?: number;
  requestTag?: Buffer;
  /** Extra options, as coap-packet takes them (number as a string name, value bytes). */
  options?: { name: string; value: Buffer }[];
  messageId?: number;
  token?: Buffer;
}

export interface CoapResponse {
  code: string;
  type: 'ACK' | 'NON' | 'RST' | 'CON';
  messageId: number;
  token: Buffer;
  payload: Buffer;
  options: Map<number, Buffer[]>;
  /** A uint option's value (Max-Age 14, Size1 60, Block1 27, Content-Format 12), or undefined. */
  uint(option: number): number | undefined;
}

const OPTION_NUMBERS: Record<string, number> = {
  'Uri-Path': 11,
  'Content-Format': 12,
  'Max-Age': 14,
  'Uri-Query': 15,
  Block2: 23,
  Block1: 27,
  Size1: 60,
};

export function uintBytes(v: number): Buffer {
  const out: number[] = [];
  while (v > 0) {
    out.unshift(v & 0xff);
    v = Math.floor(v / 256);
  }
  return Buffer.from(out);
}

function toResponse(p: ParsedPacket): CoapResponse {
  const options = new Map<number, Buffer[]>();
  for (const o of p.options) {
    const n = typeof o.name === 'number' ? o.name : (OPTION_NUMBERS[o.name] ?? Number(o.name));
    const list = options.get(n) ?? [];
    list.push(o.value);
    options.set(n, list);
  }
  return {
    code: p.code,
    type: p.ack ? 'ACK' : p.reset ? 'RST' : p.confirmable ? 'CON' : 'NON',
    messageId: p.messageId,
    token: p.token,
    payload: p.payload,
    options,
    uint(option: number) {
      const v = options.get(option)?.[0];
      if (v === undefined) return undefined;
      let n = 0;
      for (const b of v) n = n * 256 + b;
      return n;
    },
  };
}

interface Pending {
  resolve: (r: CoapResponse | null) => void;
  timer: NodeJS.Timeout | null;
}

export class CoapPeer {
  readonly socket: Socket;
  /** Every datagram received, decoded (or the raw bytes when it is not CoAP). */
  readonly received: (CoapResponse | Buffer)[] = [];
  private readonly byMid = new Map<number, Pending>();
  private readonly byToken = new Map<string, Pending>();
  private nextMid = Math.floor(Math.random() * 0x10000);
  private nextToken = Math.floor(Math.random() * 0xffffffff);
  private down = false;
  /** First wait for an ACK (RFC 7252 §4.8 ACK_TIMEOUT is 2 s; shorter on loopback). */
  ackTimeoutMs = 1000;
  maxRetransmit = 4;
  /** How long a NON waits for its NON response. */
  nonTimeoutMs = 5000;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('message', (buf) => this.onMessage(buf));
    // ICMP port unreachable on a connected socket: the daemon is gone.
    socket.on('error', () => this.linkDown());
  }

  static async open(port: number): Promise<CoapPeer> {
    const socket = createSocket('udp4');
    socket.bind(0, '127.0.0.1');
    await once(socket, 'listening');
    socket.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new CoapPeer(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  connected(): boolean {
    return !this.down;
  }

  newMessageId(): number {
    this.nextMid = (this.nextMid + 1) & 0xffff;
    return this.nextMid;
  }

  newToken(): Buffer {
    this.nextToken = (this.nextToken + 1) >>> 0;
    const t = Buffer.alloc(4);
    t.writeUInt32BE(this.nextToken);
    return t;
  }

  encode(req: CoapRequest): Buffer {
    const options: { name: string; value: Buffer }[] = [];
    for (const seg of req.path) options.push({ name: 'Uri-Path', value: Buffer.from(seg) });
    if (req.contentFormat !== undefined)
      options.push({ name: 'Content-Format', value: uintBytes(req.contentFormat) });
    for (const q of req.query ?? []) options.push({ name: 'Uri-Query', value: Buffer.from(q) });
    if (req.block1 !== undefined) options.push({ name: 'Block1', value: uintBytes(req.block1) });
    if (req.size1 !== undefined) options.push({ name: 'Size1', value: uintBytes(req.size1) });
    if (req.requestTag !== undefined) options.push({ name: '292', value: req.requestTag });
    if (req.options) options.push(...req.options);
    const payload = typeof req.payload === 'string' ? Buffer.from(req.payload) : req.payload;
    return generate(
      {
        code: req.method ?? 'POST',
        confirmable: req.confirmable ?? true,
        messageId: req.messageId ?? this.newMessageId(),
        token: req.token ?? this.newToken(),
        options: options as never,
        payload: payload ?? Buffer.alloc(0),
      },
      70_000,
    );
  }

  /**
   * Sends `req` and resolves with its response: for a CON the ACK or RST with its message id
   * (retransmitted meanwhile), for a NON the response with its token. null when none came.
   */
  request(req: CoapRequest): Promise<CoapResponse | null> {
    if (this.down) return Promise.resolve(null);
    const messageId = req.messageId ?? this.newMessageId();
    const token = req.token ?? this.newToken();
    const bytes = this.encode({ ...req, messageId, token });
    return this.exchange(bytes, req.confirmable ?? true, messageId, token);
  }

  /** Sends prepared bytes as a CON (or NON) with `messageId`/`token`, as `request` does. */
  exchange(
    bytes: Buffer,
    confirmable: boolean,
    messageId: number,
    token: Buffer,
  ): Promise<CoapResponse | null> {
    return new Promise((resolve) => {
      const p: Pending = { resolve, timer: null };
      if (confirmable) {
        this.byMid.set(messageId, p);
        let timeout = this.ackTimeoutMs;
        let tries = 0;
        const attempt = () => {
          if (this.down) return;
          this.send(bytes);
          if (tries++ < this.maxRetransmit) {
            p.timer = setTimeout(attempt, timeout);
            timeout *= 2;
          } else {
            p.timer = setTimeout(() => {
              this.byMid.delete(messageId);
              this.linkDown();
              resolve(null);
            }, timeout);
          }
        };
        attempt();
      } else {
        const key = token.toString('hex');
        this.byToken.set(key, p);
        this.send(bytes);
        p.timer = setTimeout(() => {
          this.byToken.delete(key);
          resolve(null);
        }, this.nonTimeoutMs);
      }
    });
  }

  /** Sends bytes as they are. */
  sendRaw(bytes: Buffer): void {
    this.send(bytes);
  }

  // The kernel reports an ICMP port unreachable once, to whichever call on the socket comes
  // next. When that is a send, Node hands the ECONNREFUSED only to a send callback (none: it is
  // dropped), and the peer would wait out its whole retransmission chain instead.
  private send(bytes: Buffer): void {
    this.socket.send(bytes, (err) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ECONNREFUSED') this.linkDown();
    });
  }

  private onMessage(buf: Buffer): void {
    let r: CoapResponse;
    try {
      r = toResponse(parse(buf));
    } catch {
      this.received.push(buf);
      return;
    }
    this.received.push(r);
    let p: Pending | undefined;
    if (r.type === 'ACK' || r.type === 'RST') {
      p = this.byMid.get(r.messageId);
      if (p) this.byMid.delete(r.messageId);
    } else {
      const key = r.token.toString('hex');
      p = this.byToken.get(key);
      if (p) this.byToken.delete(key);
    }
    if (p) {
      if (p.timer) clearTimeout(p.timer);
      p.resolve(r);
    }
  }

  private linkDown(): void {
    if (this.down) return;
    this.down = true;
    for (const m of [this.byMid, this.byToken]) {
      for (const p of m.values()) {
        if (p.timer) clearTimeout(p.timer);
        p.resolve(null);
      }
      m.clear();
    }
  }

  async close(): Promise<void> {
    this.linkDown();
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}
