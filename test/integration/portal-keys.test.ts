import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TenantId } from "../../src/shared/ids.ts";
import { BACKENDS } from "../support/database.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";
import {
  bearer,
  createTenant,
  errorOf,
  expireSession,
  rowCounts,
  type TenantBody,
} from "../support/portal-tenants.ts";

const OPENAI_KEY = "sk-test-0123456789-secret-WXYZ";
const ANTHROPIC_KEY = "sk-ant-9876543210-secret-ABCD";

/** Every stored row that could echo a secret, as text. */
async function storedText(t: PortalTest): Promise<string> {
  const knex = t.database.knex;
  return JSON.stringify([await knex("provider_keys"), await knex("audit_log")]);
}

describe.each(BACKENDS)("keys and API tokens (%s)", (database) => {
  let t: PortalTest;
  let owner: Browser;
  let tenant: TenantBody;
  /** Every response body of the test, to check that no secret ever comes back. */
  const bodies: string[] = [];
  const keysUrl = () => `/api/v1/tenants/${tenant.id}/keys`;
  const tokensUrl = () => `/api/v1/tenants/${tenant.id}/tokens`;
  const request = async (...args: Parameters<Browser["request"]>) => {
    const response = await owner.request(...args);
    bodies.push(response.body);
    return response;
  };

  beforeAll(async () => {
    t = await startPortalTest({ database });
    owner = await t.signedIn("owner@example.org");
    tenant = await createTenant(owner, "keys");
  });
  afterAll(async () => {
    await t.stop();
  });

  it("keeps provider keys write-only: set, list masked, replace, remove", async () => {
    const set = await request(`${keysUrl()}/openai`, { method: "PUT", json: { key: OPENAI_KEY } });
    expect(set.statusCode).toBe(200);
    expect(set.json()).toEqual({ provider: "openai", hint: "…WXYZ" });
    const viaForm = await request("/t/keys/keys/anthropic", { form: { key: ANTHROPIC_KEY } });
    expect(viaForm.statusCode).toBe(303);
    const listed = await request(keysUrl());
    expect(listed.json()).toEqual({
      items: [
        { provider: "anthropic", hint: "…ABCD" },
        { provider: "openai", hint: "…WXYZ" },
      ],
      nextCursor: null,
    });
    const paged = await request(`${keysUrl()}?limit=1`);
    expect((paged.json() as { items: unknown[]; nextCursor: string | null }).nextCursor).not.toBe(
      null,
    );
    const page = await request("/t/keys/keys");
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("…WXYZ");
    bodies.push((await request(`/api/v1/tenants/${tenant.id}`)).body);
    bodies.push((await request("/t/keys")).body);

    // The runtime can still use them: they are stored encrypted, not lost.
    expect(await t.app.providerKeys.reveal(tenant.id as TenantId, "openai")).toBe(OPENAI_KEY);
    const stored = await storedText(t);
    expect(stored).not.toContain(OPENAI_KEY);
    expect(stored).not.toContain(ANTHROPIC_KEY);

    const removed = await request(`${keysUrl()}/anthropic`, { method: "DELETE" });
    expect(removed.statusCode).toBe(204);
    const again = await request(`${keysUrl()}/anthropic`, { method: "DELETE" });
    expect(again.statusCode).toBe(404);
    const removeForm = await request("/t/keys/keys/openai/remove", { form: {} });
    expect(removeForm.statusCode).toBe(303);
    expect((await request(keysUrl())).json()).toEqual({ items: [], nextCursor: null });

    for (const body of bodies) {
      expect(body).not.toContain(OPENAI_KEY);
      expect(body).not.toContain(ANTHROPIC_KEY);
    }
  });

  it("shows a token's plaintext in the create response only, and a revoked token gets 401", async () => {
    const created = await request(tokensUrl(), { json: { name: "deploy" } });
    expect(created.statusCode).toBe(201);
    expect(created.headers["cache-control"]).toBe("no-store");
    const { token, plaintext } = created.json() as {
      token: { id: string; prefix: string };
      plaintext: string;
    };
    expect(plaintext).toMatch(/^sbt_/);
    expect(plaintext.startsWith(token.prefix)).toBe(true);

    const viaForm = await request("/t/keys/tokens", { form: { name: "script" } });
    expect(viaForm.statusCode).toBe(200);
    expect(viaForm.headers["cache-control"]).toBe("no-store");
    const formPlaintext = /id="new-token">(sbt_[A-Za-z0-9_-]+)</.exec(viaForm.body)?.[1];
    expect(formPlaintext).toBeDefined();

    const later = [
      await request(tokensUrl()),
      await request("/t/keys/keys"),
      await request(`${tokensUrl()}?limit=1`),
    ];
    const listed = later[0]?.json() as {
      items: { name: string; prefix: string; lastUsedAt: string | null }[];
    };
    expect(listed.items.map((item) => item.name)).toEqual(["script", "deploy"]);
    for (const response of later) {
      expect(response.statusCode).toBe(200);
      expect(response.body).not.toContain(plaintext);
      expect(response.body).not.toContain(formPlaintext);
    }
    expect(await storedText(t)).not.toContain(plaintext);
    expect(JSON.stringify(await t.database.knex("api_tokens"))).not.toContain(plaintext);

    // The token acts as an admin of its own tenant only.
    const anon = t.browser();
    const own = await anon.request(keysUrl(), { headers: bearer(plaintext) });
    expect(own.statusCode).toBe(200);
    const other = await createTenant(await t.signedIn("other@example.org"), "other-keys");
    const theirs = await anon.request(`/api/v1/tenants/${other.id}/keys`, {
      headers: bearer(plaintext),
    });
    expect(theirs.statusCode).toBe(404);
    const used = (await request(tokensUrl())).json() as {
      items: { name: string; lastUsedAt: string | null }[];
    };
    expect(used.items.find((item) => item.name === "deploy")?.lastUsedAt).not.toBeNull();

    const revoked = await request(`${tokensUrl()}/${token.id}`, { method: "DELETE" });
    expect(revoked.statusCode).toBe(204);
    expect((await request(`${tokensUrl()}/${token.id}`, { method: "DELETE" })).statusCode).toBe(
      404,
    );
    const refused = await anon.request(keysUrl(), { headers: bearer(plaintext) });
    expect(refused.statusCode).toBe(401);
    expect(errorOf(refused)).toMatch(/invalid or revoked/);
    const list = (await request(tokensUrl())).json() as {
      items: { id: string; revokedAt: string | null }[];
    };
    expect(list.items.find((item) => item.id === token.id)?.revokedAt).not.toBeNull();

    // Revoking from the page.
    const scriptId = /\/tokens\/([0-9a-f-]{36})\/revoke/.exec(
      (await request("/t/keys/keys")).body,
    )?.[1];
    const revokeForm = await request(`/t/keys/tokens/${scriptId ?? ""}/revoke`, { form: {} });
    expect(revokeForm.statusCode).toBe(303);
    expect(
      (await anon.request(keysUrl(), { headers: bearer(formPlaintext ?? "") })).statusCode,
    ).toBe(401);
  });

  it("refuses bad input to every keys route with a 4xx and writes nothing", async () => {
    const before = await rowCounts(t);
    const cases: [string, string, "GET" | "PUT" | "POST" | "DELETE", unknown, number][] = [
      ["unknown provider", `${keysUrl()}/mistral`, "PUT", { key: OPENAI_KEY }, 400],
      ["short key", `${keysUrl()}/openai`, "PUT", { key: "short" }, 400],
      ["key with spaces", `${keysUrl()}/openai`, "PUT", { key: "sk abc def ghi" }, 400],
      ["oversized key", `${keysUrl()}/openai`, "PUT", { key: "k".repeat(1025) }, 400],
      ["too long for a key", `${keysUrl()}/openai`, "PUT", { key: "k".repeat(600) }, 400],
      ["missing key", `${keysUrl()}/openai`, "PUT", {}, 400],
      ["key of the wrong type", `${keysUrl()}/openai`, "PUT", { key: 12345678 }, 400],
      ["unset key", `${keysUrl()}/openai`, "DELETE", undefined, 404],
      ["missing name", tokensUrl(), "POST", {}, 400],
      ["blank name", tokensUrl(), "POST", { name: "  " }, 400],
      ["oversized name", tokensUrl(), "POST", { name: "n".repeat(65) }, 400],
      ["name of the wrong type", tokensUrl(), "POST", { name: ["x"] }, 400],
      [
        "unknown token",
        `${tokensUrl()}/00000000-0000-4000-8000-000000000000`,
        "DELETE",
        undefined,
        404,
      ],
      ["not a token id", `${tokensUrl()}/nope`, "DELETE", undefined, 404],
    ];
    for (const [label, url, method, json, status] of cases) {
      const response = await request(url, json === undefined ? { method } : { method, json });
      expect(response.statusCode, `${label}: ${response.body}`).toBe(status);
      expect(errorOf(response).length, label).toBeGreaterThan(0);
    }
    const short = await request(`${keysUrl()}/openai`, { method: "PUT", json: { key: "sk-ab c" } });
    expect(errorOf(short)).not.toContain("sk-ab");
    const xml = await request(`${keysUrl()}/openai`, {
      method: "PUT",
      body: "<key/>",
      headers: { "content-type": "application/xml", "x-csrf-token": await owner.csrfToken() },
    });
    expect(xml.statusCode).toBe(415);
    const noCsrf = await request(`${keysUrl()}/openai`, {
      method: "PUT",
      json: { key: OPENAI_KEY },
      csrf: false,
    });
    expect(noCsrf.statusCode).toBe(403);
    const formBad = await request("/t/keys/keys/openai", { form: { key: "short" } });
    expect(formBad.statusCode).toBe(400);
    expect(formBad.body).toContain("8-512 characters");
    const formNoCsrf = await request("/t/keys/tokens", { form: { name: "x" }, csrf: false });
    expect(formNoCsrf.statusCode).toBe(403);
    expect(await rowCounts(t)).toEqual(before);
  });

  it("needs the admin role, hides other tenants, and refuses expired sessions", async () => {
    const member = await t.signedIn("member@example.org");
    await t.database.knex("memberships").insert({
      tenant_id: tenant.id,
      account_id: (await t.database.knex("accounts").where({ email: "member@example.org" }).first())
        .id,
      role: "member",
    });
    const stranger = await t.signedIn("stranger@example.org");
    const before = await rowCounts(t);
    for (const [who, status] of [
      [member, 403],
      [stranger, 404],
    ] as const) {
      expect((await who.request(keysUrl())).statusCode).toBe(status);
      expect((await who.request(tokensUrl())).statusCode).toBe(status);
      expect((await who.request("/t/keys/keys")).statusCode).toBe(status);
      const put = await who.request(`${keysUrl()}/openai`, {
        method: "PUT",
        json: { key: OPENAI_KEY },
      });
      expect(put.statusCode).toBe(status);
      expect((await who.request(tokensUrl(), { json: { name: "x" } })).statusCode).toBe(status);
      expect((await who.request("/t/keys/tokens", { form: { name: "x" } })).statusCode).toBe(
        status,
      );
    }
    await expireSession(t, member);
    expect((await member.request(keysUrl())).statusCode).toBe(401);
    expect((await member.request("/t/keys/keys")).statusCode).toBe(303);
    expect(await rowCounts(t)).toEqual(before);
  });
});
