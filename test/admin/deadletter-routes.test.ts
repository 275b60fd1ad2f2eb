// The dead-letter routes in-process, over a real Journal on disk: how much of the journal one
// request reads, not only how much it answers.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deleteDeadLetters, listDeadLetters } from '../../src/admin/deadletter-routes.ts';
import type { Journal } from '../../src/journal/journal.ts';
import type { GatewayView } from '../../src/observability/gateway-view.ts';
import { JournalKit } from '../journal/journal-kit.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

let kit: JournalKit;
beforeEach(() => {
  kit = new JournalKit();
});
afterEach(() => kit.cleanup());

function viewOf(j: Journal): GatewayView {
  return {
    nodeId: 'n',
    startedAt: 0,
    journal: j,
    sources: [],
    dispatchers: [],
    ready: () => true,
  };
}

/** Counts the body bytes the journal hands to the route, over every call. */
function meterReads(j: Journal): { bytes: number; max: number } {
  const m = { bytes: 0, max: 0 };
  const list = j.listDeadLetters.bind(j);
  j.listDeadLetters = async (...args: Parameters<Journal['listDeadLetters']>) => {
    const page = await list(...args);
    let b = 0;
    for (const d of page) b += d.body.length;
    m.bytes += b;
    m.max = Math.max(m.max, b);
    return page;
  };
  return m;
}

describe('dead-letter routes: work per request', () => {
  it('a listing of big dead letters reads about what it answers (4 MiB), not a whole page of 1000', async () => {
    // Records refused for their size (HTTP 413) are the big ones: 60 of 256 KiB = 15 MiB.
    const j = await kit.open({ deadLetterMaxBytes: 64 * MiB });
    const body = Buffer.alloc(256 * KiB, 0x2e);
    for (let s = 1; s <= 60; s++) await j.deadLetter('cloud', [{ seq: s, ts: 1, body }], 'HTTP 413');
    const reads = meterReads(j);
    const seen: number[] = [];
    let after = 0;
    for (let pages = 0; pages < 100; pages++) {
      const url = new URL(`http://admin/v1/deadletters?sink=cloud&limit=1000&after=${after}`);
      const doc = await listDeadLetters(viewOf(j), url);
      seen.push(...doc.deadLetters.map((d) => d.n));
      if (doc.next === null) break;
      after = doc.next;
    }
    // Every one once, in order, whatever the page size.
    expect(seen).toEqual(Array.from({ length: 60 }, (_, k) => k + 1));
    // Before: the first request read all 15 MiB (up to the whole dead-letter budget) for an
    // answer of 4 MiB; on a pod with a memory limit, a GET could get the daemon OOM-killed.
    expect(reads.max).toBeLessThanOrEqual(4 * MiB);
  });

  it('a delete up to a number reads the bodies a page at a time, within the same bound', async () => {
    const j = await kit.open({ deadLetterMaxBytes: 64 * MiB });
    const body = Buffer.alloc(256 * KiB, 0x2e);
    for (let s = 1; s <= 60; s++) await j.deadLetter('cloud', [{ seq: s, ts: 1, body }], 'HTTP 413');
    const reads = meterReads(j);
    const url = new URL('http://admin/v1/deadletters?sink=cloud&upTo=50');
    expect(await deleteDeadLetters(viewOf(j), url)).toEqual({ sink: 'cloud', deleted: 50 });
    expect(reads.max).toBeLessThanOrEqual(4 * MiB);
    const left = await j.listDeadLetters('cloud', 1000);
    expect(left.map((d) => d.n)).toEqual(Array.from({ length: 10 }, (_, k) => k + 51));
    expect(await j.deadLetterCount('cloud')).toBe(10);
  });
});
