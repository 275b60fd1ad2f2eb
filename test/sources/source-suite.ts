// The cases every source passes (STYLE.md habit 6, as Telegraf's buffer suite and MQTT.js'
// abstract store tests): acknowledged means journaled, a saturated journal pauses intake without
// losing anything, garbage is refused without harming anyone else, and what was acknowledged
// survives a SIGKILL. Each case runs the real daemon (test/helpers/daemon.ts) with an HTTP
// receiver as its upstream, so "in the journal" is checked by what the journal delivers.
//
// A source joins by writing a driver (how to enable it, how a device sends one message and learns
// whether it was acknowledged, how to send garbage) and one test file calling `sourceSuite`.

import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';

/** One device (an MQTT client, a CoAP endpoint, a PLC the poller reads) talking to the daemon. */
export interface SourceDevice {
  /**
   * Sends one message whose payload is `payload` (UTF-8, unique within a test). Resolves true once
   * the source acknowledged it (MQTT PUBACK, CoAP ACK, the poll's commit), false when it was
   * refused or the link dropped first. Never rejects. Several may be in flight at once.
   */
  send(payload: string): Promise<boolean>;
  /** True while the device's link to the daemon is up. */
  connected(): boolean;
  close(): Promise<void>;
}

export type GarbageKind = 'malformed' | 'oversize';

export interface SourceDriver {
  /** The source's name in /v1/status `sources[].name`, the metrics' `protocol` label and the log's `component`. */
  readonly protocol: string;
  /**
   * Config sections that enable the source on 127.0.0.1, port 0, accepting messages up to
   * `maxMessageBytes` (merged over the base config; may disable other sources).
   */
  config(opts: { maxMessageBytes: number }): Record<string, unknown>;
  /** A new device; `name` is unique per daemon. */
  connect(daemon: DaemonHandle, name: string): Promise<SourceDevice>;
  /**
   * Sends input the source must refuse on a link of its own: a malformed message, or one larger
   * than `maxMessageBytes`. Resolves once the daemon refused it (closed that connection, answered
   * with an error code); rejects if it did not within a deadline.
   */
  sendGarbage(daemon: DaemonHandle, kind: GarbageKind, maxMessageBytes: number): Promise<void>;
}

const MAX_MESSAGE_BYTES = 1024;

/**
 * Sends `${prefix}0${pad}` .. `${prefix}${total - 1}${pad}` with `window` in flight, until all are
 * sent or the link is down; collects the acknowledged and the refused payloads.
 */
export function sendWindowed(
  device: SourceDevice,
  prefix: string,
  total: number,
  window: number,
  onAck: (count: number) => void = () => {},
  pad = '',
): { acked: string[]; refused: string[]; done: Promise<void> } {
  const acked: string[] = [];
  const refused: string[] = [];
  let next = 0;
  const lane = async () => {
    while (next < total && device.connected()) {
      const payload = `${prefix}${next++}${pad}`;
      if (await device.send(payload)) {
        acked.push(payload);
        onAck(acked.length);
      } else {
        refused.push(payload);
      }
    }
  };
  const done = Promise.all(Array.from({ length: window }, lane)).then(() => {});
  return { acked, refused, done };
}

function metricValue(text: string, series: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return Number.NaN;
}

/** `p`, or an error naming `what` if it has not settled within `ms` (a deadline to fail clearly, no timing claim). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    sleep(ms, undefined, { ref: false }).then(() => {
      throw new Error(`gave up waiting for: ${what}`);
    }),
  ]);
}

export function sourceSuite(driver: SourceDriver): void {
  const protocol = driver.protocol;
  const daemons: DaemonHandle[] = [];
  const receivers: HttpReceiver[] = [];
  const devices: SourceDevice[] = [];

  afterEach(async () => {
    await Promise.all(devices.splice(0).map((d) => d.close().catch(() => {})));
    await Promise.all(daemons.splice(0).map((d) => d.kill()));
    await Promise.all(receivers.splice(0).map((r) => r.stop()));
  });

  async function setup(journal: Record<string, unknown> = {}): Promise<{ d: DaemonHandle; r: HttpReceiver }> {
    const r = new HttpReceiver();
    await r.start();
    receivers.push(r);
    const dir = tempDir();
    const config = baseConfig(dir, {
      journal: { path: `${dir}/journal`, ...journal },
      ...driver.config({ maxMessageBytes: MAX_MESSAGE_BYTES }),
      sinks: [
        {
          name: 'upstream',
          type: 'http',
          url: r.url,
          payloadEncoding: 'utf8',
          retry: { minMs: 50, maxMs: 500 },
        },
      ],
    });
    const d = await startDaemon(dir, writeConfig(dir, config));
    daemons.push(d);
    return { d, r };
  }

  async function restart(prev: DaemonHandle): Promise<DaemonHandle> {
    const d = await startDaemon(prev.dir, prev.configPath);
    daemons.push(d);
    return d;
  }

  async function device(d: DaemonHandle, name: string): Promise<SourceDevice> {
    const dev = await driver.connect(d, name);
    devices.push(dev);
    return dev;
  }

  const delivered = (r: HttpReceiver): string[] =>
    r.records.filter((x) => x.source === protocol).map((x) => x.payload);

  const series = (name: string) => `${name}{protocol="${protocol}"}`;

  describe(`source suite: ${protocol}`, () => {
    it('every acknowledged message is in the journal, once', async () => {
      const { d, r } = await setup();
      const dev = await device(d, 'dev-ack');
      const run = sendWindowed(dev, 'a', 2000, 50);
      await within(run.done, 60_000, '2000 messages sent');
      expect(run.refused).toEqual([]);
      expect(run.acked.length).toBe(2000);
      await eventually(() => delivered(r).length >= 2000, 'every acked message delivered');
      expect([...delivered(r)].sort()).toEqual([...run.acked].sort());
      const status = await d.status();
      expect(status.journal.counters.appended).toBe(2000);
      expect(metricValue(await d.metrics(), series('edgeferry_ingress_records_total'))).toBe(2000);
    });

    it('a message the journal refuses is never acknowledged, and the acknowledged ones stay', async () => {
      // Room for a few records only, and no dropping to make room: the journal refuses.
      const { d, r } = await setup({ maxBytes: '4KiB', onFull: 'reject' });
      const dev = await device(d, 'dev-full');
      const acked: string[] = [];
      let refusedAt = -1;
      for (let i = 0; i < 200 && refusedAt < 0; i++) {
        const payload = `f${i}-${'x'.repeat(150)}`;
        if (await dev.send(payload)) acked.push(payload);
        else refusedAt = i;
      }
      expect(refusedAt).toBeGreaterThan(0);
      expect(acked.length).toBe(refusedAt);
      const status = await d.status();
      expect(status.journal.counters.rejected).toBeGreaterThan(0);
      expect(metricValue(await d.metrics(), series('edgeferry_ingress_refused_total'))).toBeGreaterThan(0);
      // The sink delivers what was acknowledged, and nothing else.
      await eventually(() => delivered(r).length >= acked.length, 'the acked messages delivered');
      expect(delivered(r)).toEqual(acked);
    });

    it('a saturated journal pauses intake; nothing acknowledged is lost', async () => {
      const { d, r } = await setup({ maxPendingBytes: '32KiB' });
      const dev = await device(d, 'dev-flood');
      // 500 in flight x about 200 bytes is several times the 32 KiB that may wait for commit.
      const run = sendWindowed(dev, 'b', 10_000, 500, undefined, `-${'p'.repeat(190)}`);
      await within(run.done, 120_000, '10 000 messages sent');
      expect(run.refused).toEqual([]);
      expect(metricValue(await d.metrics(), series('edgeferry_ingress_pauses_total'))).toBeGreaterThan(0);
      await eventually(() => delivered(r).length >= 10_000, 'every acked message delivered', 60_000);
      expect(new Set(delivered(r)).size).toBe(10_000);
    });

    it('garbage is refused with a clear error; other devices are unharmed and nothing accepted is lost', async () => {
      const { d, r } = await setup();
      const good = await device(d, 'dev-good');
      expect(await good.send('before')).toBe(true);
      const errorsBefore = metricValue(await d.metrics(), series('edgeferry_ingress_protocol_errors_total'));
      await driver.sendGarbage(d, 'malformed', MAX_MESSAGE_BYTES);
      expect(await good.send('between')).toBe(true);
      await driver.sendGarbage(d, 'oversize', MAX_MESSAGE_BYTES);
      expect(await good.send('after')).toBe(true);
      expect(good.connected()).toBe(true);

      const errors = metricValue(await d.metrics(), series('edgeferry_ingress_protocol_errors_total'));
      expect(errors - errorsBefore).toBeGreaterThanOrEqual(2);
      // A log line from the source says why (pino: level 40 = warn).
      await d.waitForLog((l) => l.component === protocol && Number(l.level) >= 40);
      await eventually(() => delivered(r).length >= 3, 'the accepted messages delivered');
      expect(delivered(r)).toEqual(['before', 'between', 'after']);
      expect((await d.status()).journal.counters.appended).toBe(3);
    });

    it('SIGKILL after acknowledgements: every acknowledged message is delivered after restart', async () => {
      const { d, r } = await setup();
      // The upstream takes nothing while the daemon runs: what was acked is only in the journal.
      r.respond = () => ({ status: 503 });
      const dev = await device(d, 'dev-crash');
      const killAfter = 1000;
      const run = sendWindowed(dev, 'k', 5000, 200, (n) => {
        if (n === killAfter) d.proc.kill('SIGKILL');
      });
      await within(d.exited, 60_000, 'the daemon killed');
      await within(run.done, 30_000, 'the device to see the link drop');
      const ackedAtKill = [...run.acked];
      expect(ackedAtKill.length).toBeGreaterThanOrEqual(killAfter);
      expect(ackedAtKill.length).toBeLessThan(5000);

      r.respond = () => ({ status: 200 });
      await restart(d);
      await eventually(() => {
        const got = new Set(delivered(r));
        return ackedAtKill.every((p) => got.has(p));
      }, 'every acked message delivered after the restart');
    });
  });
}
