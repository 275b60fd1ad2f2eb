import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../src/core/backoff.ts';

const policy = { minMs: 100, maxMs: 2_000 };
const half = () => 0.5;

describe('backoffDelay', () => {
  it('grows exponentially with equal jitter, up to maxMs', () => {
    expect(backoffDelay(policy, 0, undefined, half)).toBe(75);
    expect(backoffDelay(policy, 3, undefined, half)).toBe(600);
    expect(backoffDelay(policy, 50, undefined, half)).toBe(1_500);
    expect(backoffDelay(policy, 50, undefined, () => 0.999_999)).toBeLessThanOrEqual(2_000);
  });

  it('takes Retry-After as a floor, but never beyond maxMs (9999999 s is past the timer limit)', () => {
    expect(backoffDelay(policy, 0, 1_000, half)).toBe(1_000);
    expect(backoffDelay(policy, 3, 10, half)).toBe(600);
    expect(backoffDelay(policy, 0, 9_999_999_000, half)).toBe(2_000);
    expect(backoffDelay(policy, 0, 86_400_000, half)).toBe(2_000);
    expect(backoffDelay(policy, 0, Number.POSITIVE_INFINITY, half)).toBe(2_000);
    expect(backoffDelay(policy, 0, Number.NaN, half)).toBe(75);
  });
});
