import type { Logger } from './logger.ts';
import type { RecordInput, StoredRecord } from './record.ts';
import type { TlsReloadCounters } from './tls-files.ts';

/**
 * Called once a record is committed (`err` null, `seq` its journal sequence) or refused (`err`
 * set: journal full under `reject`, write failure, closed). One named function per source is
 * passed with a small state object, so the hot path allocates no closure per message.
 */
export type AppendCallback<S> = (err: Error | null, seq: number, state: S) => void;

/** What a source writes to: the journal, seen through the only call a source needs. */
export interface RecordAppender {
  /** Queues `rec` for the next group commit. `cb` runs after the commit; pass null for fire-and-forget. */
  append<S>(rec: RecordInput, cb: AppendCallback<S> | null, state: S): void;
  /**
   * True while too much waits for commit. A source then stops reading its inputs (leaving
   * back-pressure to TCP and the publishers) until `whenUnsaturated` calls back.
   */
  readonly saturated: boolean;
  whenUnsaturated(cb: () => void): void;
}

/**
 * A source of records (MQTT broker, CoAP server, Modbus poller).
 *
 * Lifecycle: the constructor does no I/O; `start()` binds listeners or begins polling and
 * resolves when the source is ready to accept data; `stop()` stops intake (closes listeners,
 * refuses new messages) and resolves when no more appends will come from it.
 */
export interface Source {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Bound addresses, for logs and tests that listen on port 0. */
  addresses(): Record<string, string | number>;
}

/** A batch handed to a sink: records in journal order, all matching the sink's routes. */
export interface OutboundBatch {
  /** Journal epoch: record id = `${epoch}-${seq}`. */
  epoch: string;
  records: readonly StoredRecord[];
}

/**
 * An upstream destination. `send` resolves when the upstream acknowledged the whole batch; it
 * rejects with a `SinkSendError` (retryable or not) otherwise, and must give up when `signal`
 * aborts (the dispatcher's deadline or shutdown). The dispatcher owns ordering, batching, retry
 * and cursors; a sink turns a batch into upstream calls (one, or several in order when the
 * upstream's message limit needs it: then a failure says in `acked` how many records at the
 * front were already acknowledged, and a final one in `refused` how many it concerns).
 * Credentials refused by the upstream reject with a `SinkAuthError` (retryable).
 */
export interface Sink {
  readonly name: string;
  readonly type: string;
  send(batch: OutboundBatch, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
  /** Certificate files taken into use and refused since start, for a sink that follows them. */
  readonly tlsReloads?: TlsReloadCounters | null;
}

/** What a sink factory gets besides its own config section (src/sinks/<type>/factory.ts). */
export interface SinkContext {
  /** This gateway's node id (`node.id`). */
  nodeId: string;
  log: Logger;
}

/**
 * One read of the journal: records in seq order, and the seq the next read starts at (one past
 * the last seq examined, returned or skipped for a failed checksum). A reader is done with
 * everything below `next`, even when `records` is empty.
 */
export interface ReadBatch {
  records: StoredRecord[];
  next: number;
}

/**
 * The journal as a reader sees it (the gRPC Subscribe API): records by seq, named durable
 * cursors, and a 'commit' event after each group commit.
 */
export interface RecordLog {
  readonly epoch: string;
  readonly firstRetainedSeq: number;
  readonly lastCommittedSeq: number;
  readBatch(fromSeq: number, maxRecords: number, maxBytes: number): Promise<ReadBatch>;
  cursor(name: string): number | undefined;
  cursorNames(): string[];
  openCursor(name: string, initial?: number): Promise<number>;
  commitCursor(name: string, seq: number): Promise<void>;
  /** Forgets a cursor (at once in memory, then on disk), so it no longer holds back trimming. */
  removeCursor(name: string): Promise<void>;
  on(event: 'commit', listener: (lastSeq: number) => void): unknown;
  off(event: 'commit', listener: (lastSeq: number) => void): unknown;
}

/** Publishing into the embedded MQTT broker for devices (downlink commands). */
export interface Downlink {
  /** Resolves once the broker accepted the message for delivery to current subscribers. */
  publish(topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean): Promise<void>;
}

/**
 * A command to one southbound device (Gateway.Command): a CoAP PUT/POST to a resource path, or a
 * Modbus register write. `target` is the resource path (CoAP) or register name (Modbus).
 */
export interface CommandRequest {
  device: string;
  target: string;
  payload: Buffer;
  /** Media type of `payload` ("" for none); CoAP maps it to a Content-Format. */
  contentType: string;
  /** Protocol verb: CoAP PUT (the default, "") or POST. */
  method: string;
  /** 0 for the device's configured timeout. */
  timeoutMs: number;
}

export interface CommandResponse {
  /** The device's answer, e.g. "2.04" for CoAP. */
  code: string;
  payload: Buffer;
  contentType: string;
}

/**
 * Why a command failed; the gRPC API maps each to a status code. `forbidden`: the target exists
 * but the configuration does not allow writing it.
 */
export type CommandErrorKind = 'not-found' | 'invalid' | 'deadline' | 'unavailable' | 'forbidden';

export class CommandError extends Error {
  readonly kind: CommandErrorKind;
  constructor(kind: CommandErrorKind, message: string) {
    super(message);
    this.kind = kind;
    this.name = 'CommandError';
  }
}

/**
 * Devices that take commands. `command` resolves with the device's answer (whatever its code)
 * and rejects with a `CommandError`; it gives up when `signal` aborts (the caller's deadline).
 */
export interface CommandTarget {
  command(req: CommandRequest, signal?: AbortSignal): Promise<CommandResponse>;
}

/** Gateway.Command for every southbound protocol: each device name goes to the source that owns it. */
export class CommandRouter implements CommandTarget {
  private readonly targets = new Map<string, CommandTarget>();

  add(devices: Iterable<string>, target: CommandTarget): void {
    for (const d of devices) this.targets.set(d, target);
  }

  command(req: CommandRequest, signal?: AbortSignal): Promise<CommandResponse> {
    const target = this.targets.get(req.device);
    if (!target)
      return Promise.reject(new CommandError('not-found', `no device named ${JSON.stringify(req.device)}`));
    return target.command(req, signal);
  }
}
