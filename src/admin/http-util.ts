import type { ServerResponse } from 'node:http';

/** A request the admin API refuses: the status and a message naming the parameter. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

export function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { ...headers, 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function sendJson(
  res: ServerResponse,
  status: number,
  doc: unknown,
  headers?: Record<string, string>,
): void {
  send(res, status, 'application/json', `${JSON.stringify(doc, null, 2)}\n`, headers);
}

/**
 * An optional integer query parameter in `min..max`: anything else (a sign, a fraction, a unit,
 * an empty value) is a 400 that names it, never a silent default.
 */
export function intParam(url: URL, name: string, min: number, max: number, fallback: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return fallback;
  const n = /^\d{1,16}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(n >= min && n <= max)) {
    throw new HttpError(400, `${name}: must be an integer ${min}..${max} (got ${JSON.stringify(raw)})`);
  }
  return n;
}

export function requiredParam(url: URL, name: string): string {
  const v = url.searchParams.get(name);
  if (!v) throw new HttpError(400, `${name}: query parameter required`);
  return v;
}
