import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from '../core/logger.ts';
import type { GatewayView } from '../observability/gateway-view.ts';
import { buildStatus } from './status.ts';

// Not `import { createServer } from 'node:http'`: an ES module import builds node:http's
// namespace, whose lazy WebSocket/fetch getters load Node's own bundled undici, about 12 MB of
// resident memory that nothing here uses (the HTTP sink has the undici package).
const { createServer } = process.getBuiltinModule('node:http');

export interface AdminOptions {
  host: string;
  port: number;
}

/** Health, readiness, Prometheus metrics and JSON status over plain HTTP. */
export class AdminServer {
  private readonly server: Server;
  private readonly opts: AdminOptions;
  private readonly view: GatewayView;
  private readonly registry: Registry;
  private readonly log: Logger;

  constructor(opts: AdminOptions, view: GatewayView, registry: Registry, log: Logger) {
    this.opts = opts;
    this.view = view;
    this.registry = registry;
    this.log = log;
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        this.log.error({ err: (err as Error).message, url: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
      });
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.log.info(this.addresses(), 'admin listening');
  }

  addresses(): Record<string, string | number> {
    const a = this.server.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : {};
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain', 'method not allowed\n');
      return;
    }
    switch (url.pathname) {
      case '/healthz':
        send(res, 200, 'text/plain', 'ok\n');
        return;
      case '/readyz': {
        const ready = this.view.ready();
        send(res, ready ? 200 : 503, 'text/plain', ready ? 'ready\n' : 'not ready\n');
        return;
      }
      case '/metrics':
        send(res, 200, this.registry.contentType, await this.registry.metrics());
        return;
      case '/v1/status':
        send(res, 200, 'application/json', `${JSON.stringify(await buildStatus(this.view), null, 2)}\n`);
        return;
      case '/v1/deadletters': {
        const sink = url.searchParams.get('sink');
        const limit = Math.min(1000, Number(url.searchParams.get('limit') ?? 100) || 100);
        if (!sink || !this.view.journal) {
          send(res, 400, 'application/json', '{"error":"query parameter sink is required"}\n');
          return;
        }
        const letters = await this.view.journal.listDeadLetters(sink, limit);
        const body = letters.map((d) => ({
          n: d.n,
          seq: d.seq,
          at: new Date(d.at).toISOString(),
          reason: d.reason,
          body: d.body.toString('base64'),
        }));
        send(res, 200, 'application/json', `${JSON.stringify({ sink, deadLetters: body }, null, 2)}\n`);
        return;
      }
      default:
        send(res, 404, 'text/plain', 'not found\n');
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
