// One observed or polled resource of one device: its own timers, state and backoff, so a
// resource that fails never holds up another.

import { backoffDelay } from '../../core/backoff.ts';
import type { Logger } from '../../core/logger.ts';
import {
  CODE_GET,
  type CoapMessage,
  codeString,
  OPT_MAX_AGE,
  OPT_OBSERVE,
  pathOptions,
  uintOption,
  uintValue,
} from './codec.ts';
import type { CoapEndpoint } from './endpoint.ts';

export type ResourceState = 'starting' | 'observing' | 'polling' | 'retrying' | 'stopped';

export interface ResourceSpec {
  path: string;
  topic: string;
  observe: boolean;
  pollIntervalMs?: number;
}

export interface DeviceSpec {
  name: string;
  timeoutMs: number;
  retry: { minMs: number; maxMs: number };
}

/** What the runner hands a 2.xx representation to (the source appends it to the journal). */
export type Deliver = (runner: ResourceRunner, msg: CoapMessage) => void;

// RFC 7252 §5.10.5: a representation without Max-Age is fresh for 60 s. RFC 7641 §3.3.1: once
// the latest notification is no longer fresh, the client cannot tell whether the observation
// still stands (a device that rebooted forgot it, silently) and re-registers.
const DEFAULT_MAX_AGE_S = 60;
// RFC 7641 §3.4: notifications may be reordered; one is newer if its Observe number is ahead
// by less than 2^23 (mod 2^24), or if it came more than 128 s after the last one.
const OBSERVE_WINDOW = 2 ** 23;
const REORDER_S = 128;

export class ResourceRunner {
  readonly device: DeviceSpec;
  readonly spec: ResourceSpec;
  state: ResourceState = 'starting';
  notifications = 0;
  errors = 0;
  lastNotificationAt: number | null = null;
  lastError: string | null = null;
  /** Stale or duplicate notifications dropped (RFC 7641 §3.4). */
  reordered = 0;
  private readonly endpoint: CoapEndpoint;
  private readonly deliver: Deliver;
  private readonly log: Logger;
  private readonly token: Buffer;
  private timer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private lastObserve: number | null = null;
  private lastObserveAt = 0;
  private stopped = false;

  constructor(device: DeviceSpec, spec: ResourceSpec, endpoint: CoapEndpoint, deliver: Deliver, log: Logger) {
    this.device = device;
    this.spec = spec;
    this.endpoint = endpoint;
    this.deliver = deliver;
    this.log = log;
    // One token for the resource's life: a re-registration with the same token replaces the
    // device's entry rather than adding one (RFC 7641 §3.3.1, §4.1).
    this.token = endpoint.newToken();
  }

  start(): void {
    if (this.spec.observe) this.endpoint.listen(this.token, (msg) => this.onNotification(msg));
    this.schedule(0);
  }

  /** The observation is known to be gone (the secure session ended): register again now. */
  reRegister(): void {
    if (this.spec.observe && this.state === 'observing') this.schedule(0);
  }

  /** Resolves once a cancellation, if one is due, has been sent. */
  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    let sent = Promise.resolve();
    if (this.spec.observe && this.state === 'observing') {
      // RFC 7641 §3.6: cancel explicitly (GET with Observe = 1) rather than leave the device
      // notifying a gateway that is gone until it gets a RST.
      sent = this.endpoint.sendNonConfirmable(CODE_GET, this.token, [
        { number: OPT_OBSERVE, value: uintValue(1) },
        ...pathOptions(this.spec.path),
      ]);
    }
    this.endpoint.unlisten(this.token);
    this.setState('stopped');
    return sent;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.attemptOnce().catch((err) => this.failed(err as Error));
    }, ms);
  }

  private async attemptOnce(): Promise<void> {
    const options = pathOptions(this.spec.path);
    if (this.spec.observe) options.push({ number: OPT_OBSERVE, value: uintValue(0) });
    const res = await this.endpoint.request({
      code: CODE_GET,
      options,
      token: this.spec.observe ? this.token : undefined,
      timeoutMs: this.device.timeoutMs,
    });
    if (this.stopped) return;
    if (res.code >> 5 !== 2) {
      this.failed(new Error(`the device answered ${codeString(res.code)}`));
      return;
    }
    this.attempt = 0;
    const observe = uintOption(res, OPT_OBSERVE);
    this.lastObserve = observe ?? null;
    this.lastObserveAt = Date.now();
    this.accept(res);
    if (!this.spec.observe) {
      this.setState('polling');
      this.schedule(this.spec.pollIntervalMs ?? this.device.retry.maxMs);
    } else if (observe === undefined) {
      // §3.2: no Observe option in the response: the device did not add us as an observer (the
      // resource is not observable). Ask again once the representation is stale.
      this.setState('polling');
      this.schedule(this.spec.pollIntervalMs ?? this.freshnessMs(res));
    } else {
      this.setState('observing');
      this.schedule(this.freshnessMs(res));
    }
  }

  private onNotification(msg: CoapMessage): void {
    if (this.stopped) return;
    if (msg.code >> 5 !== 2) {
      // §3.2: a notification with an error code ends the observation.
      this.failed(new Error(`the device ended the observation with ${codeString(msg.code)}`));
      return;
    }
    const observe = uintOption(msg, OPT_OBSERVE);
    const now = Date.now();
    if (observe !== undefined && this.lastObserve !== null && !this.isNewer(observe, now)) {
      this.reordered++;
      return;
    }
    this.lastObserve = observe ?? null;
    this.lastObserveAt = now;
    this.attempt = 0;
    this.accept(msg);
    if (this.state !== 'observing') this.setState('observing');
    // Fresh again: push the re-registration out (§3.3.1).
    this.schedule(this.freshnessMs(msg));
  }

  private isNewer(v2: number, now: number): boolean {
    const v1 = this.lastObserve as number;
    return (
      (v1 < v2 && v2 - v1 < OBSERVE_WINDOW) ||
      (v1 > v2 && v1 - v2 > OBSERVE_WINDOW) ||
      now > this.lastObserveAt + REORDER_S * 1000
    );
  }

  private freshnessMs(msg: CoapMessage): number {
    const maxAge = uintOption(msg, OPT_MAX_AGE) ?? DEFAULT_MAX_AGE_S;
    // A little past Max-Age, so a device that notifies exactly at Max-Age is not re-registered.
    return maxAge * 1000 + Math.min(this.device.timeoutMs, 5_000);
  }

  private accept(msg: CoapMessage): void {
    this.notifications++;
    this.lastNotificationAt = Date.now();
    this.deliver(this, msg);
  }

  private failed(err: Error): void {
    if (this.stopped) return;
    this.errors++;
    this.lastError = err.message;
    const delay = backoffDelay(this.device.retry, this.attempt++);
    if (this.state !== 'retrying') {
      // One line per state change, never per attempt.
      this.log.warn(
        {
          device: this.device.name,
          resource: this.spec.path,
          err: err.message,
          retryInMs: Math.round(delay),
        },
        'coap resource unavailable: retrying',
      );
    }
    this.setState('retrying');
    this.schedule(delay);
  }

  private setState(state: ResourceState): void {
    if (state === this.state) return;
    const was = this.state;
    this.state = state;
    if ((state === 'observing' || state === 'polling') && was === 'retrying') {
      this.log.info({ device: this.device.name, resource: this.spec.path, state }, 'coap resource back');
    }
  }
}
