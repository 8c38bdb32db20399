import { parseConfig } from "../../src/config/load.ts";
import { createApp, type App } from "../../src/main.ts";
import { createLogger } from "../../src/shared/logger.ts";
import type { TenantHomeserver } from "../../src/tenants/types.ts";
import type { TestDatabase } from "./database.ts";

/**
 * The app from the composition root with one tenant ("acme") whose
 * homeserver is never contacted: for tests of the appservice endpoint through
 * `app.runtime.http.inject`, where rooms have no agents and events are
 * recorded and ignored.
 */
export async function startAppserviceApp(
  database: TestDatabase,
  runtime: Record<string, unknown> = {},
): Promise<{ app: App; homeserver: TenantHomeserver }> {
  const config = parseConfig(
    JSON.stringify({
      secrets: { masterKeys: { t: Buffer.alloc(32, 1).toString("base64") } },
      runtime,
    }),
    {},
    "test",
  );
  const app = await createApp(config, {
    database,
    log: createLogger({ level: "silent", pretty: false }),
  });
  const { homeserver } = await app.tenants.create({
    slug: "acme",
    name: "Acme",
    serverName: "acme.test",
    homeserverUrl: "http://127.0.0.1:9",
  });
  await app.runtime.http.ready();
  return { app, homeserver };
}
