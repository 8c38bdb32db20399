import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/main.ts";
import { INTENTS_CACHED_PER_TENANT } from "../../src/matrix/tenant-registry.ts";
import type { TenantHomeserver } from "../../src/tenants/types.ts";
import { startAppserviceApp } from "../support/appservice-app.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

// Regression (bench/density.ts): matrix-bot-sdk preallocates its intent cache
// at its default of 10,000 entries, about 400 KB per served tenant.
describe("a served tenant's Appservice", () => {
  let database: TestDatabase;
  let app: App;
  let homeserver: TenantHomeserver;

  beforeAll(async () => {
    database = await createTestDatabase("pglite");
    ({ app, homeserver } = await startAppserviceApp(database));
  });
  afterAll(async () => {
    await app.runtime.stop();
    await database.drop();
  });

  it("keeps a bounded intent cache and rebuilds an evicted intent on use", async () => {
    const served = await app.runtime.registry.get(homeserver.tenantId);
    if (served === undefined) throw new Error("tenant not served");
    const cache = (served.appservice as unknown as { intentsCache: { max: number } }).intentsCache;
    expect(cache.max).toBe(INTENTS_CACHED_PER_TENANT);

    const first = served.appservice.getIntentForUserId("@agent_a0:acme.test");
    expect(served.appservice.getIntentForUserId("@agent_a0:acme.test")).toBe(first);
    for (let index = 1; index <= INTENTS_CACHED_PER_TENANT; index++)
      served.appservice.getIntentForUserId(`@agent_a${String(index)}:acme.test`);
    const rebuilt = served.appservice.getIntentForUserId("@agent_a0:acme.test");
    expect(rebuilt).not.toBe(first);
    expect(rebuilt.userId).toBe("@agent_a0:acme.test");
  });
});
