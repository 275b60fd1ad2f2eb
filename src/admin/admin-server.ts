import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from '../core/logger.ts';
import type { GatewayView } from '../observability/gateway-view.ts';
import { type AdminAuthOptions, BearerAuth } from './bearer-auth.ts';
import { deleteConsumer, getConsumer, listConsumers } from './consumer-routes.ts';
import { deleteDeadLetters, listDeadLetters, replayDeadLetters } from './deadletter-routes.ts';
import { HttpError, send, sendJson } from './http-util.ts';
import { buildStatus } from './status.ts';

// Not `import { createServer } from 'node:http'`: an ES module import builds node:http's
// namespace, whose lazy WebSocket/fetch getters load Node's own bundled undici, about 12 MB of
// resident memory that nothing here uses (the HTTP sink has the undici package).
const { createServer } = process.getBuiltinModule('node:http');

export interface AdminOptions extends AdminAuthOptions {
  host: string;
  port: number;
}

type Handler = (url: URL, res: ServerResponse) => void | Promise<void>;
/** A path's handlers by method; HEAD is served by GET's. */
type Route = Partial<Record<'GET' | 'POST' | 'DELETE', Handler>>;

const CONSUMER_PATH = '/v1/consumers/';

/**
 * Health, readiness, Prometheus metrics and JSON status over plain HTTP, and the operator's
 * actions on durable consumers and dead letters. `/readyz`, `/metrics` and `/v1/status` answer
 * from memory: they must not wait on the journal's disk, which may be full or being reopened.
 */
export class AdminServer {
  private readonly server: Server;
  private readonly opts: AdminOptions;
  private readonly view: GatewayView;
  private readonly registry: Registry;
  private readonly log: Logger;
  private readonly routes: Record<string, Route>;
  private auth: BearerAuth | null = null;

  constructor(opts: AdminOptions, view: GatewayView, registry: Registry, log: Logger) {
    this.opts = opts;
    this.view = view;
    this.registry = registry;
    this.log = log;
    this.routes = {
      '/healthz': { GET: (_u, res) => send(res, 200, 'text/plain', 'ok\n') },
      '/readyz': {
        GET: (_u, res) => {
          const ready = this.view.ready();
          send(res, ready ? 200 : 503, 'text/plain', ready ? 'ready\n' : 'not ready\n');
        },
      },
      '/metrics': {
        GET: async (_u, res) => send(res, 200, this.registry.contentType, await this.registry.metrics()),
      },
      '/v1/status': { GET: async (_u, res) => sendJson(res, 200, await buildStatus(this.view)) },
      '/v1/consumers': { GET: (_u, res) => sendJson(res, 200, listConsumers(this.view.consumers)) },
      '/v1/deadletters': {
        GET: async (u, res) => sendJson(res, 200, await listDeadLetters(this.view, u)),
        DELETE: async (u, res) => sendJson(res, 200, await deleteDeadLetters(this.view, u)),
      },
      '/v1/deadletters/replay': {
        POST: async (u, res) => sendJson(res, 200, await replayDeadLetters(this.view, u)),
      },
    };
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        if (err instanceof HttpError) {
          if (!res.headersSent) sendJson(res, err.status, { error: err.message }, err.headers);
          return;
        }
        this.log.error({ err: (err as Error).message, url: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
      });
    });
  }

  async start(): Promise<void> {
    this.auth = BearerAuth.from(this.opts);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.log.info({ ...this.addresses(), token: this.auth !== null }, 'admin listening');
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
    this.auth?.check(url.pathname, req);
    const route = this.route(url.pathname);
    if (!route) throw new HttpError(404, `no such path: ${url.pathname}`);
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const handler = route[method as keyof Route];
    if (!handler) {
      const allow = Object.keys(route).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]));
      throw new HttpError(405, `method ${req.method} not allowed on ${url.pathname}`, {
        allow: allow.join(', '),
      });
    }
    await handler(url, res);
  }

  private route(path: string): Route | undefined {
    if (Object.hasOwn(this.routes, path)) return this.routes[path];
    if (path.startsWith(CONSUMER_PATH) && path.length > CONSUMER_PATH.length) {
      let name: string;
      try {
        name = decodeURIComponent(path.slice(CONSUMER_PATH.length));
      } catch {
        throw new HttpError(400, `consumer name: malformed percent-encoding in ${path}`);
      }
      return {
        GET: (_u, res) => sendJson(res, 200, getConsumer(this.view.consumers, name)),
        DELETE: async (_u, res) => sendJson(res, 200, await deleteConsumer(this.view.consumers, name)),
      };
    }
    return undefined;
  }
}
