// TLS certificate files that change under a running process: cert-manager and SPIRE rewrite
// them in place before they expire, and a Kubernetes Secret volume swaps its `..data` symlink.
// Files are polled (stat, then read only when something changed), not watched with fs.watch:
// inotify loses track of a file replaced by a rename or a symlink swap.

import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { Logger } from './logger.ts';

export interface TlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** The files' contents: what a secure context, a grpc-js credential or undici's `connect` take. */
export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** How often the files are checked unless told otherwise. */
export const TLS_RELOAD_CHECK_MS = 10_000;

export interface TlsReloadCounters {
  /** New files taken into use. */
  reloads: number;
  /** New files refused (unreadable, unparsable, a key that does not match, an expired cert). */
  reloadErrors: number;
}

/**
 * Reads a set of TLS files, validates them together, and checks them again every `intervalMs`:
 * new contents that make a valid context are handed to `onChange`; broken ones are refused
 * with an error log line (once per version of the files) while the last good ones stay in use.
 * A change is taken once the files have stayed the same for one check, so a cert written a
 * moment before its key is not refused as a mismatch.
 */
export class TlsFileWatcher {
  readonly counters: TlsReloadCounters = { reloads: 0, reloadErrors: 0 };
  private readonly files: TlsFiles;
  private readonly what: string;
  private readonly log: Logger;
  private readonly onChange: (m: TlsMaterial) => void;
  private material: TlsMaterial;
  /** The signature of the files in use, of the last refused version, and of the last check. */
  private inUse: string;
  private refused = '';
  private seen: string;
  private timer: NodeJS.Timeout | null = null;

  /** Loads the files now: broken ones at start are an error for the caller, not a log line. */
  constructor(files: TlsFiles, what: string, log: Logger, onChange: (m: TlsMaterial) => void) {
    this.files = files;
    this.what = what;
    this.log = log;
    this.onChange = onChange;
    this.inUse = this.signature();
    this.seen = this.inUse;
    this.material = loadTls(files);
  }

  get current(): TlsMaterial {
    return this.material;
  }

  start(intervalMs = TLS_RELOAD_CHECK_MS): void {
    this.timer ??= setInterval(() => this.check(), intervalMs).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One check (also for tests): reload if the files changed and have settled. */
  check(): void {
    let sig: string;
    try {
      sig = this.signature();
    } catch (err) {
      sig = `missing: ${(err as Error).message}`;
    }
    const settled = sig === this.seen;
    this.seen = sig;
    if (!settled || sig === this.inUse || sig === this.refused) return;
    let next: TlsMaterial;
    try {
      next = loadTls(this.files);
    } catch (err) {
      this.refused = sig;
      this.counters.reloadErrors++;
      this.log.error(
        { tls: this.what, ...this.files, err: (err as Error).message },
        'new TLS files refused: the previous ones stay in use',
      );
      return;
    }
    this.inUse = sig;
    this.refused = '';
    this.material = next;
    this.counters.reloads++;
    this.onChange(next);
    this.log.info({ tls: this.what, ...this.files }, 'TLS files reloaded: new connections use them');
  }

  /** Identity and version of each file as stat sees it through symlinks. */
  private signature(): string {
    let sig = '';
    for (const f of [this.files.caFile, this.files.certFile, this.files.keyFile]) {
      if (f === undefined) continue;
      const s = statSync(f, { bigint: true });
      sig += `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs};`;
    }
    return sig;
  }
}

/**
 * Reads and checks the files as one set: each parses, the key matches the certificate, and the
 * certificate is within its validity (an expired one would fail every handshake).
 */
export function loadTls(files: TlsFiles, now = Date.now()): TlsMaterial {
  const read = (f: string | undefined) => (f === undefined ? undefined : readFileSync(f));
  const m: TlsMaterial = { ca: read(files.caFile), cert: read(files.certFile), key: read(files.keyFile) };
  createSecureContext({ ca: m.ca, cert: m.cert, key: m.key });
  if (m.ca !== undefined && !m.ca.includes('-----BEGIN CERTIFICATE-----')) {
    throw new Error(`${files.caFile}: no PEM certificate`);
  }
  if (m.cert !== undefined) {
    const leaf = new X509Certificate(m.cert);
    if (Date.parse(leaf.validTo) <= now) throw new Error(`${files.certFile}: expired on ${leaf.validTo}`);
  }
  return m;
}
