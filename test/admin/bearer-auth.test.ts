// The admin API's bearer token: /v1/* needs it, probes never do, /metrics only when asked; a
// wrong or missing token is a 401 with WWW-Authenticate, and a bad token file stops the start.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type AdminOptions, AdminServer } from '../../src/admin/admin-server.ts';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/core/errors.ts';
import type { GatewayView } from '../../src/observability/gateway-view.ts';
import { createMetricsRegistry } from '../../src/observability/metrics.ts';
import { tempDir } from '../helpers/daemon.ts';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const view: GatewayView = {
  nodeId: 'n',
  startedAt: 0,
  journal: null,
  sources: [],
  dispatchers: [],
  consumers: null,
  ready: () => true,
};

let server: AdminServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

async function start(opts: Partial<AdminOptions>): Promise<string> {
  server = new AdminServer({ host: '127.0.0.1', port: 0, ...opts }, view, createMetricsRegistry(view), quiet);
  await server.start();
  return `http://127.0.0.1:${server.addresses().port}`;
}

async function get(url: string, token?: string): Promise<{ status: number; auth: string | null }> {
  const res = await fetch(url, { headers: token === undefined ? {} : { authorization: token } });
  await res.arrayBuffer();
  return { status: res.status, auth: res.headers.get('www-authenticate') };
}

describe('admin bearer token', () => {
  it('without a token configured, everything is open (as before)', async () => {
    const base = await start({});
    expect((await get(`${base}/v1/consumers`)).status).not.toBe(401);
    expect((await get(`${base}/metrics`)).status).toBe(200);
  });

  it('/v1/* needs the token; /healthz, /readyz and /metrics stay open', async () => {
    const base = await start({ token: 's3cret-token' });
    const missing = await get(`${base}/v1/status`);
    expect(missing).toEqual({ status: 401, auth: 'Bearer realm="edgeferry"' });
    const wrong = await get(`${base}/v1/status`, 'Bearer s3cret-tokeN');
    expect(wrong).toEqual({ status: 401, auth: 'Bearer realm="edgeferry", error="invalid_token"' });
    expect((await get(`${base}/v1/status`, 'Bearer s3cret-token-and-more')).status).toBe(401);
    expect((await get(`${base}/v1/status`, 'Basic czNjcmV0LXRva2Vu')).status).toBe(401);
    // An unknown /v1 path does not tell an unauthenticated caller what exists.
    expect((await get(`${base}/v1/nothing`)).status).toBe(401);
    expect((await get(`${base}/v1/status`, 'bearer s3cret-token')).status).toBe(200);
    expect((await get(`${base}/v1/nothing`, 'Bearer s3cret-token')).status).toBe(404);
    expect((await get(`${base}/healthz`)).status).toBe(200);
    expect((await get(`${base}/readyz`)).status).toBe(200);
    expect((await get(`${base}/metrics`)).status).toBe(200);
  });

  it('protectMetrics: /metrics needs the token too, probes do not', async () => {
    const base = await start({ token: 'abc', protectMetrics: true });
    expect((await get(`${base}/metrics`)).status).toBe(401);
    expect((await get(`${base}/metrics`, 'Bearer abc')).status).toBe(200);
    expect((await get(`${base}/healthz`)).status).toBe(200);
  });

  it('tokenFile: read at start (a trailing newline dropped); a missing or empty file stops the start', async () => {
    const dir = tempDir('edgeferry-token-');
    const file = join(dir, 'token');
    writeFileSync(file, 'from-file\n');
    const base = await start({ tokenFile: file });
    expect((await get(`${base}/v1/status`, 'Bearer from-file')).status).toBe(200);
    await server?.stop();
    server = null;
    writeFileSync(file, '');
    await expect(start({ tokenFile: file })).rejects.toThrow(`admin.tokenFile: ${file} is empty`);
    await expect(start({ tokenFile: join(dir, 'absent') })).rejects.toThrow('admin.tokenFile: cannot read');
    server = null;
    writeFileSync(file, 'has space');
    await expect(start({ tokenFile: file })).rejects.toThrow('admin.tokenFile: not a bearer token');
    server = null;
  });

  it('config: token and tokenFile exclude each other; protectMetrics needs one', () => {
    const errorOf = (admin: object) => {
      try {
        parseConfig({ admin }, {});
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      return '';
    };
    expect(errorOf({ token: 'a', tokenFile: '/t' })).toContain(
      'admin.tokenFile: token and tokenFile exclude each other',
    );
    expect(errorOf({ protectMetrics: true })).toContain('admin.protectMetrics: needs token or tokenFile');
    expect(errorOf({ token: '' })).toContain('admin.token: must not be empty');
    expect(parseConfig({ admin: { token: 'a' } }, {}).admin).toMatchObject({
      token: 'a',
      protectMetrics: false,
    });
  });
});
