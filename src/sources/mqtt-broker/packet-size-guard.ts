// Follows MQTT fixed headers across a connection's byte stream ([MQTT-2.2]: one type byte, then
// the Remaining Length as a 1-4 byte varint), so an oversize packet is refused at its header,
// before the broker's parser buffers it. Bodies are skipped unparsed, except the few leading
// bytes the conformance checks need (conformance.ts): a CONNECT, SUBSCRIBE or UNSUBSCRIBE whole
// (at most maxPacketBytes), a PUBLISH up to its packet identifier, never its payload. Those
// bytes are looked at where they lie in the chunk; only a packet split across reads has its
// head copied, once all of it arrived. The pieces are kept as views of the reads (which the
// broker's parser holds anyway) rather than in a buffer of the announced size: a peer announcing
// a large CONNECT and sending one byte of it must not make the guard allocate the rest.

import { bodyBytesNeeded, checkBody, checkHeader, type Violation } from './conformance.ts';

const HEADER = 0;
const LENGTH = 1;
const BODY = 2;
const COLLECT = 3;
const DEAD = 4;

export type GuardVerdict = 'ok' | 'oversize' | 'malformed' | 'violation';

export class PacketSizeGuard {
  private readonly maxPacketBytes: number;
  private state = HEADER;
  private first = 0;
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private bodyLeft = 0;
  private connected = false;
  /** The head of a packet split across reads, while it is collected: pieces, bytes, bytes wanted. */
  private pieces: Buffer[] = [];
  private have = 0;
  private need = 0;
  /** Size of the packet that broke the limit, for the log line. */
  offending = 0;
  /** The rule broken, when the verdict was 'violation'. */
  violation: Violation | null = null;

  constructor(maxPacketBytes: number) {
    this.maxPacketBytes = maxPacketBytes;
  }

  feed(buf: Buffer): GuardVerdict {
    if (this.state === DEAD) return 'malformed';
    const verdict = this.walk(buf);
    if (verdict !== 'ok') {
      // Nothing after a refused packet is looked at: the connection is being closed.
      this.state = DEAD;
      this.pieces = [];
    }
    return verdict;
  }

  private walk(buf: Buffer): GuardVerdict {
    let i = 0;
    while (i < buf.length) {
      if (this.state === BODY) {
        const take = Math.min(this.bodyLeft, buf.length - i);
        this.bodyLeft -= take;
        i += take;
        if (this.bodyLeft === 0) this.state = HEADER;
        continue;
      }
      if (this.state === COLLECT) {
        const take = Math.min(this.need - this.have, buf.length - i);
        this.pieces.push(buf.subarray(i, i + take));
        this.have += take;
        i += take;
        if (this.have < this.need) continue;
        const head = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces, this.have);
        const need = bodyBytesNeeded(this.first, this.length, head, 0, this.have);
        if (need > this.have) {
          this.pieces = [head];
          this.need = need;
          continue;
        }
        this.pieces = [];
        const verdict = this.checked(checkBody(this.first, this.length, head, 0, this.have));
        if (verdict !== 'ok') return verdict;
        this.skipRest(this.have);
        continue;
      }
      const b = buf[i++];
      if (this.state === HEADER) {
        const verdict = this.checked(checkHeader(b, this.connected));
        if (verdict !== 'ok') return verdict;
        if (b >> 4 === 1) this.connected = true;
        this.first = b;
        this.state = LENGTH;
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
        continue;
      }
      this.length += (b & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes++;
      if (b & 0x80) {
        if (this.lengthBytes === 4) return 'malformed';
        continue;
      }
      const total = 1 + this.lengthBytes + this.length;
      if (total > this.maxPacketBytes) {
        this.offending = total;
        return 'oversize';
      }
      const verdict = this.inspect(buf, i);
      if (verdict !== 'ok') return verdict;
    }
    return 'ok';
  }

  /** A fixed header is complete and `buf[at]` starts its body: check what the rules need of it. */
  private inspect(buf: Buffer, at: number): GuardVerdict {
    const avail = Math.min(this.length, buf.length - at);
    let need = bodyBytesNeeded(this.first, this.length, buf, at, 0);
    while (need > 0 && need <= avail) {
      const more = bodyBytesNeeded(this.first, this.length, buf, at, need);
      if (more > need) {
        need = more;
        continue;
      }
      const verdict = this.checked(checkBody(this.first, this.length, buf, at, need));
      if (verdict !== 'ok') return verdict;
      need = 0;
    }
    if (need > 0) {
      // Split across reads: the walk copies the head in as it arrives (what is here now first).
      this.need = need;
      this.have = 0;
      this.state = COLLECT;
      return 'ok';
    }
    this.skipRest(0);
    return 'ok';
  }

  /** Skips the body left after its first `seen` bytes were collected. */
  private skipRest(seen: number): void {
    this.bodyLeft = this.length - seen;
    this.state = this.bodyLeft === 0 ? HEADER : BODY;
  }

  private checked(violation: Violation | null): GuardVerdict {
    if (violation === null) return 'ok';
    this.violation = violation;
    return 'violation';
  }
}
