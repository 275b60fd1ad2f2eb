import { setImmediate as turn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { compactHeap } from '../../src/core/compact-heap.ts';

describe('compactHeap', () => {
  it('runs a full GC on this Node without --expose-gc on the command line, and leaves no global gc', async () => {
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe('undefined');
    let garbage: object | null = { payload: Buffer.alloc(1024) };
    const ref = new WeakRef(garbage);
    garbage = null;
    // A WeakRef target stays alive until the job that created or read it has ended.
    await turn();
    expect(compactHeap()).toBe(true);
    expect(ref.deref()).toBeUndefined();
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe('undefined');
  });
});
