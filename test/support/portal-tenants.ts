import type { LightMyRequestResponse } from "fastify";
import { expect } from "vitest";
import { SESSION_COOKIE } from "../../src/portal/auth/plugin.ts";
import { sha256Hex } from "../../src/secrets/cipher.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { TEST_PASSWORD, type Browser, type PortalTest } from "./portal.ts";

/** What the tenant API returns about a tenant (the fields tests look at). */
export interface TenantBody {
  id: string;
  slug: string;
  name: string;
  status: string;
  statusLabel: string;
  serverName: string | null;
  homeserverUrl: string | null;
  botUserId: string | null;
  role: string;
}

/** Creates a tenant through the API as the browser's account; fails the test otherwise. */
export async function createTenant(browser: Browser, slug: string): Promise<TenantBody> {
  const response = await browser.request("/api/v1/tenants", {
    json: { name: `Tenant ${slug}`, slug },
  });
  expect(response.statusCode, response.body).toBe(201);
  return response.json();
}

/** A browser signed in as an account whose email is not verified. */
export async function signedInUnverified(t: PortalTest, email: string): Promise<Browser> {
  const client = t.browser();
  const signup = await client.request("/api/v1/accounts", {
    json: { email, password: TEST_PASSWORD },
  });
  expect(signup.statusCode).toBe(202);
  const login = await client.request("/api/v1/session", {
    json: { email, password: TEST_PASSWORD },
  });
  expect(login.statusCode).toBe(200);
  return client;
}

/** Row counts of the tables these features write, to assert that a refused request wrote nothing. */
export async function rowCounts(t: PortalTest): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of [
    "tenants",
    "homeservers",
    "memberships",
    "invitations",
    "api_tokens",
    "provider_keys",
    "tenant_admins",
    "audit_log",
  ]) {
    const [row] = (await t.database.knex(table).count({ n: "*" })) as { n: string | number }[];
    counts[table] = Number(row?.n ?? 0);
  }
  return counts;
}

/** The error message of an API error response. */
export function errorOf(response: LightMyRequestResponse): string {
  return (response.json() as { error: { message: string } }).error.message;
}

/** Makes the browser's session expired in the database (as if it sat idle too long). */
export async function expireSession(t: PortalTest, browser: Browser): Promise<void> {
  const cookie = browser.cookies.get(SESSION_COOKIE);
  if (cookie === undefined) throw new Error("the browser is not signed in");
  const expired = await t.database
    .knex("sessions")
    .where({ id_sha256: sha256Hex(cookie) })
    .update({ expires_at: new Date(Date.now() - 1000) });
  expect(expired).toBe(1);
}

/** An API token of a tenant, made through the service (as an admin would on the keys page). */
export async function tokenFor(t: PortalTest, tenantId: string): Promise<string> {
  const { plaintext } = await t.app.apiTokens.create(tenantId as TenantId, { name: "test" }, null, {
    id: "test",
    via: "cli",
  });
  return plaintext;
}

export const bearer = (token: string): Record<string, string> => ({
  authorization: `Bearer ${token}`,
});
