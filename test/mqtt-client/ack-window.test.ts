// The ack window alone: acks leave in arrival order, each only after its own commit, in one
// corked write per release, and none after the connection closed.

import { describe, expect, it } from 'vitest';
import { AckWindow } from '../../src/sources/mqtt-client/ack-window.ts';

function window() {
  const sent: string[] = [];
  let corks = 0;
  const w = new AckWindow(
    (cmd, id) => sent.push(`${cmd}:${id}`),
    () => corks++,
    () => {},
  );
  return { w, sent, corks: () => corks };
}

describe('AckWindow', () => {
  it('holds a later commit until every earlier message is committed, then sends in arrival order', () => {
    const { w, sent, corks } = window();
    const a = w.hold(1, 'puback', false);
    const b = w.hold(2, 'pubrec', false);
    const c = w.hold(3, 'puback', false);
    w.commit(c);
    w.commit(b);
    expect(sent).toEqual([]);
    expect(w.held).toBe(3);
    w.commit(a);
    expect(sent).toEqual(['puback:1', 'pubrec:2', 'puback:3']);
    expect(corks()).toBe(1);
    expect(w.held).toBe(0);
  });

  it('sends an already-committed entry (a loop-rule drop) at once only when nothing is ahead of it', () => {
    const { w, sent } = window();
    const a = w.hold(1, 'puback', false);
    w.hold(2, 'puback', true);
    expect(sent).toEqual([]);
    w.commit(a);
    expect(sent).toEqual(['puback:1', 'puback:2']);
    w.hold(3, 'puback', true);
    expect(sent).toEqual(['puback:1', 'puback:2', 'puback:3']);
  });

  it('sends nothing after close, even for commits reported later', () => {
    const { w, sent } = window();
    const a = w.hold(1, 'puback', false);
    w.close();
    w.commit(a);
    expect(sent).toEqual([]);
    expect(w.isOpen).toBe(false);
  });

  it('tells a paused reader when it shrinks', () => {
    const { w } = window();
    let released = 0;
    w.onRelease = () => released++;
    const a = w.hold(1, 'puback', false);
    w.commit(a);
    expect(released).toBe(1);
  });

  it('keeps order over a long run with the front compacted', () => {
    const { w, sent } = window();
    const entries = Array.from({ length: 5000 }, (_, i) => w.hold(i + 1, 'puback', false));
    // Commit all but the last in reverse order, then the last: everything leaves in order.
    for (let i = entries.length - 2; i >= 0; i--) w.commit(entries[i]);
    expect(sent.length).toBe(4999);
    w.commit(entries[4999]);
    expect(sent).toEqual(entries.map((e) => `puback:${e.messageId}`));
  });
});
