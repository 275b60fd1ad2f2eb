import {
  experimental,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { CONSUMER_NAME, type ConsumerInfo } from '../../core/consumers.ts';
import type { Logger } from '../../core/logger.ts';
import {
  CommandError,
  type CommandErrorKind,
  type CommandResponse,
  type CommandTarget,
  type Downlink,
  type RecordLog,
} from '../../core/pipeline.ts';
import { TlsFileWatcher, type TlsMaterial } from '../../core/tls-files.ts';
import { TopicRouter, validateTopicFilter } from '../../core/topic-filter.ts';
import { Consumers, consumerCursor, type StreamLease } from './consumers.ts';
import { loadService } from './proto.ts';
import { Subscription } from './subscription.ts';

export interface GrpcServerTls {
  certFile: string;
  keyFile: string;
  /** When set, clients must present a certificate signed by this CA (mTLS). */
  caFile?: string;
}

export interface GrpcServerOptions {
  host: string;
  port: number;
  tls?: GrpcServerTls;
  /** Server keepalive: ping every connection this often, drop it when a ping is not answered. */
  keepalive?: { timeMs: number; timeoutMs: number };
  /** A durable consumer with no open stream and no Ack for this long is removed (default 1 day). */
  consumers?: { expireAfter: number };
  /** How often the TLS files are checked for new contents (default 10 s). */
  tlsReloadMs?: number;
  /** Bytes of records one Subscribe stream reads from the journal at once (default 1 MiB). */
  subscriberReadBytes?: number;
}

interface SubscribeRequest {
  filters: string[];
  start: 'START_UNSPECIFIED' | 'START_EARLIEST' | 'START_LATEST' | 'START_AT_SEQ';
  seq: number;
  consumer: string;
}

interface AckRequest {
  consumer: string;
  seq: number;
}

interface PublishRequest {
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
}

interface CommandRequestMessage {
  device: string;
  target: string;
  payload: Buffer;
  contentType: string;
  method: string;
  timeoutMs: number;
}

const COMMAND_STATUS: Record<CommandErrorKind, status> = {
  'not-found': status.NOT_FOUND,
  invalid: status.INVALID_ARGUMENT,
  deadline: status.DEADLINE_EXCEEDED,
  unavailable: status.UNAVAILABLE,
  forbidden: status.PERMISSION_DENIED,
};

interface ConsumerMessage {
  name: string;
  position: number;
  backlog: number;
  openStreams: number;
  lastActivityMs: number;
  expiresAtMs: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

function consumerMessage(c: ConsumerInfo): ConsumerMessage {
  return {
    name: c.name,
    position: c.position,
    backlog: c.backlog,
    openStreams: c.openStreams,
    lastActivityMs: c.lastActivityAt,
    expiresAtMs: c.expiresAt ?? 0,
  };
}

/** grpc-js' certificate provider interface over the files the watcher last accepted. */
class WatchedFiles implements experimental.CertificateProvider {
  private m: TlsMaterial = {};
  private readonly ca = new Set<experimental.CaCertificateUpdateListener>();
  private readonly identity = new Set<experimental.IdentityCertificateUpdateListener>();

  update(m: TlsMaterial): void {
    this.m = m;
    for (const l of this.identity) l(this.identityUpdate());
    for (const l of this.ca) l(this.caUpdate());
  }

  private identityUpdate() {
    return this.m.cert && this.m.key ? { certificate: this.m.cert, privateKey: this.m.key } : null;
  }

  private caUpdate() {
    return this.m.ca ? { caCertificate: this.m.ca } : null;
  }

  // grpc-js takes its first context from the listeners' first call, which must come after
  // `add` returns: its own watcher is registered only then (server-credentials.js _addWatcher).
  addCaCertificateListener(l: experimental.CaCertificateUpdateListener): void {
    this.ca.add(l);
    process.nextTick(() => this.ca.has(l) && l(this.caUpdate()));
  }

  removeCaCertificateListener(l: experimental.CaCertificateUpdateListener): void {
    this.ca.delete(l);
  }

  addIdentityCertificateListener(l: experimental.IdentityCertificateUpdateListener): void {
    this.identity.add(l);
    process.nextTick(() => this.identity.has(l) && l(this.identityUpdate()));
  }

  removeIdentityCertificateListener(l: experimental.IdentityCertificateUpdateListener): void {
    this.identity.delete(l);
  }
}

/** A gRPC status error as grpc-js expects it from a handler. */
function grpcError(code: status, details: string) {
  return Object.assign(new Error(details), { code, details });
}

/**
 * The in-cluster API: `edgeferry.v1.Gateway` (Subscribe with replay, Ack for durable consumers,
 * Publish downlinks) and the standard `grpc.health.v1.Health`, NOT_SERVING until the gateway
 * reports ready.
 */
export class GatewayGrpcServer {
  readonly subscriptions = new Set<Subscription>();
  /** The durable consumers: listed and deleted over gRPC and the admin HTTP API, expired here. */
  readonly consumers: Consumers;
  private readonly server: Server;
  private readonly opts: GrpcServerOptions;
  private readonly log: Logger;
  private records: RecordLog | null = null;
  private downlink: Downlink | null = null;
  private commands: CommandTarget | null = null;
  private readonly health = new HealthImplementation({
    '': 'NOT_SERVING',
    'edgeferry.v1.Gateway': 'NOT_SERVING',
  });
  private boundPort = 0;
  private tlsWatcher: TlsFileWatcher | null = null;

  /**
   * The server can start before the journal is open, so Kubernetes gRPC probes get an answer
   * (NOT_SERVING) during a long start-up such as waiting for a journal lock; `attach` supplies
   * the journal and broker when they are ready.
   */
  constructor(opts: GrpcServerOptions, log: Logger) {
    this.opts = opts;
    this.log = log;
    this.consumers = new Consumers(opts.consumers?.expireAfter ?? DAY_MS, log);
    this.server = new Server({
      'grpc.keepalive_time_ms': opts.keepalive?.timeMs ?? 20_000,
      'grpc.keepalive_timeout_ms': opts.keepalive?.timeoutMs ?? 10_000,
      // Clients may ping as often as every 5 s without being sent GOAWAY for it.
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    });
    const base = loadService('edgeferry/v1/gateway.proto', 'Gateway');
    // Subscribe writes ready-made Record bytes (stored body + seq/id prefix): no re-encoding.
    const def: ServiceDefinition = {
      ...base,
      Subscribe: { ...base.Subscribe, responseSerialize: (b: Buffer) => b },
    };
    this.server.addService(def, {
      Subscribe: this.subscribe,
      Ack: this.ack,
      Publish: this.publish,
      ListConsumers: this.listConsumers,
      DeleteConsumer: this.deleteConsumer,
      Command: this.command,
    });
    this.health.addToServer(this.server);
  }

  async start(): Promise<void> {
    const creds = this.credentials();
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${this.opts.host}:${this.opts.port}`, creds, (err, port) =>
        err ? reject(err) : resolve(port),
      );
    });
    this.log.info(
      { ...this.addresses(), tls: Boolean(this.opts.tls), mtls: Boolean(this.opts.tls?.caFile) },
      'grpc listening',
    );
  }

  addresses(): Record<string, string | number> {
    return { host: this.opts.host, port: this.boundPort };
  }

  attach(records: RecordLog, downlink: Downlink | null, commands: CommandTarget | null = null): void {
    this.records = records;
    this.downlink = downlink;
    this.commands = commands;
    this.consumers.attach(records);
  }

  setServing(serving: boolean): void {
    const s = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', s);
    this.health.setStatus('edgeferry.v1.Gateway', s);
  }

  async stop(graceMs = 2_000): Promise<void> {
    this.tlsWatcher?.stop();
    this.setServing(false);
    this.consumers.stop();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
      // Streams never end by themselves: end them so tryShutdown can finish.
      for (const s of this.subscriptions) s.end();
    });
  }

  /**
   * Rotated files reach new connections through grpc-js' certificate-provider credentials: the
   * secure context of its HTTP/2 server is replaced, established connections keep theirs. The
   * watcher validates the files first: grpc-js, handed a context it cannot build, would refuse
   * every new connection.
   */
  private credentials(): ServerCredentials {
    const tls = this.opts.tls;
    if (!tls) return ServerCredentials.createInsecure();
    const provider = new WatchedFiles();
    const watcher = new TlsFileWatcher(tls, 'grpc server', this.log, (m) => provider.update(m));
    provider.update(watcher.current);
    this.tlsWatcher = watcher;
    watcher.start(this.opts.tlsReloadMs);
    return experimental.createCertificateProviderServerCredentials(
      provider,
      tls.caFile ? provider : null,
      Boolean(tls.caFile),
    );
  }

  /** New TLS files taken into use and refused since start. */
  get tlsReloads(): { reloads: number; reloadErrors: number } | null {
    return this.tlsWatcher?.counters ?? null;
  }

  private readonly subscribe = (call: ServerWritableStream<SubscribeRequest, Buffer>): void => {
    this.startSubscription(call).catch((err) => {
      const e = err as { code?: number | string; details?: string; message: string; retryable?: boolean };
      if (typeof e.code === 'number') {
        call.emit('error', e);
        return;
      }
      // A journal that cannot write now (recovering after a failed write) is worth a retry.
      if (e.retryable === true) {
        call.emit('error', grpcError(status.UNAVAILABLE, e.message));
        return;
      }
      this.log.error({ err: e.message }, 'subscribe stream failed');
      call.emit('error', grpcError(status.INTERNAL, e.message));
    });
  };

  private async startSubscription(call: ServerWritableStream<SubscribeRequest, Buffer>): Promise<void> {
    const req = call.request;
    const filters = req.filters.length > 0 ? req.filters : ['#'];
    for (const f of filters) {
      const problem = validateTopicFilter(f);
      if (problem) throw grpcError(status.INVALID_ARGUMENT, `filters: ${problem}`);
    }
    const log = this.records;
    if (!log) throw grpcError(status.UNAVAILABLE, 'the gateway is starting: journal not open yet');
    let after: number;
    switch (req.start) {
      case 'START_EARLIEST':
        after = log.firstRetainedSeq - 1;
        break;
      case 'START_AT_SEQ':
        after = Math.max(req.seq, 1) - 1;
        break;
      default:
        after = log.lastCommittedSeq;
    }
    let lease: StreamLease | null = null;
    if (req.consumer) {
      if (!CONSUMER_NAME.test(req.consumer))
        throw grpcError(status.INVALID_ARGUMENT, 'consumer: must match [A-Za-z0-9_.-]{1,128}');
      // Held from before the cursor exists until the stream ends: the consumer cannot expire
      // meanwhile, and deleting it ends this stream.
      lease = await this.consumers.open(req.consumer);
      try {
        after = await log.openCursor(consumerCursor(req.consumer), after);
      } catch (err) {
        lease.release();
        throw err;
      }
      if (lease.revoked) {
        lease.release();
        throw lease.revoked;
      }
    }
    const sub = new Subscription(
      call as ServerWritableStream<unknown, Buffer>,
      log,
      new TopicRouter(filters),
      after,
      this.opts.subscriberReadBytes,
    );
    lease?.bind(sub);
    this.subscriptions.add(sub);
    this.log.info(
      { consumer: req.consumer || null, filters, after, peer: call.getPeer() },
      'subscriber connected',
    );
    try {
      await sub.run();
    } finally {
      lease?.release();
      this.subscriptions.delete(sub);
      this.log.info(
        {
          consumer: req.consumer || null,
          sent: sub.sent,
          gaps: sub.gaps,
          missed: sub.missed,
          ended: sub.endedWith?.message ?? null,
          peer: call.getPeer(),
        },
        'subscriber gone',
      );
    }
    if (sub.endedWith) throw sub.endedWith;
    call.end();
  }

  private readonly ack = (
    call: ServerUnaryCall<AckRequest, { seq: number }>,
    cb: sendUnaryData<{ seq: number }>,
  ): void => {
    const { consumer, seq } = call.request;
    const records = this.records;
    if (!records) {
      cb(grpcError(status.UNAVAILABLE, 'the gateway is starting: journal not open yet'));
      return;
    }
    const name = consumerCursor(consumer);
    const current = records.cursor(name);
    if (current === undefined) {
      cb(
        grpcError(
          status.NOT_FOUND,
          `no durable consumer named ${JSON.stringify(consumer)}: Subscribe with it first`,
        ),
      );
      return;
    }
    if (seq > records.lastCommittedSeq) {
      cb(
        grpcError(
          status.INVALID_ARGUMENT,
          `seq ${seq} is beyond the newest committed record ${records.lastCommittedSeq}`,
        ),
      );
      return;
    }
    this.consumers.acked(consumer);
    records.commitCursor(name, seq).then(
      () => cb(null, { seq: records.cursor(name) ?? seq }),
      (err) => cb(grpcError(status.UNAVAILABLE, (err as Error).message)),
    );
  };

  private readonly listConsumers = (
    _call: ServerUnaryCall<object, { consumers: ConsumerMessage[] }>,
    cb: sendUnaryData<{ consumers: ConsumerMessage[] }>,
  ): void => {
    if (!this.records) {
      cb(grpcError(status.UNAVAILABLE, 'the gateway is starting: journal not open yet'));
      return;
    }
    cb(null, { consumers: this.consumers.list().map(consumerMessage) });
  };

  private readonly deleteConsumer = (
    call: ServerUnaryCall<{ name: string }, { endedStreams: number }>,
    cb: sendUnaryData<{ endedStreams: number }>,
  ): void => {
    const { name } = call.request;
    if (!this.records) {
      cb(grpcError(status.UNAVAILABLE, 'the gateway is starting: journal not open yet'));
      return;
    }
    if (!CONSUMER_NAME.test(name)) {
      cb(grpcError(status.INVALID_ARGUMENT, 'name: must match [A-Za-z0-9_.-]{1,128}'));
      return;
    }
    this.consumers.delete(name).then(
      (res) =>
        res
          ? cb(null, res)
          : cb(grpcError(status.NOT_FOUND, `no durable consumer named ${JSON.stringify(name)}`)),
      (err) => cb(grpcError(status.UNAVAILABLE, (err as Error).message)),
    );
  };

  private readonly publish = (
    call: ServerUnaryCall<PublishRequest, object>,
    cb: sendUnaryData<object>,
  ): void => {
    const { topic, payload, qos, retain } = call.request;
    if (!this.downlink) {
      cb(grpcError(status.UNAVAILABLE, 'the MQTT broker is not running on this gateway'));
      return;
    }
    if (!topic || topic.includes('+') || topic.includes('#')) {
      cb(grpcError(status.INVALID_ARGUMENT, 'topic: must be non-empty and contain no wildcards'));
      return;
    }
    if (qos !== 0 && qos !== 1 && qos !== 2) {
      cb(grpcError(status.INVALID_ARGUMENT, `qos: must be 0, 1 or 2 (got ${qos})`));
      return;
    }
    this.downlink.publish(topic, payload, qos, retain).then(
      () => cb(null, {}),
      (err) => cb(grpcError(status.UNAVAILABLE, (err as Error).message)),
    );
  };

  private readonly command = (
    call: ServerUnaryCall<CommandRequestMessage, CommandResponse>,
    cb: sendUnaryData<CommandResponse>,
  ): void => {
    const req = call.request;
    if (!this.commands) {
      cb(
        grpcError(
          status.NOT_FOUND,
          `no device named ${JSON.stringify(req.device)}: no devices are configured`,
        ),
      );
      return;
    }
    // The call's own deadline bounds the device exchange too, when it is the shorter one.
    let timeoutMs = req.timeoutMs;
    const deadline = call.getDeadline();
    const left = deadline instanceof Date ? deadline.getTime() - Date.now() : Number.POSITIVE_INFINITY;
    if (Number.isFinite(left)) timeoutMs = Math.max(1, timeoutMs > 0 ? Math.min(timeoutMs, left) : left);
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    this.commands
      .command(
        {
          device: req.device,
          target: req.target,
          payload: req.payload,
          contentType: req.contentType,
          method: req.method,
          timeoutMs: Math.floor(timeoutMs),
        },
        ac.signal,
      )
      .then(
        (res) => cb(null, res),
        (err) =>
          cb(
            err instanceof CommandError
              ? grpcError(COMMAND_STATUS[err.kind], err.message)
              : grpcError(status.INTERNAL, (err as Error).message),
          ),
      );
  };
}
