// The southbound CoAP client: follows the configured resources of every device (RFC 7641
// observe, or GET polling) into the journal, and sends commands to devices (Gateway.Command).

import type { Logger } from '../../core/logger.ts';
import {
  CommandError,
  type CommandRequest,
  type CommandResponse,
  type CommandTarget,
  type RecordAppender,
  type Source,
} from '../../core/pipeline.ts';
import type { RecordInput } from '../../core/record.ts';
import {
  CODE_POST,
  CODE_PUT,
  type CoapMessage,
  codeString,
  OPT_CONTENT_FORMAT,
  pathOptions,
  uintOption,
  uintValue,
} from './codec.ts';
import { formatOf, mediaTypeOf } from './content-format.ts';
import { CoapEndpoint, CoapTimeoutError } from './endpoint.ts';
import { type DeviceSpec, ResourceRunner, type ResourceSpec, type ResourceState } from './resource-runner.ts';

export interface CoapDeviceOptions extends DeviceSpec {
  url: string;
  psk?: { identity: string; key: string };
  resources: ResourceSpec[];
}

export interface ResourceStatus {
  device: string;
  resource: string;
  topic: string;
  state: ResourceState;
  notifications: number;
  errors: number;
  lastNotificationAt: number | null;
  lastError: string | null;
}

export interface CoapObserverCounters {
  /** Representations received (2.xx notifications and poll responses), all devices. */
  received: number;
  /** Of them, refused by the journal (full under `reject`, write failure). */
  refused: number;
  /** Failed registrations, polls and error notifications. */
  readonly errors: number;
  readonly resources: ResourceStatus[];
}

interface Device {
  spec: CoapDeviceOptions;
  endpoint: CoapEndpoint;
  runners: ResourceRunner[];
}

const METHODS: Record<string, number> = { '': CODE_PUT, PUT: CODE_PUT, POST: CODE_POST };

function onAppended(err: Error | null, _seq: number, source: CoapObserverSource): void {
  if (err) source.counters.refused++;
}

export class CoapObserverSource implements Source, CommandTarget {
  readonly name = 'coap-observer';
  readonly counters: CoapObserverCounters;
  private readonly devices = new Map<string, Device>();
  private readonly appender: RecordAppender;
  private readonly log: Logger;

  /** No I/O here: endpoints open their sockets on first use. */
  constructor(devices: CoapDeviceOptions[], appender: RecordAppender, log: Logger) {
    this.appender = appender;
    this.log = log;
    for (const spec of devices) {
      const endpoint = new CoapEndpoint({ url: new URL(spec.url), psk: spec.psk, log });
      const runners = spec.resources.map((r) => new ResourceRunner(spec, r, endpoint, this.deliver, log));
      this.devices.set(spec.name, { spec, endpoint, runners });
    }
    const all = () => [...this.devices.values()].flatMap((d) => d.runners);
    this.counters = {
      received: 0,
      refused: 0,
      get errors(): number {
        return all().reduce((n, r) => n + r.errors, 0);
      },
      // A getter so /v1/status (JSON) shows the live states.
      get resources(): ResourceStatus[] {
        return all().map((r) => ({
          device: r.device.name,
          resource: r.spec.path,
          topic: r.spec.topic,
          state: r.state,
          notifications: r.notifications,
          errors: r.errors,
          lastNotificationAt: r.lastNotificationAt,
          lastError: r.lastError,
        }));
      },
    };
  }

  /**
   * Starts following every resource and resolves at once: devices are reached in the
   * background, so one that is down delays neither start-up nor any other device.
   */
  async start(): Promise<void> {
    for (const d of this.devices.values()) {
      // A DTLS session that ends drops every observation on it: register again now.
      d.endpoint.onLost((err) => {
        this.log.warn({ device: d.spec.name, err: err.message }, 'coap device session lost');
        for (const r of d.runners) r.reRegister();
      });
      for (const r of d.runners) r.start();
    }
    this.log.info(
      {
        devices: [...this.devices.keys()],
        resources: [...this.devices.values()].reduce((n, d) => n + d.runners.length, 0),
      },
      'coap observer started',
    );
  }

  async stop(): Promise<void> {
    const devices = [...this.devices.values()];
    // Bounded: a send completes or fails at once (UDP, or DTLS over UDP).
    await Promise.all(devices.flatMap((d) => d.runners.map((r) => r.stop())));
    for (const d of devices) d.endpoint.close();
  }

  addresses(): Record<string, string | number> {
    return { devices: this.devices.size };
  }

  async command(req: CommandRequest, signal?: AbortSignal): Promise<CommandResponse> {
    const d = this.devices.get(req.device);
    if (!d) throw new CommandError('not-found', `no CoAP device named ${JSON.stringify(req.device)}`);
    const code = METHODS[req.method.toUpperCase()];
    if (code === undefined)
      throw new CommandError(
        'invalid',
        `method: must be PUT or POST for a CoAP device (got ${JSON.stringify(req.method)})`,
      );
    if (!/^\/[^?#\s]*$/.test(req.target))
      throw new CommandError(
        'invalid',
        `target: must be an absolute resource path such as /led (got ${JSON.stringify(req.target)})`,
      );
    const format = formatOf(req.contentType);
    if (format === null)
      throw new CommandError(
        'invalid',
        `content_type: unknown media type ${JSON.stringify(req.contentType)} (use a Content-Format number)`,
      );
    const options = pathOptions(req.target);
    if (format !== undefined) options.push({ number: OPT_CONTENT_FORMAT, value: uintValue(format) });
    const timeoutMs = req.timeoutMs > 0 ? req.timeoutMs : d.spec.timeoutMs;
    let res: CoapMessage;
    try {
      res = await d.endpoint.request({ code, options, payload: req.payload, timeoutMs, signal });
    } catch (err) {
      if (err instanceof CoapTimeoutError)
        throw new CommandError('deadline', `device ${req.device} did not answer within ${timeoutMs} ms`);
      throw new CommandError('unavailable', `device ${req.device}: ${(err as Error).message}`);
    }
    return {
      code: codeString(res.code),
      payload: res.payload,
      contentType: mediaTypeOf(uintOption(res, OPT_CONTENT_FORMAT)),
    };
  }

  private readonly deliver = (runner: ResourceRunner, msg: CoapMessage): void => {
    this.counters.received++;
    const rec: RecordInput = {
      ts: Date.now(),
      source: 'coap',
      device: runner.device.name,
      topic: runner.spec.topic,
      payload: msg.payload,
      contentType: mediaTypeOf(uintOption(msg, OPT_CONTENT_FORMAT)),
    };
    // Fire-and-forget, like MQTT QoS 0: the device waits for no ack of ours beyond the CoAP one.
    this.appender.append(rec, onAppended, this);
  };
}
