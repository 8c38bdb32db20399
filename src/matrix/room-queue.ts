/**
 * Runs tasks one at a time per key (a tenant's room), in the order they were
 * pushed, and different keys concurrently. matrix-appservice-bridge's
 * EventQueue orders only the delivery of results whose work already runs in
 * parallel; answering in order needs the work itself serialised, hence this.
 */
export class KeyedSerialQueue {
  readonly #tails = new Map<string, Promise<void>>();
  readonly #onError: (error: unknown, key: string) => void;

  constructor(onError: (error: unknown, key: string) => void) {
    this.#onError = onError;
  }

  push(key: string, task: () => Promise<void>): void {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const next = previous.then(task).catch((error: unknown) => {
      this.#onError(error, key);
    });
    this.#tails.set(key, next);
    void next.then(() => {
      // Forget idle keys so the map does not grow with every room ever seen.
      if (this.#tails.get(key) === next) this.#tails.delete(key);
    });
  }

  /** Number of keys with queued or running work. */
  get activeKeys(): number {
    return this.#tails.size;
  }

  /** Resolves when everything pushed so far has finished. */
  async drain(): Promise<void> {
    while (this.#tails.size > 0) await Promise.all([...this.#tails.values()]);
  }
}
