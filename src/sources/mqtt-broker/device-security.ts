// Who a device is and what it may do (README: Securing device access): aedes' authenticate,
// authorizeSubscribe and authorizeForward hooks, and the ACL check the source's authorizePublish
// runs first. Identity: a verified client certificate's CN (or SAN) when the connection has one
// (mosquitto's use_identity_as_username: the CONNECT's user name and password are then not
// used); else the user name whose password matched the credentials file; else anonymous.

import { readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import type {
  AedesOptions,
  AedesPublishPacket,
  AuthenticateError,
  Client,
  PublishPacket,
  Subscription,
} from 'aedes';
import { type Logger, ThrottledLog } from '../../core/logger.ts';
import { ClientAcl, type ParsedAcl, parseAcl } from './acl.ts';
import { FileWatch } from './file-watch.ts';
import { PasswordFile } from './password-file.ts';

export interface SecurityOptions {
  passwordFile?: string;
  aclFile?: string;
  /** Connections without a verified client certificate are refused (at the TLS handshake). */
  requireClientCert: boolean;
}

export interface SecurityCounters {
  /** CONNECTs refused with CONNACK 4 (bad user name or password). */
  authBadCredentials: number;
  /** CONNECTs refused with CONNACK 5 (no credentials while anonymous access is off). */
  authNotAuthorized: number;
  /** CONNECTs refused with CONNACK 3 (server unavailable): too many password checks running. */
  authBusy: number;
  /** TLS connections refused: failed handshake (expired or unknown certificate), bad certificate. */
  tlsRefused: number;
  aclPublishDenied: number;
  aclSubscribeDenied: number;
}

/**
 * A denied PUBLISH is acknowledged and dropped, as mosquitto does (MQTT 3.1.1 has no negative
 * PUBACK). aedes publishes whatever authorizePublish lets through, so the packet goes on under
 * this topic, which no subscriber is ever forwarded (see `authorizeForward`) and a `#` filter
 * does not match [MQTT-4.7.2-1].
 */
export const DENIED_TOPIC = '$edgeferry/denied';

interface Identity {
  username: string | undefined;
  acl: ClientAcl | null;
  generation: number;
}

const SERVER_UNAVAILABLE = 3;
const BAD_CREDENTIALS = 4;
/**
 * Password checks running at once (0.1 s and 32 MiB each). Past it a CONNECT gets CONNACK 3 and
 * retries later: a flood of guesses costs the node a bounded amount of CPU and memory.
 */
const MAX_CHECKS = 32;
const NOT_AUTHORIZED = 5;

/** `EF_` codes are logged where they happen, not again as protocol errors (see the source). */
function refusal(returnCode: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode, code: 'EF_AUTH_REFUSED' }) as AuthenticateError;
}

export class DeviceSecurity {
  private readonly opts: SecurityOptions;
  private readonly counters: SecurityCounters;
  private readonly log: Logger;
  private passwords: PasswordFile | null = null;
  private acl: ParsedAcl | null = null;
  /** Bumped on every ACL reload: connected clients' rules are rebuilt on their next check. */
  private generation = 0;
  private readonly identities = new WeakMap<Client, Identity>();
  /** Verified certificate identities, by connection (set at the TLS handshake). */
  private readonly certIdentities = new WeakMap<object, string>();
  private readonly authLog = new ThrottledLog();
  private readonly aclLog = new ThrottledLog();
  private checking = 0;
  private watch: FileWatch | null = null;

  constructor(opts: SecurityOptions, counters: SecurityCounters, log: Logger) {
    this.opts = opts;
    this.counters = counters;
    this.log = log;
    if (opts.passwordFile) this.passwords = loadPasswords(opts.passwordFile);
    if (opts.aclFile) this.acl = loadAcl(opts.aclFile);
  }

  /** Anonymous access is off as soon as any authentication is configured. */
  get anonymousAllowed(): boolean {
    return this.opts.passwordFile === undefined && !this.opts.requireClientCert;
  }

  get active(): boolean {
    return !this.anonymousAllowed || this.acl !== null;
  }

  /**
   * aedes' hooks, when there is anything to check (the source chains `authorizeSubscribe` after
   * its limits, and wraps `authorizeForward`, which drops re-addressed publishes in any case).
   */
  hooks(): Pick<AedesOptions, 'authenticate'> {
    if (!this.active) return {};
    return { authenticate: this.authenticate };
  }

  watchFiles(everyMs: number): void {
    const files = [this.opts.passwordFile, this.opts.aclFile].filter((f) => f !== undefined);
    if (files.length > 0) this.watch = new FileWatch(files, everyMs, (f) => this.reload(f));
  }

  stop(): void {
    this.watch?.close();
  }

  /** Re-reads a changed credentials or ACL file; a broken one is refused and the old one kept. */
  reload(file: string): void {
    try {
      if (file === this.opts.passwordFile) this.passwords = loadPasswords(file);
      if (file === this.opts.aclFile) {
        this.acl = loadAcl(file);
        this.generation++;
      }
      this.log.info({ file }, 'mqtt security file reloaded');
    } catch (err) {
      this.log.error(
        { file, err: (err as Error).message },
        'mqtt security file not reloaded: keeping the old one',
      );
    }
  }

  setCertIdentity(socket: TLSSocket, identity: string): void {
    this.certIdentities.set(socket, identity);
  }

  readonly authenticate = (
    client: Client,
    username: string | undefined,
    password: Readonly<Buffer> | undefined,
    callback: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void => {
    const certIdentity = this.certIdentities.get(client.conn);
    if (certIdentity !== undefined) {
      this.accept(client, certIdentity);
      callback(null, true);
      return;
    }
    if (username === undefined || username === '') {
      if (this.anonymousAllowed) {
        this.accept(client, undefined);
        callback(null, true);
      } else callback(this.refuse(client, NOT_AUTHORIZED, 'no credentials'), false);
      return;
    }
    const passwords = this.passwords;
    if (passwords === null) {
      // A user name nobody can check is not an identity: anonymous, if that is allowed.
      if (this.anonymousAllowed) {
        this.accept(client, undefined);
        callback(null, true);
      } else callback(this.refuse(client, NOT_AUTHORIZED, 'no password file to check credentials'), false);
      return;
    }
    if (this.checking >= MAX_CHECKS) {
      callback(this.refuse(client, SERVER_UNAVAILABLE, 'too many password checks at once', username), false);
      return;
    }
    this.checking++;
    passwords.verify(username, Buffer.from(password ?? Buffer.alloc(0))).then(
      (ok) => {
        this.checking--;
        if (ok) {
          this.accept(client, username);
          callback(null, true);
        } else callback(this.refuse(client, BAD_CREDENTIALS, 'bad user name or password', username), false);
      },
      (err: Error) => {
        this.checking--;
        callback(this.refuse(client, NOT_AUTHORIZED, err.message, username), false);
      },
    );
  };

  private accept(client: Client, username: string | undefined): void {
    const acl = this.acl ? new ClientAcl(this.acl, username, client.id) : null;
    this.identities.set(client, { username, acl, generation: this.generation });
  }

  private refuse(client: Client, code: number, reason: string, username?: string): AuthenticateError {
    if (code === BAD_CREDENTIALS) this.counters.authBadCredentials++;
    else if (code === SERVER_UNAVAILABLE) this.counters.authBusy++;
    else this.counters.authNotAuthorized++;
    const suppressed = this.authLog.take();
    if (suppressed >= 0)
      this.log.warn(
        {
          client: client.id,
          username: username ?? null,
          remote: (client.conn as { remoteAddress?: string }).remoteAddress ?? null,
          reason,
          suppressed,
        },
        `mqtt connection refused: CONNACK ${code}`,
      );
    return refusal(code, reason);
  }

  private aclOf(client: Client | null): ClientAcl | null {
    if (!this.acl || !client) return null;
    const id = this.identities.get(client);
    if (!id) return null;
    if (id.generation !== this.generation) {
      id.acl = new ClientAcl(this.acl, id.username, client.id);
      id.generation = this.generation;
    }
    return id.acl;
  }

  /**
   * Whether a device may publish `packet`; a denied one is turned into a drop (see
   * DENIED_TOPIC), counted and logged (throttled). Wills pass here too.
   */
  mayPublish(client: Client | null, packet: PublishPacket): boolean {
    const acl = this.aclOf(client);
    if (acl === null || acl.mayPublish(packet.topic)) return true;
    this.counters.aclPublishDenied++;
    this.logDenied(client, 'publish', packet.topic);
    packet.topic = DENIED_TOPIC;
    packet.retain = false;
    return false;
  }

  readonly authorizeSubscribe = (
    client: Client,
    sub: Subscription,
    callback: (error: Error | null, subscription?: Subscription | null) => void,
  ): void => {
    const acl = this.aclOf(client);
    if (acl === null || acl.maySubscribe(sub.topic)) {
      callback(null, sub);
      return;
    }
    this.counters.aclSubscribeDenied++;
    this.logDenied(client, 'subscribe', sub.topic);
    // A null subscription is refused in the SUBACK (0x80) [MQTT-3.9.3], the others stand.
    callback(null, null);
  };

  /** Delivery: a subscription granted on `a/#` still gets nothing under a `deny a/secret` line. */
  readonly authorizeForward = (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null => {
    const acl = this.aclOf(client);
    return acl === null || acl.mayReceive(packet.topic) ? packet : null;
  };

  private logDenied(client: Client | null, action: string, topic: string): void {
    const suppressed = this.aclLog.take();
    if (suppressed < 0) return;
    this.log.warn(
      {
        client: client?.id ?? null,
        username: client ? (this.identities.get(client)?.username ?? null) : null,
        action,
        topic,
        suppressed,
      },
      `mqtt ${action} denied by the ACL`,
    );
  }
}

function loadPasswords(file: string): PasswordFile {
  return new PasswordFile(readFileSync(file, 'utf8'), file);
}

function loadAcl(file: string): ParsedAcl {
  return parseAcl(readFileSync(file, 'utf8'), file);
}
