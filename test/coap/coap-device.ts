// A CoAP device for tests, built with the `coap` package (node-coap), a real UDP peer on
// 127.0.0.1: an observable resource (/temp, JSON, notified on demand), a plain one (/poll, text,
// GET only), a command resource (/led, answers PUT and POST), and one that never answers (/mute).
// It can be stopped and started again on the same port.

import type { AddressInfo } from 'node:net';
import { createServer, type IncomingMessage, type OutgoingMessage, type Server } from 'coap';

export interface ReceivedCommand {
  method: string;
  url: string;
  payload: string;
  contentFormat: unknown;
}

export class CoapDevice {
  port = 0;
  readonly commands: ReceivedCommand[] = [];
  /** GET requests seen on /temp with Observe: 0 (registrations and re-registrations). */
  registrations = 0;
  /** GET requests on /temp with Observe: 1 (an explicit cancellation, RFC 7641 §3.6). */
  cancellations = 0;
  polls = 0;
  private server: Server | null = null;
  private readonly observers = new Set<OutgoingMessage>();
  private value = 0;

  async start(port = this.port): Promise<void> {
    const server = createServer({ type: 'udp4' }, (req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
    this.port = (server as unknown as { _sock: { address(): AddressInfo } })._sock.address().port;
    this.server = server;
  }

  get url(): string {
    return `coap://127.0.0.1:${this.port}`;
  }

  /** Sends one notification to every current observer of /temp. */
  notify(): void {
    this.value++;
    for (const res of this.observers) res.write(JSON.stringify({ t: this.value }));
  }

  get observerCount(): number {
    return this.observers.size;
  }

  /** Goes away: the socket closes and every observation is forgotten (as a reboot would). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.observers.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: OutgoingMessage): void {
    const path = req.url.split('?')[0];
    if (path === '/temp' && req.method === 'GET') {
      res.setOption('Content-Format', 'application/json');
      // Fresh for 1 s (RFC 7252 §5.10.5): the observer re-registers soon after the device goes
      // quiet, so a restart is noticed quickly in the test.
      res.setOption('Max-Age', 1);
      if (req.headers.Observe === 0) {
        this.registrations++;
        this.observers.add(res);
        res.on('finish', () => this.observers.delete(res));
        res.write(JSON.stringify({ t: this.value }));
      } else {
        // node-coap keeps notifying after a cancellation (it has no deregistration): count it.
        if (req.headers.Observe === 1) this.cancellations++;
        res.end(JSON.stringify({ t: this.value }));
      }
      return;
    }
    if (path === '/poll' && req.method === 'GET') {
      this.polls++;
      res.setOption('Content-Format', 'text/plain');
      res.end(`poll-${this.polls}`);
      return;
    }
    if (path === '/led' && (req.method === 'PUT' || req.method === 'POST')) {
      this.commands.push({
        method: req.method,
        url: req.url,
        payload: req.payload.toString('utf8'),
        contentFormat: req.headers['Content-Format'],
      });
      res.code = req.method === 'PUT' ? '2.04' : '2.01';
      res.setOption('Content-Format', 'text/plain');
      res.end(`done:${req.payload.toString('utf8')}`);
      return;
    }
    if (path === '/mute') return; // never answered: the client's deadline ends the exchange
    res.code = '4.04';
    res.end();
  }
}

/** A UDP port on 127.0.0.1 where nothing listens (bound once, then released). */
export async function deadPort(): Promise<number> {
  const dgram = await import('node:dgram');
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
