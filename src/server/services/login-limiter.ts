/**
 * Counts failed logins per account and per client address over a sliding
 * minute, and says how long to wait once either count is reached: 5
 * failures per account (a password guessed from many addresses), 20 per
 * address (one address trying many accounts, with room for a shared NAT).
 * In memory, per server process (docs/decisions.md, "Login rate limit").
 */

export interface LoginLimits {
  readonly perAccount: number;
  readonly perAddress: number;
  readonly windowMs: number;
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = { perAccount: 5, perAddress: 20, windowMs: 60_000 };

/** Keys followed at most; past it the oldest are forgotten, so a flood of names cannot fill memory. */
const MAX_KEYS = 100_000;

export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly limits: LoginLimits = DEFAULT_LOGIN_LIMITS, private readonly now: () => number = Date.now) {}

  /** Seconds to wait before `account` may try again from `address`; 0 when it may now. */
  retryAfter(account: string, address: string): number {
    const t = this.now();
    const wait = (key: string, limit: number): number => {
      const recent = this.recent(key, t);
      return recent.length >= limit ? recent[recent.length - limit]! + this.limits.windowMs - t : 0;
    };
    const ms = Math.max(wait(`a:${account}`, this.limits.perAccount), wait(`ip:${address}`, this.limits.perAddress));
    return ms > 0 ? Math.ceil(ms / 1000) : 0;
  }

  fail(account: string, address: string): void {
    const t = this.now();
    for (const key of [`a:${account}`, `ip:${address}`]) {
      const list = this.recent(key, t);
      list.push(t);
      this.failures.delete(key);
      this.failures.set(key, list);
    }
    while (this.failures.size > MAX_KEYS) this.failures.delete(this.failures.keys().next().value!);
  }

  /** A successful login forgets the account's failures (not the address's). */
  succeed(account: string): void {
    this.failures.delete(`a:${account}`);
  }

  private recent(key: string, t: number): number[] {
    const list = (this.failures.get(key) ?? []).filter((x) => x > t - this.limits.windowMs);
    if (list.length === 0) this.failures.delete(key);
    else this.failures.set(key, list);
    return list;
  }
}
