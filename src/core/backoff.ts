export interface RetryPolicy {
  minMs: number;
  maxMs: number;
}

/**
 * Exponential backoff with "equal jitter": half the window fixed, half random, so a fleet of
 * gateways that lost the same uplink do not come back in lock-step, yet no retry fires almost at
 * once. An upstream's Retry-After is a floor, but never above `maxMs`: a delay past 2^31-1 ms
 * fires after 1 ms in Node (`Retry-After: 9999999` became a 1 ms retry loop), and one of a day
 * (`86400`) would hold the backlog that long; `maxMs` is the operator's word on the longest wait.
 */
export function backoffDelay(
  policy: RetryPolicy,
  attempt: number,
  retryAfterMs?: number,
  random = Math.random,
): number {
  const exp = Math.min(policy.maxMs, policy.minMs * 2 ** Math.min(attempt, 30));
  const delay = exp / 2 + random() * (exp / 2);
  if (retryAfterMs === undefined || !(retryAfterMs > delay)) return delay;
  return Math.min(retryAfterMs, policy.maxMs);
}
