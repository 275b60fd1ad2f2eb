// The broker's TLS listener: its server options from the certificate files, the identity a
// verified client certificate carries, and the files' rotation. A change of the files builds a
// new SecureContext that new handshakes use (`server.setSecureContext`) while established
// connections keep theirs. A new file that does not load (a half-written PEM, a key that does
// not match the certificate, an expired certificate) is refused with an error line, and the old
// context stays.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import {
  createSecureContext,
  createServer,
  type PeerCertificate,
  type Server,
  type TLSSocket,
  type TlsOptions,
} from 'node:tls';
import { type Logger, ThrottledLog } from '../../core/logger.ts';
import { FileWatch } from './file-watch.ts';

export interface MqttTlsOptions {
  host?: string;
  port: number;
  certFile: string;
  keyFile: string;
  caFile?: string;
  requireClientCert: boolean;
  identity: 'cn' | 'san-dns' | 'san-uri';
}

export interface TlsCounters {
  /** Connections refused: failed handshake (expired or unknown certificate), bad certificate. */
  tlsRefused: number;
  tlsReloads: number;
  tlsReloadErrors: number;
}

/** Reads the files and checks that they load, as a server would; throws on any problem. */
export function loadTlsOptions(t: MqttTlsOptions): TlsOptions {
  const cert = readFileSync(t.certFile);
  const key = readFileSync(t.keyFile);
  const ca = t.caFile ? readFileSync(t.caFile) : undefined;
  // Throws on a malformed PEM or a key that does not match the certificate.
  createSecureContext({ cert, key, ca });
  return { cert, key, ca };
}

/** Why the server certificate is expired; null while it is valid. */
export function expired(t: MqttTlsOptions, files: TlsOptions): string | null {
  const leaf = new X509Certificate(files.cert as Buffer);
  return Date.parse(leaf.validTo) < Date.now() ? `${t.certFile}: certificate expired ${leaf.validTo}` : null;
}

function serverOptions(t: MqttTlsOptions, files: TlsOptions): TlsOptions {
  return {
    ...files,
    // With a CA, a client certificate is asked for; a connection that presents none is refused
    // only with requireClientCert (a bad one that is presented is refused in `accept`).
    requestCert: t.caFile !== undefined,
    rejectUnauthorized: t.requireClientCert,
    // A peer that opens a connection and never finishes the handshake holds a socket: 10 s.
    handshakeTimeout: 10_000,
    minVersion: 'TLSv1.2',
  };
}

/**
 * The identity of a verified client certificate, `null` when the connection has none, or
 * `undefined` when it presented one that failed verification or lacks the field (to be closed).
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

export class TlsListener {
  readonly server: Server;
  private readonly t: MqttTlsOptions;
  private readonly counters: TlsCounters;
  private readonly log: Logger;
  private readonly refusedLog = new ThrottledLog();
  /** Connections still in their handshake, closed on stop too. */
  private readonly handshaking = new Set<Socket>();
  private watch: FileWatch | null = null;

  /**
   * `onConnection` gets each verified connection with its certificate's identity (null: none),
   * to be wired exactly as a TCP one (a TLSSocket is a net.Socket).
   */
  constructor(
    t: MqttTlsOptions,
    files: TlsOptions,
    counters: TlsCounters,
    log: Logger,
    onConnection: (socket: TLSSocket, identity: string | null) => void,
  ) {
    this.t = t;
    this.counters = counters;
    this.log = log;
    const stale = expired(t, files);
    // Started all the same: refusing to start would take the plain listener, CoAP and Modbus
    // down with it, and a renewed certificate is picked up without a restart.
    if (stale)
      log.error({ err: stale }, 'mqtt tls certificate expired: devices that check it will refuse it');
    this.server = createServer(serverOptions(t, files), (socket) => {
      const identity = peerIdentity(socket, t.identity);
      if (identity === undefined) {
        const why = socket.authorizationError
          ? String(socket.authorizationError)
          : `no ${t.identity} in the certificate`;
        this.refused(new Error(why), socket);
        socket.destroy();
        return;
      }
      onConnection(socket, identity);
    });
    this.server.on('tlsClientError', this.refused);
    this.server.on('connection', (raw: Socket) => {
      this.handshaking.add(raw);
      raw.once('close', () => this.handshaking.delete(raw));
    });
  }

  /** Watches the files every `everyMs` from now on. */
  watchFiles(everyMs: number): void {
    const t = this.t;
    const files = [t.certFile, t.keyFile, ...(t.caFile ? [t.caFile] : [])];
    this.watch = new FileWatch(files, everyMs, (changed) => {
      try {
        const loaded = loadTlsOptions(t);
        // An expired replacement is a renewal gone wrong: the one in use may still be valid.
        const why = expired(t, loaded);
        if (why) throw new Error(why);
        this.server.setSecureContext(serverOptions(t, loaded));
        this.counters.tlsReloads++;
        this.log.info({ changed }, 'mqtt tls certificate reloaded: new connections use it');
      } catch (err) {
        this.counters.tlsReloadErrors++;
        this.log.error(
          { changed, err: (err as Error).message },
          'mqtt tls certificate not reloaded: keeping the old one',
        );
      }
    });
  }

  /** Stops watching and drops the connections still in their handshake (the others are the broker's). */
  stop(): void {
    this.watch?.close();
    for (const s of this.handshaking) s.destroy();
  }

  private readonly refused = (err: Error, socket: TLSSocket): void => {
    this.counters.tlsRefused++;
    const suppressed = this.refusedLog.take();
    if (suppressed >= 0)
      this.log.warn(
        { remote: socket.remoteAddress ?? null, err: err.message, suppressed },
        'mqtt tls connection refused',
      );
  };
}
