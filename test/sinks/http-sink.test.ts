// The HTTP sink's own answers (Retry-After, 401/403) through a real SinkDispatcher over a real
// Journal on disk, against a real HTTP receiver on 127.0.0.1. The cases every sink shares are in
// sink-suite.ts.

import { afterEach, describe, expect, it } from 'vitest';
import { buildStatus } from '../../src/admin/status.ts';
import type { GatewayView } from '../../src/observability/gateway-view.ts';
import { createMetricsRegistry } from '../../src/observability/metrics.ts';
import { HttpSink } from '../../src/sinks/http/http-sink.ts';
import { eventually } from '../helpers/daemon.ts';
import {
  appendRange,
  captureLog,
  onCleanup,
  openJournal,
  range,
  runCleanups,
  startDispatcher,
} from '../helpers/dispatch-fixture.ts';
import { distinctSeqs, HttpReceiver } from '../helpers/http-receiver.ts';

afterEach(runCleanups);

async function receiver(): Promise<HttpReceiver> {
  const rx = new HttpReceiver();
  await rx.start();
  onCleanup(() => rx.stop());
  return rx;
}

function sink(rx: HttpReceiver): HttpSink {
  return new HttpSink({ name: 'up', url: rx.url, payloadEncoding: 'utf8', timeoutMs: 5_000 });
}

describe('http sink: Retry-After', () => {
  it('a Retry-After above the timer limit (9999999 s) waits retry.maxMs, not 1 ms: few requests, then delivered', async () => {
    const rx = await receiver();
    // Refuses for one second of its own clock, then accepts. Node fires a delay above 2^31-1 ms
    // after 1 ms, so an uncapped Retry-After would make hundreds of requests in that second;
    // capped at maxMs (250 ms) it makes a handful.
    let firstAt = 0;
    let refused = 0;
    rx.respond = () => {
      const now = Date.now();
      if (firstAt === 0) firstAt = now;
      if (now - firstAt < 1_000) {
        refused++;
        return { status: 503, headers: { 'retry-after': '9999999' } };
      }
      return { status: 200 };
    };
    const j = await openJournal();
    const d = await startDispatcher(sink(rx), j, { retry: { minMs: 50, maxMs: 250 } });
    await appendRange(j, 1, 10);

    await eventually(() => d.position === 10, 'the batch delivered after the refusals', 15_000);
    expect(distinctSeqs(rx.records)).toEqual(range(1, 10));
    expect(refused).toBeGreaterThanOrEqual(1);
    expect(rx.requests).toBeLessThanOrEqual(12);
    expect(d.status().counters).toMatchObject({ delivered: 10, deadLettered: 0, retries: refused });
  });

  it('a Retry-After of a day (86400) with retry.maxMs 200 ms still delivers the batch', async () => {
    const rx = await receiver();
    let refused = 0;
    rx.respond = () =>
      refused++ < 2 ? { status: 503, headers: { 'retry-after': '86400' } } : { status: 200 };
    const j = await openJournal();
    const d = await startDispatcher(sink(rx), j, { retry: { minMs: 20, maxMs: 200 } });
    await appendRange(j, 1, 5);

    await eventually(() => d.position === 5, 'delivered despite Retry-After: 86400', 10_000);
    expect(distinctSeqs(rx.records)).toEqual(range(1, 5));
    expect(rx.requests).toBe(3);
    expect(d.status()).toMatchObject({ state: 'up', lastError: null });
  });
});

describe('http sink: 401 and 403', () => {
  it('retries them as auth-failing (status, metric, one log line), never dead-letters, delivers once accepted', async () => {
    const rx = await receiver();
    let answer = 401;
    rx.respond = () => ({ status: answer });
    const j = await openJournal();
    const log = captureLog();
    const d = await startDispatcher(sink(rx), j, { retry: { minMs: 10, maxMs: 50 } }, log);
    await appendRange(j, 1, 20);

    await eventually(() => rx.requests >= 4, 'several 401s');
    answer = 403;
    const at403 = rx.requests;
    await eventually(() => rx.requests >= at403 + 3, 'several 403s');
    expect(d.status()).toMatchObject({ state: 'auth-failing', cursor: 0 });
    expect(d.status().lastError).toContain('HTTP 403');
    expect(d.status().counters.deadLettered).toBe(0);
    expect(await j.deadLetterCount('up')).toBe(0);

    const view: GatewayView = {
      nodeId: 'n',
      startedAt: Date.now(),
      journal: j,
      sources: [],
      dispatchers: [d],
      ready: () => true,
    };
    expect((await buildStatus(view)).sinks[0].state).toBe('auth-failing');
    const metrics = await createMetricsRegistry(view).metrics();
    expect(metrics).toContain('edgeferry_sink_state{sink="up",state="auth-failing"} 1');
    expect(metrics).toContain('edgeferry_sink_state{sink="up",state="up"} 0');

    // One line when the state changed, none per attempt (401 and 403 are the same state).
    const authLines = log.lines.filter((l) => l.level === 'warn' && l.obj.code === 'EF_SINK_AUTH');
    expect(authLines).toHaveLength(1);
    expect(d.status().counters.retries).toBeGreaterThanOrEqual(7);

    answer = 200;
    await eventually(() => d.position === 20, 'delivered once the credentials work');
    expect(distinctSeqs(rx.records)).toEqual(range(1, 20));
    expect(d.status()).toMatchObject({ state: 'up', lastError: null });
    expect(d.status().counters).toMatchObject({ delivered: 20, deadLettered: 0 });
    expect(log.lines.filter((l) => l.msg === 'sink is up again')).toHaveLength(1);
  });
});
