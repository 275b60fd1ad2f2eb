import type { DeadLetter, Journal } from '../journal/journal.ts';
import type { GatewayView } from '../observability/gateway-view.ts';
import { HttpError, intParam, requiredParam } from './http-util.ts';

/** Dead letters per page at most: the journal's own page limit. */
const MAX_PAGE = 1000;
/** One listing carries at most about this much body (base64), whatever the page size. */
const MAX_LISTING_BODY_BYTES = 4 * 1024 * 1024;
/**
 * And reads about as much from the journal (raw bodies, 3 bytes a 4 of base64): a page of 1000
 * dead letters of 256 KiB would otherwise be read whole (up to the dead-letter budget, 100 MiB
 * by default) to answer 4 MiB of it.
 */
const MAX_READ_BODY_BYTES = (MAX_LISTING_BODY_BYTES / 4) * 3;
const MAX_SEQ = Number.MAX_SAFE_INTEGER;

function journalOf(view: GatewayView): Journal {
  if (!view.journal) throw new HttpError(503, 'the journal is not open yet');
  return view.journal;
}

/** A sink is known while it is configured or still has dead letters (one since removed). */
function knownSink(view: GatewayView, journal: Journal, url: URL): string {
  const sink = requiredParam(url, 'sink');
  const known =
    view.dispatchers.some((d) => d.sink.name === sink) ||
    journal.deadLetterSummary().some((s) => s.sink === sink && s.count > 0);
  if (!known)
    throw new HttpError(404, `sink: no sink named ${JSON.stringify(sink)} is configured or has dead letters`);
  return sink;
}

function letterDoc(d: DeadLetter) {
  return {
    n: d.n,
    seq: d.seq,
    at: new Date(d.at).toISOString(),
    reason: d.reason,
    body: d.body.toString('base64'),
  };
}

/**
 * `GET /v1/deadletters?sink=NAME[&limit=1..1000][&after=N]`: the sink's dead letters numbered
 * above `after`, oldest first. `next` is the `after` of the following page, null at the end. A
 * page also stops at about 4 MiB of bodies, so no answer is unbounded.
 */
export async function listDeadLetters(view: GatewayView, url: URL) {
  const limit = intParam(url, 'limit', 1, MAX_PAGE, 100);
  const after = intParam(url, 'after', 0, MAX_SEQ, 0);
  const journal = journalOf(view);
  const sink = knownSink(view, journal, url);
  const letters = await journal.listDeadLetters(sink, limit, after, MAX_READ_BODY_BYTES);
  let read = 0;
  for (const d of letters) read += d.body.length;
  const out: ReturnType<typeof letterDoc>[] = [];
  let bytes = 0;
  for (const d of letters) {
    const doc = letterDoc(d);
    if (out.length > 0 && bytes + doc.body.length > MAX_LISTING_BODY_BYTES) break;
    bytes += doc.body.length;
    out.push(doc);
  }
  // A full page (or one cut short by size, here or by the journal) may have more behind it; a
  // short page is the end.
  const more = out.length < letters.length || letters.length === limit || read >= MAX_READ_BODY_BYTES;
  const stats = journal.deadLetterSummary().find((s) => s.sink === sink);
  return {
    sink,
    count: stats?.count ?? 0,
    bytes: stats?.bytes ?? 0,
    deadLetters: out,
    next: more && out.length > 0 ? out[out.length - 1].n : null,
  };
}

function parseNumbers(raw: string): number[] {
  const parts = raw.split(',');
  if (parts.length > MAX_PAGE)
    throw new HttpError(400, `n: at most ${MAX_PAGE} numbers per request (got ${parts.length})`);
  return parts.map((p) => {
    const n = /^\d{1,16}$/.test(p) ? Number(p) : Number.NaN;
    if (!(n >= 1 && n <= MAX_SEQ)) {
      throw new HttpError(
        400,
        `n: must be a comma-separated list of integers >= 1 (got ${JSON.stringify(raw)})`,
      );
    }
    return n;
  });
}

/**
 * `DELETE /v1/deadletters?sink=NAME&n=1,2,3` (those numbers) or `&upTo=N` (every one numbered
 * N or below, a page at a time).
 */
export async function deleteDeadLetters(view: GatewayView, url: URL) {
  const rawN = url.searchParams.get('n');
  const hasUpTo = url.searchParams.has('upTo');
  if ((rawN === null) === !hasUpTo) throw new HttpError(400, 'give exactly one of n=1,2,3 or upTo=N');
  const ns = rawN === null ? null : parseNumbers(rawN);
  const upTo = hasUpTo ? intParam(url, 'upTo', 1, MAX_SEQ, 0) : 0;
  const journal = journalOf(view);
  const sink = knownSink(view, journal, url);
  if (ns) return { sink, deleted: await journal.deleteDeadLetters(sink, ns) };
  let deleted = 0;
  let after = 0;
  for (;;) {
    // Pages bounded in bytes too: a page shorter than MAX_PAGE is not the end, an empty one is.
    const page = await journal.listDeadLetters(sink, MAX_PAGE, after, MAX_READ_BODY_BYTES);
    const mine = page.filter((d) => d.n <= upTo).map((d) => d.n);
    if (mine.length > 0) deleted += await journal.deleteDeadLetters(sink, mine);
    if (page.length === 0 || mine.length < page.length) break;
    after = page[page.length - 1].n;
  }
  return { sink, deleted };
}

/**
 * `POST /v1/deadletters/replay?sink=NAME[&limit=1..1000]`: the sink's dispatcher sends up to
 * `limit` of its oldest dead letters again, between its regular batches; the acknowledged ones are
 * deleted.
 */
export async function replayDeadLetters(view: GatewayView, url: URL) {
  const limit = intParam(url, 'limit', 1, MAX_PAGE, 100);
  const sink = requiredParam(url, 'sink');
  const d = view.dispatchers.find((x) => x.sink.name === sink);
  if (!d) throw new HttpError(404, `sink: no sink named ${JSON.stringify(sink)} is configured`);
  try {
    return { sink, ...(await d.replayDeadLetters(limit)) };
  } catch (err) {
    // Not running (starting, stopping) or a replay already waiting: try again later.
    throw new HttpError(409, `sink ${sink}: ${(err as Error).message}`);
  }
}
