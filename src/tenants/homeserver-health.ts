/** What a homeserver's /health endpoint said, and when. */
export interface HomeserverHealthStatus {
  /** up: 200 from /health; down: another status, a refused connection or a timeout. */
  readonly state: "up" | "down";
  /** A short reason for `down` (the status code, "timeout", the network error's code). */
  readonly detail: string | null;
  readonly checkedAt: Date;
}

/**
 * Asks homeservers whether they are alive. Contract: never throws (a failure
 * is a `down` status), bounded by a short timeout, and must never be called
 * inside a database transaction (it does network I/O).
 */
export interface HomeserverHealth {
  check(clientUrl: string): Promise<HomeserverHealthStatus>;
}

export const HEALTH_TIMEOUT_MS = 2_000;
export const HEALTH_CACHE_MS = 30_000;
/** Enough for an admin list page; the oldest answers are forgotten first. */
const MAX_CACHED_URLS = 1_000;

/**
 * GET <clientUrl>/health with a timeout, remembered for a while so that an
 * admin list of many tenants does not hammer their homeservers; concurrent
 * checks of one URL share one request.
 */
export class HttpHomeserverHealth implements HomeserverHealth {
  readonly #timeoutMs: number;
  readonly #cacheMs: number;
  readonly #now: () => number;
  readonly #cache = new Map<string, { at: number; status: Promise<HomeserverHealthStatus> }>();

  constructor(options: { timeoutMs?: number; cacheMs?: number; now?: () => number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? HEALTH_TIMEOUT_MS;
    this.#cacheMs = options.cacheMs ?? HEALTH_CACHE_MS;
    this.#now = options.now ?? Date.now;
  }

  check(clientUrl: string): Promise<HomeserverHealthStatus> {
    const now = this.#now();
    const cached = this.#cache.get(clientUrl);
    if (cached !== undefined && now - cached.at < this.#cacheMs) return cached.status;
    const status = this.#probe(clientUrl);
    this.#cache.delete(clientUrl);
    this.#cache.set(clientUrl, { at: now, status });
    if (this.#cache.size > MAX_CACHED_URLS) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    return status;
  }

  async #probe(clientUrl: string): Promise<HomeserverHealthStatus> {
    const down = (detail: string): HomeserverHealthStatus => ({
      state: "down",
      detail,
      checkedAt: new Date(this.#now()),
    });
    let url: URL;
    try {
      url = new URL("health", clientUrl.endsWith("/") ? clientUrl : `${clientUrl}/`);
    } catch {
      return down("not a URL");
    }
    try {
      const response = await fetch(url, {
        signal: AbortSignal.timeout(this.#timeoutMs),
        redirect: "manual",
      });
      await response.body?.cancel();
      return response.status === 200
        ? { state: "up", detail: null, checkedAt: new Date(this.#now()) }
        : down(`HTTP ${String(response.status)}`);
    } catch (error) {
      if (error instanceof DOMException && error.name === "TimeoutError") return down("timeout");
      const cause = (error as { cause?: { code?: unknown } }).cause;
      return down(typeof cause?.code === "string" ? cause.code : "unreachable");
    }
  }
}
