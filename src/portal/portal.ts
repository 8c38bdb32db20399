import type { Logger } from "../shared/logger.ts";
import type { SessionStore } from "./auth/sessions.ts";
import { buildPortal } from "./server.ts";
import type { PortalApp, PortalDeps } from "./types.ts";

const HOUR_MS = 3_600_000;

/** The portal process: its HTTP listener and its housekeeping (expired sessions). */
export class Portal {
  readonly #deps: PortalDeps;
  readonly #log: Logger;
  readonly #sessions: SessionStore;
  #app: PortalApp | undefined;
  #housekeeping: NodeJS.Timeout | undefined;

  constructor(deps: PortalDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ module: "portal" });
    this.#sessions = deps.sessions;
  }

  /** The Fastify app, built once (tests `inject` into it without listening). */
  async app(): Promise<PortalApp> {
    this.#app ??= await buildPortal(this.#deps);
    return this.#app;
  }

  /** Listens on portal.host:port; resolves to the address. */
  async start(): Promise<string> {
    const app = await this.app();
    const { host, port } = this.#deps.config.portal;
    const url = await app.listen({ host, port });
    this.#housekeeping = setInterval(() => {
      this.#sessions.prune().catch((error: unknown) => {
        this.#log.warn({ err: error }, "pruning expired sessions failed");
      });
    }, HOUR_MS);
    this.#housekeeping.unref();
    this.#log.info({ url, publicUrl: this.#deps.publicUrl }, "portal listening");
    return url;
  }

  async stop(): Promise<void> {
    clearInterval(this.#housekeeping);
    await this.#app?.close();
  }
}
