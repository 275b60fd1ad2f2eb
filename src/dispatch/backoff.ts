export interface RetryPolicy {
  minMs: number;
  maxMs: number;
}

/**
 * Exponential backoff with "equal jitter": half the window fixed, half random, so a fleet of
 * gateways that lost the same uplink do not come back in lock-step, yet no retry fires almost at
 * once. An upstream's Retry-After is a floor, never shortened.
 */
export function backoffDelay(
  policy: RetryPolicy,
  attempt: number,
  retryAfterMs?: number,
  random = Math.random,
): number {
  const exp = Math.min(policy.maxMs, policy.minMs * 2 ** Math.min(attempt, 30));
  const delay = exp / 2 + random() * (exp / 2);
  return retryAfterMs !== undefined ? Math.max(delay, retryAfterMs) : delay;
}
