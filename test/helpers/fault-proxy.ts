// A TCP proxy on loopback that can misbehave the way links do: cut a connection after some
// bytes (RST both ways), or swallow everything and answer nothing (a blackhole, as a dead NAT
// or a half-open link looks), also on connections already open (`freeze`: a peer that froze or
// vanished without a FIN). Real sockets on both sides; the faults are in the middle.

import { connect, createServer, type Server, type Socket } from 'node:net';

export type ProxyMode = { kind: 'pass' } | { kind: 'cut-after'; bytes: number } | { kind: 'blackhole' };

export class FaultProxy {
  port = 0;
  mode: ProxyMode = { kind: 'pass' };
  /** Connections cut or swallowed so far. */
  faults = 0;
  connections = 0;
  /** Open connections forward nothing, either way, and stay open. */
  frozen = false;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly targetPort: number;

  constructor(targetPort: number) {
    this.targetPort = targetPort;
  }

  async start(): Promise<void> {
    const server = createServer((client) => this.onClient(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** From now on every open connection swallows what either side sends, without closing. */
  freeze(): void {
    this.frozen = true;
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => {});
  }

  private onClient(client: Socket): void {
    this.connections++;
    this.track(client);
    const mode = this.mode;
    if (mode.kind === 'blackhole') {
      this.faults++;
      client.resume(); // read and drop: the peer's writes succeed, nothing ever answers
      return;
    }
    const upstream = connect(this.targetPort, '127.0.0.1');
    this.track(upstream);
    let sent = 0;
    client.on('data', (chunk: Buffer) => {
      if (this.frozen) return;
      if (mode.kind === 'cut-after' && sent + chunk.length > mode.bytes) {
        upstream.write(chunk.subarray(0, Math.max(0, mode.bytes - sent)));
        this.faults++;
        client.resetAndDestroy();
        upstream.resetAndDestroy();
        return;
      }
      sent += chunk.length;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!this.frozen) client.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }
}
