import type { Logger } from "../shared/logger.ts";
import { tenantDeletion } from "../tenants/deletion.ts";
import type { SessionStore } from "./auth/sessions.ts";
import { buildPortal } from "./server.ts";
import type { PortalApp, PortalDeps } from "./types.ts";

const HOUR_MS = 3_600_000;

/** The portal process: its HTTP listener and its housekeeping (expired sessions, tenants past their deletion retention). */
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
      void this.purgeDeletedTenants();
    }, HOUR_MS);
    this.#housekeeping.unref();
    this.#deps.billing.start();
    this.#log.info({ url, publicUrl: this.#deps.publicUrl }, "portal listening");
    return url;
  }

  /** Erases tenants whose deletion retention period is over (hourly housekeeping). */
  async purgeDeletedTenants(): Promise<void> {
    try {
      for (const purged of await tenantDeletion.purgeDue(this.#deps.db))
        this.#log.warn(
          { slug: purged.slug, serverName: purged.serverName },
          "tenant erased after its retention period; its homeserver must still be torn down",
        );
    } catch (error) {
      this.#log.warn({ err: error }, "purging deleted tenants failed");
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#housekeeping);
    this.#deps.billing.stop();
    await this.#app?.close();
  }
}
