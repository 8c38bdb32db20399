import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailedAttempts } from "../../src/portal/auth/failed-attempts.ts";
import { SESSION_COOKIE } from "../../src/portal/auth/plugin.ts";
import { sha256Hex } from "../../src/secrets/cipher.ts";
import { accountIdOf, seedTenant } from "../support/ops-fixtures.ts";
import {
  startPortalTest,
  TEST_PASSWORD,
  type Browser,
  type PortalTest,
} from "../support/portal.ts";

const AUTH_ATTEMPTS_PER_MINUTE = 3;

type Attempt = { json: Record<string, string> } | { form: Record<string, string> };

/** A POST from a given client address (the rate limits' key), with a browser's cookies and CSRF token. */
async function postFrom(
  t: PortalTest,
  address: string,
  url: string,
  attempt: Attempt,
  browser: Browser,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  const csrf = await browser.csrfToken();
  const isForm = "form" in attempt;
  return t.portal.inject({
    method: "POST",
    url,
    remoteAddress: address,
    headers: {
      ...headers,
      cookie: browser.cookieHeader(),
      ...(isForm
        ? { "content-type": "application/x-www-form-urlencoded" }
        : { "content-type": "application/json", "x-csrf-token": csrf }),
    },
    payload: isForm
      ? new URLSearchParams({ ...attempt.form, _csrf: csrf }).toString()
      : JSON.stringify(attempt.json),
  });
}

describe("sessions, CSRF and cookies", () => {
  let t: PortalTest;
  let alice: Browser;
  let tenant: { id: string; slug: string };

  const agentNames = async (): Promise<string[]> =>
    (await t.app.database.knex("agents").where("tenant_id", tenant.id).pluck("name")) as string[];
  const login = async (browser: Browser, password = TEST_PASSWORD) =>
    browser.request("/api/v1/session", { json: { email: "alice@example.org", password } });

  beforeAll(async () => {
    t = await startPortalTest({ database: "postgres" });
    alice = await t.signedIn("alice@example.org");
    await t.signedIn("mallory@example.org");
    tenant = await seedTenant(t, "alice-co", [{ browser: alice, role: "owner" }]);
  });
  afterAll(async () => {
    await t.stop();
  });

  it("refuses every kind of write without this session's CSRF token, and writes nothing", async () => {
    const mallory = t.browser();
    expect(
      (
        await mallory.request("/api/v1/session", {
          json: { email: "mallory@example.org", password: TEST_PASSWORD },
        })
      ).statusCode,
    ).toBe(200);
    const stale = await alice.csrfToken();
    // Alice signs in again in the same browser: a new session, so the old token is void.
    expect((await login(alice)).statusCode).toBe(200);
    const tokens: [string, string | undefined][] = [
      ["none", undefined],
      ["another account's", await mallory.csrfToken()],
      ["this browser's previous session's", stale],
      ["garbage", "x".repeat(80)],
    ];
    const api = `/api/v1/tenants/${tenant.id}`;
    for (const [which, token] of tokens) {
      const headers = token === undefined ? {} : { "x-csrf-token": token };
      const writes = [
        alice.request(`${api}/agents`, {
          json: { name: `forged-${String(which.length)}` },
          csrf: false,
          headers,
        }),
        alice.request(`${api}/tokens`, { json: { name: "forged" }, csrf: false, headers }),
        alice.request(api, { method: "DELETE", csrf: false, headers }),
        alice.request(`/t/${tenant.slug}/agents/new`, {
          form: { name: "forged", ...(token === undefined ? {} : { _csrf: token }) },
          csrf: false,
        }),
        alice.request(`/t/${tenant.slug}/tokens`, {
          form: { name: "forged", ...(token === undefined ? {} : { _csrf: token }) },
          csrf: false,
        }),
      ];
      for (const response of await Promise.all(writes))
        expect(response.statusCode, `${which}: ${response.body}`).toBe(403);
    }
    expect(await agentNames()).toEqual([]);
    expect(await t.app.database.knex("api_tokens").where("tenant_id", tenant.id)).toEqual([]);
    expect(await t.app.database.knex("tenants").where("id", tenant.id).first("status")).toEqual({
      status: "active",
    });
    // The control: the same write with the right token goes through.
    expect((await alice.request(`${api}/agents`, { json: { name: "ada" } })).statusCode).toBe(201);
  });

  it("starts a new session id at login, whatever session cookie the browser held before", async () => {
    // An attacker plants a cookie value of their choosing, and one of their own live sessions.
    const mallory = t.browser();
    await mallory.request("/api/v1/session", {
      json: { email: "mallory@example.org", password: TEST_PASSWORD },
    });
    const mallorySession = mallory.cookies.get(SESSION_COOKIE)!;
    for (const planted of ["A".repeat(43), mallorySession]) {
      const victim = t.browser();
      victim.cookies.set(SESSION_COOKIE, planted);
      expect((await login(victim)).statusCode).toBe(200);
      const issued = victim.cookies.get(SESSION_COOKIE);
      expect(issued).toBeDefined();
      expect(issued).not.toBe(planted);
      // The planted value gives the attacker nothing of Alice's.
      const attacker = t.browser();
      attacker.cookies.set(SESSION_COOKIE, planted);
      const me = await attacker.request("/api/v1/me");
      expect(me.body).not.toContain("alice@example.org");
    }
    // The database holds session hashes only.
    const ids = (await t.app.database.knex("sessions").pluck("id_sha256")) as string[];
    expect(ids).toContain(sha256Hex(mallorySession));
    expect(ids).not.toContain(mallorySession);
  });

  it("ends the session at logout (API and page) and every session at a password reset", async () => {
    for (const logout of [
      (browser: Browser) => browser.request("/api/v1/session", { method: "DELETE" }),
      (browser: Browser) => browser.request("/logout", { form: {} }),
    ]) {
      const browser = t.browser();
      expect((await login(browser)).statusCode).toBe(200);
      const cookie = browser.cookies.get(SESSION_COOKIE)!;
      expect((await logout(browser)).statusCode).toBeLessThan(400);
      expect(browser.cookies.has(SESSION_COOKIE)).toBe(false);
      const replay = t.browser();
      replay.cookies.set(SESSION_COOKIE, cookie);
      expect((await replay.request(`/api/v1/tenants/${tenant.id}/agents`)).statusCode).toBe(401);
    }

    const laptop = t.browser();
    const phone = t.browser();
    for (const browser of [laptop, phone]) expect((await login(browser)).statusCode).toBe(200);
    const accountId = await accountIdOf(laptop);
    const anonymous = t.browser();
    expect(
      (await anonymous.request("/api/v1/password-reset", { json: { email: "alice@example.org" } }))
        .statusCode,
    ).toBe(202);
    const { link } = await t.lastMailTo("alice@example.org");
    const token = new URL(link!).searchParams.get("token")!;
    const newPassword = "a brand new passphrase here";
    const reset = await anonymous.request("/api/v1/password-reset/confirm", {
      json: { token, password: newPassword },
    });
    expect(reset.statusCode, reset.body).toBe(200);
    for (const browser of [laptop, phone, alice])
      expect((await browser.request(`/api/v1/tenants/${tenant.id}/agents`)).statusCode).toBe(401);
    expect(await t.app.database.knex("sessions").where("account_id", accountId)).toEqual([]);
    // The reset link is spent, and the new password is the one that works.
    const again = await anonymous.request("/api/v1/password-reset/confirm", {
      json: { token, password: "yet another passphrase" },
    });
    expect(again.statusCode).toBeGreaterThanOrEqual(400);
    expect((await login(alice, newPassword)).statusCode).toBe(200);
  });

  it("sets the cookies HttpOnly, SameSite=Lax, Path=/ (and Secure behind https, below)", async () => {
    const browser = t.browser();
    await browser.csrfToken();
    const response = await browser.request("/api/v1/session", {
      json: { email: "mallory@example.org", password: TEST_PASSWORD },
    });
    const cookies = ([] as string[]).concat(response.headers["set-cookie"] ?? []);
    const session = cookies.find((cookie) => cookie.startsWith(`${SESSION_COOKIE}=`));
    expect(session).toBeDefined();
    for (const flag of [/; HttpOnly/i, /; SameSite=Lax/i, /; Path=\//i, /; Max-Age=\d+/i])
      expect(session).toMatch(flag);
    expect(session).not.toMatch(/; Secure/i);
    const browserCookie = String((await t.browser().request("/login")).headers["set-cookie"]);
    expect(browserCookie).toMatch(/HttpOnly/);
    expect(browserCookie).toMatch(/SameSite=Lax/);
  });
});

describe("cookies behind https", () => {
  it("are Secure when the portal's public address is https", async () => {
    const t = await startPortalTest({ config: { portal: { publicUrl: "https://portal.test" } } });
    try {
      const browser = await t.signedIn("alice@example.org");
      const response = await browser.request("/api/v1/session", {
        json: { email: "alice@example.org", password: TEST_PASSWORD },
      });
      const cookies = ([] as string[]).concat(response.headers["set-cookie"] ?? []);
      expect(cookies.length).toBeGreaterThan(0);
      for (const cookie of cookies) expect(cookie).toMatch(/; Secure/i);
      expect(String((await t.browser().request("/login")).headers["set-cookie"])).toMatch(
        /; Secure/i,
      );
    } finally {
      await t.stop();
    }
  });
});

describe("rate limits on authentication", () => {
  let t: PortalTest;
  let apiToken: string;

  beforeAll(async () => {
    // Set-up signs in from inject's default address; the attempts below come from others.
    t = await startPortalTest({
      config: { portal: { authAttemptsPerMinute: AUTH_ATTEMPTS_PER_MINUTE } },
    });
    const owner = await t.signedIn("alice@example.org");
    const tenant = await seedTenant(t, "alice-co", [{ browser: owner, role: "owner" }]);
    const made = await owner.request(`/api/v1/tenants/${tenant.id}/tokens`, {
      json: { name: "ci" },
    });
    apiToken = (made.json() as { plaintext: string }).plaintext;
  });
  afterAll(async () => {
    await t.stop();
  });

  const cases: [string, string, (attempt: number) => Attempt][] = [
    [
      "login",
      "/api/v1/session",
      (n) => ({ json: { email: "alice@example.org", password: `wrong guess ${String(n)}` } }),
    ],
    [
      "login page",
      "/login",
      (n) => ({ form: { email: "alice@example.org", password: `wrong guess ${String(n)}` } }),
    ],
    [
      "sign-up",
      "/api/v1/accounts",
      (n) => ({ json: { email: `new${String(n)}@example.org`, password: TEST_PASSWORD } }),
    ],
    [
      "sign-up page",
      "/signup",
      (n) => ({ form: { email: `page${String(n)}@example.org`, password: TEST_PASSWORD } }),
    ],
    ["reset", "/api/v1/password-reset", () => ({ json: { email: "alice@example.org" } })],
    ["reset page", "/reset", () => ({ form: { email: "alice@example.org" } })],
    [
      "reset confirm",
      "/api/v1/password-reset/confirm",
      (n) => ({ json: { token: `guess-${String(n)}`, password: TEST_PASSWORD } }),
    ],
    [
      "reset confirm page",
      "/reset/confirm",
      (n) => ({ form: { token: `guess-${String(n)}`, password: TEST_PASSWORD } }),
    ],
  ];

  it.each(cases.map((entry, index) => [...entry, index] as const))(
    "%s: 429 from an address after the configured count, not from another; forwarded-for changes nothing",
    async (_name, url, attempt, index) => {
      const address = `10.0.${String(index)}.1`;
      const browser = t.browser();
      const statuses: number[] = [];
      for (let n = 0; n <= AUTH_ATTEMPTS_PER_MINUTE; n += 1) {
        const response = await postFrom(t, address, url, attempt(n), browser, {
          "x-forwarded-for": `203.0.113.${String(n)}`,
        });
        statuses.push(response.statusCode);
      }
      expect(statuses.slice(0, AUTH_ATTEMPTS_PER_MINUTE)).not.toContain(429);
      expect(statuses[AUTH_ATTEMPTS_PER_MINUTE]).toBe(429);
      // The refused attempt did nothing: no account from a refused sign-up.
      const refused = attempt(AUTH_ATTEMPTS_PER_MINUTE);
      const email = "json" in refused ? refused.json.email : refused.form.email;
      if (url.includes("signup") || url.includes("accounts"))
        expect(
          await t.app.database.knex("accounts").where("email", email!).first(),
        ).toBeUndefined();
      const elsewhere = await postFrom(t, `10.1.${String(index)}.1`, url, attempt(99), t.browser());
      expect(elsewhere.statusCode).not.toBe(429);
    },
  );

  it("refuses API token guesses from an address after the configured count, even a right one", async () => {
    const guess = (address: string, token: string) =>
      t.portal.inject({
        method: "GET",
        url: "/api/v1/tenants",
        remoteAddress: address,
        headers: { authorization: `Bearer ${token}` },
      });
    const statuses: number[] = [];
    for (let n = 0; n <= AUTH_ATTEMPTS_PER_MINUTE; n += 1)
      statuses.push((await guess("10.2.0.1", `sbt_guess${String(n)}`)).statusCode);
    expect(statuses).toEqual([...Array<number>(AUTH_ATTEMPTS_PER_MINUTE).fill(401), 429]);
    // Over the limit, a right guess reads the same as a wrong one: no oracle.
    expect((await guess("10.2.0.1", apiToken)).statusCode).toBe(429);
    expect((await guess("10.2.0.2", apiToken)).statusCode).toBe(200);
    expect((await guess("10.2.0.2", "sbt_wrong")).statusCode).toBe(401);
  });
});

describe("FailedAttempts", () => {
  it("counts per address and forgets at the next minute", () => {
    let nowMs = 1_000_000;
    const failures = new FailedAttempts(2, () => nowMs);
    failures.record("10.0.0.1");
    expect(failures.exhausted("10.0.0.1")).toBe(false);
    failures.record("10.0.0.1");
    expect(failures.exhausted("10.0.0.1")).toBe(true);
    expect(failures.exhausted("10.0.0.2")).toBe(false);
    nowMs += 60_000;
    expect(failures.exhausted("10.0.0.1")).toBe(false);
  });
});
