import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { AccountId } from "../../src/accounts/types.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { memberships, type MemberRole } from "../../src/tenants/memberships.ts";
import { TEST_PASSWORD, type Browser, type PortalTest } from "./portal.ts";

/** The account id of a signed-in browser. */
export async function accountIdOf(browser: Browser): Promise<AccountId> {
  const me = (await browser.request("/api/v1/me")).json() as { account: { id: AccountId } };
  return me.account.id;
}

/** A tenant made through the service (active, with a homeserver at `homeserverUrl`), and its members. */
export async function seedTenant(
  t: PortalTest,
  slug: string,
  members: readonly { browser: Browser; role: MemberRole }[] = [],
  homeserverUrl = "http://127.0.0.1:9/",
): Promise<{ id: TenantId; slug: string }> {
  const { tenant } = await t.app.tenants.create({
    slug,
    name: `Tenant ${slug}`,
    serverName: `${slug}.example.test`,
    homeserverUrl,
  });
  for (const { browser, role } of members) {
    const accountId = await accountIdOf(browser);
    await withTenant(t.app.database.knex, tenant.id, (trx) =>
      memberships.add(trx, tenant.id, accountId, role),
    );
  }
  return { id: tenant.id, slug: tenant.slug };
}

/** A browser signed in as an operator (made like `switchboard operator create`). */
export async function signedInOperator(t: PortalTest, email: string): Promise<Browser> {
  await t.app.accounts.makeOperator(email, TEST_PASSWORD);
  const browser = t.browser();
  const login = await browser.request("/api/v1/session", {
    json: { email, password: TEST_PASSWORD },
  });
  if (login.statusCode !== 200) throw new Error(`operator login failed: ${login.body}`);
  return browser;
}

/** A local HTTP server standing in for a homeserver's /health: answers with `status()`. */
export async function fakeHomeserver(
  status: () => number,
): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((request, response) => {
    if (request.url === "/health") hits += 1;
    response.writeHead(request.url === "/health" ? status() : 404).end("OK");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${String(port)}`,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => {
          if (error === undefined) resolve();
          else reject(error);
        });
      }),
  };
}
