const WINDOW_MS = 60_000;

/**
 * Failed attempts per client address in fixed one-minute windows, kept in
 * memory (per portal process, like the route rate limits). For credentials
 * checked before any route runs (bearer API tokens), where the route rate
 * limits cannot count: callers check `exhausted` before verifying, so an
 * address over the limit learns nothing more, right guess or wrong.
 */
export class FailedAttempts {
  readonly #max: number;
  readonly #now: () => number;
  #windowStartMs = 0;
  #counts = new Map<string, number>();

  constructor(maxPerMinute: number, now: () => number = Date.now) {
    this.#max = maxPerMinute;
    this.#now = now;
  }

  /** Whether the address has used up its failures in the current window. */
  exhausted(address: string): boolean {
    return (this.#window().get(address) ?? 0) >= this.#max;
  }

  record(address: string): void {
    const counts = this.#window();
    counts.set(address, (counts.get(address) ?? 0) + 1);
  }

  /** The current window's counts; a new window forgets the old one (memory stays bounded). */
  #window(): Map<string, number> {
    const now = this.#now();
    if (now - this.#windowStartMs >= WINDOW_MS) {
      this.#windowStartMs = now;
      this.#counts = new Map();
    }
    return this.#counts;
  }
}
