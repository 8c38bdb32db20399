import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/main.ts";
import type { TenantHomeserver } from "../../src/tenants/types.ts";
import { startAppserviceApp } from "../support/appservice-app.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { freePort } from "../support/synapse.ts";

/**
 * Regression (issue 8, runtime killed mid-burst): a restarted runtime waited
 * for Synapse's appservice backoff (doubling up to 8.5 minutes) before the
 * events held back while it was down arrived. On start it now pings each
 * homeserver (MSC2659), which makes Synapse send them at once.
 */
describe("runtime start", () => {
  let database: TestDatabase;
  let app: App;
  let homeserver: TenantHomeserver;
  const seen: { method: string; path: string; authorization: string | undefined }[] = [];
  const server = createServer((request: IncomingMessage, response) => {
    seen.push({
      method: request.method ?? "",
      path: request.url ?? "",
      authorization: request.headers.authorization,
    });
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ duration_ms: 1 }));
  });

  beforeAll(async () => {
    database = await createTestDatabase("pglite");
    ({ app, homeserver } = await startAppserviceApp(database, { port: await freePort() }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    await app.tenantRepository.updateHomeserverUrl(
      database.knex,
      homeserver.tenantId,
      `http://127.0.0.1:${String(port)}`,
    );
  });

  afterAll(async () => {
    await app.runtime.stop();
    await new Promise((resolve) => server.close(resolve));
    await database.drop();
  });

  it("asks each homeserver to ping it, so held-back transactions come at once", async () => {
    await app.runtime.start();
    await expect
      .poll(() => seen.find((request) => request.path.includes("/appservice/")))
      .toMatchObject({
        method: "POST",
        path: expect.stringMatching(
          /^\/_matrix\/client\/v1\/appservice\/switchboard-acme\/ping(\?|$)/u,
        ) as unknown,
        authorization: `Bearer ${homeserver.asToken}`,
      });
  });
});
