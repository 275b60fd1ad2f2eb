// The broker's TLS listener: its server options from the certificate files, the identity a
// verified client certificate carries, and the files' rotation. cert-manager and SPIRE rewrite
// certificate files in place (often by swapping a symlink): each file's identity (inode, size,
// mtime) is checked every `reloadCheckMs`, and a change builds a new SecureContext that new
// handshakes use (`server.setSecureContext`) while established connections keep theirs. A new
// file that does not load (a half-written PEM, a key that does not match the certificate) is
// refused with an error line, and the old context stays.

import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext, type PeerCertificate, type TLSSocket, type TlsOptions } from 'node:tls';
import type { Logger } from '../../core/logger.ts';

export interface MqttTlsOptions {
  host?: string;
  port: number;
  certFile: string;
  keyFile: string;
  caFile?: string;
  requireClientCert: boolean;
  identity: 'cn' | 'san-dns' | 'san-uri';
}

/** Reads the files and checks that they load, as a server would; throws on any problem. */
export function loadTlsOptions(t: MqttTlsOptions): TlsOptions {
  const cert = readFileSync(t.certFile);
  const key = readFileSync(t.keyFile);
  const ca = t.caFile ? readFileSync(t.caFile) : undefined;
  // Throws on a malformed PEM or a key that does not match the certificate.
  createSecureContext({ cert, key, ca });
  const leaf = new X509Certificate(cert);
  if (Date.parse(leaf.validTo) < Date.now())
    throw new Error(`${t.certFile}: certificate expired ${leaf.validTo}`);
  return { cert, key, ca };
}

export function serverOptions(t: MqttTlsOptions, files: TlsOptions): TlsOptions {
  return {
    ...files,
    // With a CA, a client certificate is asked for; a connection that presents none is refused
    // only with requireClientCert (checked again in `peerIdentity` when it is optional).
    requestCert: t.caFile !== undefined,
    rejectUnauthorized: t.requireClientCert,
    // A peer that opens a connection and never finishes the handshake holds a socket: 10 s.
    handshakeTimeout: 10_000,
    minVersion: 'TLSv1.2',
  };
}

/**
 * The identity of a verified client certificate, `null` when the connection has none, or
 * `undefined` when it presented one that failed verification (the connection must be closed).
 */
export function peerIdentity(socket: TLSSocket, mode: MqttTlsOptions['identity']): string | null | undefined {
  const cert = socket.getPeerCertificate() as PeerCertificate | Record<string, never>;
  if (!cert || Object.keys(cert).length === 0) return null;
  if (!socket.authorized) return undefined;
  if (mode === 'cn') {
    const cn = cert.subject?.CN;
    return typeof cn === 'string' && cn !== '' ? cn : undefined;
  }
  // subjectaltname: "DNS:a.example, URI:spiffe://trust/dev/1, IP Address:10.0.0.1"
  const want = mode === 'san-dns' ? 'DNS:' : 'URI:';
  for (const part of (cert.subjectaltname ?? '').split(', '))
    if (part.startsWith(want)) return part.slice(want.length);
  return undefined;
}

function fileStamp(path: string): string {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch (err) {
    return `missing:${(err as NodeJS.ErrnoException).code}`;
  }
}

/** Polls files for a change: one timer for all of them, unref'd. */
export class FileWatch {
  private readonly stamps = new Map<string, string>();
  private readonly timer: NodeJS.Timeout;

  constructor(files: string[], everyMs: number, onChange: (file: string) => void) {
    for (const f of files) this.stamps.set(f, fileStamp(f));
    this.timer = setInterval(() => {
      for (const [f, old] of this.stamps) {
        const now = fileStamp(f);
        if (now !== old) {
          this.stamps.set(f, now);
          onChange(f);
        }
      }
    }, everyMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/** Rebuilds the listener's SecureContext when its files change; counts and logs each attempt. */
export function watchTlsFiles(
  t: MqttTlsOptions,
  everyMs: number,
  apply: (files: TlsOptions) => void,
  counters: { tlsReloads: number; tlsReloadErrors: number },
  log: Logger,
): FileWatch {
  const files = [t.certFile, t.keyFile, ...(t.caFile ? [t.caFile] : [])];
  return new FileWatch(files, everyMs, (changed) => {
    try {
      apply(loadTlsOptions(t));
      counters.tlsReloads++;
      log.info({ changed }, 'mqtt tls certificate reloaded: new connections use it');
    } catch (err) {
      counters.tlsReloadErrors++;
      log.error(
        { changed, err: (err as Error).message },
        'mqtt tls certificate not reloaded: keeping the old one',
      );
    }
  });
}
