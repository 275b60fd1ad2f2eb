// The admin API's optional bearer token (README: Operations). `/v1/*` changes and reveals state
// (dead letters hold device payloads; DELETE and replay act on them), so it takes the token;
// probes must answer without one (kubelet sends none), and `/metrics` stays open unless
// `protectMetrics` says otherwise (Prometheus can send a bearer token, many scrapers cannot).

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { HttpError } from './http-util.ts';

export interface AdminAuthOptions {
  token?: string;
  tokenFile?: string;
  protectMetrics?: boolean;
}

const BEARER = /^Bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*$/i;

/** SHA-256 first: equal lengths for timingSafeEqual, so neither the token nor its length leaks. */
function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export class BearerAuth {
  private readonly expected: Buffer;
  private readonly protectMetrics: boolean;

  /** Reads `tokenFile` (once, at start): a missing or empty file is an error naming the field. */
  static from(opts: AdminAuthOptions): BearerAuth | null {
    let token = opts.token;
    if (opts.tokenFile !== undefined) {
      try {
        token = readFileSync(opts.tokenFile, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        throw new Error(`admin.tokenFile: cannot read ${opts.tokenFile}: ${(err as Error).message}`);
      }
      if (token === '') throw new Error(`admin.tokenFile: ${opts.tokenFile} is empty`);
    }
    if (token === undefined) return null;
    if (!BEARER.test(`Bearer ${token}`)) {
      throw new Error(
        `admin.${opts.tokenFile !== undefined ? 'tokenFile' : 'token'}: not a bearer token (RFC 6750: letters, digits and -._~+/ then optional =)`,
      );
    }
    return new BearerAuth(token, opts.protectMetrics === true);
  }

  private constructor(token: string, protectMetrics: boolean) {
    this.expected = digest(token);
    this.protectMetrics = protectMetrics;
  }

  /** Throws a 401 for a protected path without the right token. */
  check(path: string, req: IncomingMessage): void {
    if (!path.startsWith('/v1/') && !(this.protectMetrics && path === '/metrics')) return;
    const header = req.headers.authorization;
    if (header === undefined) {
      throw new HttpError(401, 'a bearer token is required', {
        'www-authenticate': 'Bearer realm="edgeferry"',
      });
    }
    const m = BEARER.exec(header);
    if (m === null || !timingSafeEqual(digest(m[1]), this.expected)) {
      throw new HttpError(401, 'invalid bearer token', {
        'www-authenticate': 'Bearer realm="edgeferry", error="invalid_token"',
      });
    }
  }
}
