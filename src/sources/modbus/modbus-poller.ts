// The Modbus TCP source: polls every configured PLC into the journal, and writes registers for
// Gateway.Command. Devices at the same host:port (unit ids behind one Modbus TCP gateway) share
// one connection; every other device has its own, so a slow or dead PLC delays only the devices
// behind its own address.

import type { Logger } from '../../core/logger.ts';
import {
  CommandError,
  type CommandRequest,
  type CommandResponse,
  type CommandTarget,
  type RecordAppender,
  type Source,
} from '../../core/pipeline.ts';
import type { ModbusConfig, ModbusDeviceConfig, ModbusRegisterConfig } from './config.ts';
import { DevicePoller } from './device-poller.ts';
import { EXCEPTION_NAMES, ModbusConnection, ModbusRequestError } from './modbus-connection.ts';
import { encodeCoil, encodeRegister, RegisterValueError } from './register-codec.ts';

export interface ModbusCounters {
  /** Records made from polls, all devices. */
  readonly received: number;
  /** Of them, refused by the journal (full under `reject`, write failure). */
  readonly refused: number;
  readonly devices: ReturnType<DevicePoller['status']>[];
}

const JSON_TYPE = 'application/json';

export class ModbusPoller implements Source, CommandTarget {
  readonly name = 'modbus';
  readonly counters: ModbusCounters;
  readonly devices = new Map<string, DevicePoller>();
  private readonly connections = new Map<string, ModbusConnection>();
  private readonly log: Logger;

  /** No I/O here: connections open in start(). */
  constructor(cfg: ModbusConfig, appender: RecordAppender, log: Logger) {
    this.log = log;
    for (const d of cfg.devices) {
      const key = `${d.host}:${d.port}`;
      let conn = this.connections.get(key);
      if (!conn) {
        // The longest timeout of the devices behind it: a connect is no quicker than a request.
        const connectTimeoutMs = Math.max(
          ...cfg.devices.filter((x) => `${x.host}:${x.port}` === key).map((x) => x.timeoutMs),
        );
        conn = new ModbusConnection({ host: d.host, port: d.port, retry: cfg.retry, connectTimeoutMs, log });
        this.connections.set(key, conn);
      }
      this.devices.set(d.name, new DevicePoller(d, conn, appender, log));
    }
    const all = () => [...this.devices.values()];
    this.counters = {
      get received() {
        return all().reduce((n, d) => n + d.records, 0);
      },
      get refused() {
        return all().reduce((n, d) => n + d.refused, 0);
      },
      // A getter so /v1/status (JSON) shows the live states.
      get devices() {
        return all().map((d) => d.status());
      },
    };
  }

  /**
   * Connects and starts polling, and resolves at once: PLCs are reached in the background, so
   * one that is down delays neither start-up nor any other device.
   */
  async start(): Promise<void> {
    for (const c of this.connections.values()) c.start();
    // Devices with the same interval are spread over it, not fired in one burst.
    const byInterval = new Map<number, DevicePoller[]>();
    for (const d of this.devices.values()) {
      const list = byInterval.get(d.cfg.intervalMs) ?? [];
      list.push(d);
      byInterval.set(d.cfg.intervalMs, list);
    }
    for (const [interval, list] of byInterval)
      list.forEach((d, i) => {
        d.start((i * interval) / list.length);
      });
    this.log.info(
      { devices: this.devices.size, connections: this.connections.size },
      'modbus poller started',
    );
  }

  async stop(): Promise<void> {
    const polls = [...this.devices.values()].map((d) => d.stop());
    // Fails the requests on the wire, so the polls above end now rather than at their timeouts.
    for (const c of this.connections.values()) c.stop();
    await Promise.all(polls);
  }

  addresses(): Record<string, string | number> {
    return { devices: this.devices.size, connections: this.connections.size };
  }

  /** Writes one register: `target` is its name, `payload` the value as JSON text. */
  async command(req: CommandRequest, signal?: AbortSignal): Promise<CommandResponse> {
    const device = this.devices.get(req.device);
    if (!device) throw new CommandError('not-found', `no Modbus device named ${JSON.stringify(req.device)}`);
    const cfg = device.cfg;
    const reg = cfg.registers.find((r) => r.name === req.target);
    if (!reg)
      throw new CommandError(
        'not-found',
        `device ${cfg.name} has no register named ${JSON.stringify(req.target)}`,
      );
    if (req.method !== '' && req.method.toUpperCase() !== 'WRITE')
      throw new CommandError(
        'invalid',
        `method: must be WRITE or empty for a Modbus device (got ${JSON.stringify(req.method)})`,
      );
    if (!reg.writable)
      throw new CommandError(
        'forbidden',
        `register ${cfg.name}/${reg.name} is not writable: set writable: true in its register map to allow it`,
      );
    if (req.contentType !== '' && req.contentType !== JSON_TYPE && req.contentType !== 'text/plain')
      throw new CommandError(
        'invalid',
        `content_type: must be application/json, text/plain or empty (got ${JSON.stringify(req.contentType)})`,
      );
    const value = parseValue(reg, req.payload);
    const timeoutMs = req.timeoutMs > 0 ? req.timeoutMs : cfg.timeoutMs;
    if (signal?.aborted) throw new CommandError('deadline', 'the call was cancelled or its deadline passed');
    const write = this.write(device, reg, value, timeoutMs);
    return signal ? raceAbort(write, signal) : write;
  }

  private async write(
    device: DevicePoller,
    reg: ModbusRegisterConfig,
    value: unknown,
    timeoutMs: number,
  ): Promise<CommandResponse> {
    const cfg: ModbusDeviceConfig = device.cfg;
    let words: number[] | null = null;
    let coil = false;
    try {
      if (reg.area === 'coil') coil = encodeCoil(value);
      else words = encodeRegister(reg, value);
    } catch (err) {
      if (err instanceof RegisterValueError) throw new CommandError('invalid', `payload: ${err.message}`);
      throw err;
    }
    const fn = words === null ? 5 : words.length === 1 ? 6 : 16;
    try {
      if (words === null) await device.connection.writeCoil(cfg.unitId, reg.address, coil, timeoutMs);
      else await device.connection.writeRegisters(cfg.unitId, reg.address, words, timeoutMs);
    } catch (err) {
      if (!(err instanceof ModbusRequestError)) throw err;
      if (err.kind === 'exception') {
        const code = err.exceptionCode as number;
        this.log.warn(
          { device: cfg.name, register: reg.name, exception: code },
          'modbus write refused by the device',
        );
        return {
          code: `exception:${code}`,
          payload: Buffer.from(
            JSON.stringify({
              function: fn,
              address: reg.address,
              exception: code,
              name: EXCEPTION_NAMES[code] ?? 'unknown',
            }),
          ),
          contentType: JSON_TYPE,
        };
      }
      if (err.kind === 'timeout')
        throw new CommandError('deadline', `device ${cfg.name} did not answer within ${timeoutMs} ms`);
      throw new CommandError('unavailable', `device ${cfg.name}: ${err.message}`);
    }
    this.log.info({ device: cfg.name, register: reg.name, value }, 'modbus register written');
    const detail = words === null ? { coil } : { words };
    return {
      code: 'ok',
      payload: Buffer.from(JSON.stringify({ function: fn, address: reg.address, ...detail })),
      contentType: JSON_TYPE,
    };
  }
}

/** The value a Command carries: JSON text, or bare text for a string register. */
function parseValue(reg: ModbusRegisterConfig, payload: Buffer): unknown {
  const text = payload.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    if (reg.type === 'string') return text;
    throw new CommandError(
      'invalid',
      `payload: expected the value as JSON, such as 42.5 or true (got ${JSON.stringify(text.slice(0, 40))})`,
    );
  }
}

/** The caller's deadline: the write itself cannot be recalled once sent, only no longer waited for. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(new CommandError('deadline', 'the call was cancelled or its deadline passed'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
