import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/shared/logger.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

const METHODS = ["get", "post", "put", "patch", "delete"] as const;

interface OpenApi {
  paths: Record<string, Partial<Record<(typeof METHODS)[number], unknown>>>;
}

/** Every API operation that names a tenant, with another tenant's values filled in. */
function tenantOperations(openapi: OpenApi, tenantId: string) {
  const operations: { method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE"; url: string }[] = [];
  for (const [path, item] of Object.entries(openapi.paths)) {
    if (!path.includes("{tenantId}") || path.startsWith("/api/v1/admin")) continue;
    const url = path
      .replace("{tenantId}", tenantId)
      .replace("{name}", "ada")
      .replace("{provider}", "openai")
      .replace(
        /\{(personId|factId|tokenId|invitationId|accountId)\}/g,
        "00000000-0000-4000-8000-000000000000",
      );
    for (const method of METHODS)
      if (item[method] !== undefined)
        operations.push({ method: method.toUpperCase() as "GET", url });
  }
  return operations;
}

describe("portal security", () => {
  let t: PortalTest;
  const logLines: string[] = [];
  let alice: Browser;
  let bob: Browser;
  let aliceTenant: { id: string; slug: string };
  let bobTenant: { id: string; slug: string };

  async function createTenant(browser: Browser, slug: string) {
    const response = await browser.request("/api/v1/tenants", { json: { name: slug, slug } });
    expect(response.statusCode, response.body).toBe(201);
    return response.json() as { id: string; slug: string };
  }

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logLines.push(chunk.toString("utf8"));
        done();
      },
    });
    t = await startPortalTest({
      database: "postgres",
      log: createLogger({ level: "debug", pretty: false, destination: sink }),
    });
    alice = await t.signedIn("alice@example.org");
    bob = await t.signedIn("bob@example.org");
    aliceTenant = await createTenant(alice, "alice-co");
    bobTenant = await createTenant(bob, "bob-co");
    const agent = await alice.request(`/api/v1/tenants/${aliceTenant.id}/agents`, {
      json: { name: "ada" },
    });
    expect(agent.statusCode, agent.body).toBe(201);
  });
  afterAll(async () => {
    await t.stop();
  });

  async function aliceState() {
    const agents = await alice.request(`/api/v1/tenants/${aliceTenant.id}/agents`);
    const audit = await alice.request(`/api/v1/tenants/${aliceTenant.id}/audit?limit=100`);
    return { agents: agents.body, audit: (audit.json() as { items: unknown[] }).items.length };
  }

  it("answers 404 to every tenant route of the API when another account guesses the id, and changes nothing", async () => {
    const openapi = (await alice.request("/api/v1/openapi.json")).json() as OpenApi;
    const operations = tenantOperations(openapi, aliceTenant.id);
    expect(operations.length).toBeGreaterThan(25);
    const before = await aliceState();
    for (const { method, url } of operations) {
      const response = await bob.request(url, {
        method,
        ...(method === "GET" || method === "DELETE"
          ? {}
          : { json: { name: "x", key: "sk-aaaaaaaaaaaa" } }),
      });
      expect(response.statusCode, `${method} ${url}: ${response.body}`).toBe(404);
      expect(response.body).not.toContain("alice");
    }
    expect(await aliceState()).toEqual(before);
  });

  it("answers 404 to the tenant's pages and their forms", async () => {
    for (const path of [
      "",
      "/agents",
      "/agents/ada",
      "/members",
      "/keys",
      "/usage",
      "/memory",
      "/audit",
      "/settings",
    ]) {
      const page = await bob.request(`/t/${aliceTenant.slug}${path}`);
      expect(page.statusCode, path).toBe(404);
    }
    const before = await aliceState();
    for (const path of ["/agents/ada/delete", "/settings/delete", "/members/invite", "/tokens"]) {
      const post = await bob.request(`/t/${aliceTenant.slug}${path}`, {
        form: { slug: aliceTenant.slug, email: "mallory@example.org", role: "admin", name: "x" },
      });
      expect(post.statusCode, path).toBe(404);
    }
    expect(await aliceState()).toEqual(before);
  });

  it("keeps an API token to its own tenant, and a revoked token out everywhere", async () => {
    const created = await bob.request(`/api/v1/tenants/${bobTenant.id}/tokens`, {
      json: { name: "ci" },
    });
    expect(created.statusCode, created.body).toBe(201);
    const {
      plaintext: token,
      token: { id },
    } = created.json() as { plaintext: string; token: { id: string } };
    const asToken = (url: string) =>
      t.browser().request(url, { headers: { authorization: `Bearer ${token}` } });
    expect((await asToken(`/api/v1/tenants/${bobTenant.id}/agents`)).statusCode).toBe(200);
    expect((await asToken(`/api/v1/tenants/${aliceTenant.id}/agents`)).statusCode).toBe(404);
    expect((await asToken(`/t/${bobTenant.slug}/agents`)).statusCode).toBe(200);

    const revoked = await bob.request(`/api/v1/tenants/${bobTenant.id}/tokens/${id}`, {
      method: "DELETE",
    });
    expect(revoked.statusCode).toBeLessThan(300);
    const afterRevoke = await asToken(`/api/v1/tenants/${bobTenant.id}/agents`);
    expect(afterRevoke.statusCode).toBe(401);
    expect((afterRevoke.json() as { error: { message: string } }).error.message).toMatch(/revoked/);
    const write = await t.browser().request(`/api/v1/tenants/${bobTenant.id}/agents`, {
      json: { name: "sneaky" },
      headers: { authorization: `Bearer ${token}` },
      csrf: false,
    });
    expect(write.statusCode).toBe(401);
    const agents = await bob.request(`/api/v1/tenants/${bobTenant.id}/agents`);
    expect(agents.body).not.toContain("sneaky");
  });

  it("refuses a CSRF token from another session, another browser, or none", async () => {
    const aliceToken = await alice.csrfToken();
    const bobToken = await bob.csrfToken();
    const url = `/api/v1/tenants/${aliceTenant.id}/agents`;

    // The same person signed in in a second browser: the first session's token does not carry over.
    const aliceElsewhere = await (async () => {
      const other = t.browser();
      const login = await other.request("/api/v1/session", {
        json: { email: "alice@example.org", password: "correct horse battery staple" },
      });
      expect(login.statusCode).toBe(200);
      return other;
    })();
    for (const [who, browser, token] of [
      ["alice elsewhere with alice's first token", aliceElsewhere, aliceToken],
      ["alice with bob's token", alice, bobToken],
      ["alice with no token", alice, undefined],
    ] as const) {
      const response = await browser.request(url, {
        json: { name: "forged" },
        csrf: false,
        ...(token === undefined ? {} : { headers: { "x-csrf-token": token } }),
      });
      expect(response.statusCode, who).toBe(403);
    }
    // A form posted with a token from before sign-in (another session) is refused too.
    const anonymous = t.browser();
    const anonymousToken = await anonymous.csrfToken();
    const form = await alice.request(`/t/${aliceTenant.slug}/agents/new`, {
      form: { name: "forged", _csrf: anonymousToken },
    });
    expect(form.statusCode).toBe(403);
    expect((await alice.request(url)).body).not.toContain("forged");
  });

  it("ends a session at logout and treats the old cookie as signed out", async () => {
    const browser = t.browser();
    const login = await browser.request("/api/v1/session", {
      json: { email: "bob@example.org", password: "correct horse battery staple" },
    });
    expect(login.statusCode).toBe(200);
    const stolen = new Map(browser.cookies);
    expect((await browser.request("/api/v1/session", { method: "DELETE" })).statusCode).toBe(204);
    const replay = t.browser();
    for (const [name, value] of stolen) replay.cookies.set(name, value);
    expect((await replay.request(`/api/v1/tenants/${bobTenant.id}/agents`)).statusCode).toBe(401);
    const page = await replay.request(`/t/${bobTenant.slug}`);
    expect(page.statusCode).toBe(303);
    expect(page.headers.location).toMatch(/^\/login/);
  });

  it("never writes passwords, keys, API tokens or session cookies to the logs", async () => {
    const key = "sk-live-this-must-never-be-logged-1234";
    const set = await alice.request(`/api/v1/tenants/${aliceTenant.id}/keys/openai`, {
      method: "PUT",
      json: { key },
    });
    expect(set.statusCode, set.body).toBeLessThan(300);
    const token = (
      (
        await alice.request(`/api/v1/tenants/${aliceTenant.id}/tokens`, { json: { name: "logs" } })
      ).json() as {
        plaintext: string;
      }
    ).plaintext;
    await t.browser().request("/api/v1/session", {
      json: { email: "alice@example.org", password: "wrong password here" },
    });
    const logs = logLines.join("");
    expect(logs.length).toBeGreaterThan(0);
    for (const secret of [
      key,
      token,
      "correct horse battery staple",
      "wrong password here",
      ...alice.cookies.values(),
    ])
      expect(logs).not.toContain(secret);
  });

  it("sends security headers on pages and API", async () => {
    for (const url of ["/login", "/api/v1/me"]) {
      const response = await t.browser().request(url);
      expect(response.headers["content-security-policy"]).toContain("default-src 'self'");
      expect(response.headers["x-content-type-options"]).toBe("nosniff");
      expect(response.headers["x-frame-options"]).toBeDefined();
    }
    const login = await t.browser().request("/login");
    const setCookie = String(login.headers["set-cookie"]);
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Lax/);
  });
});
