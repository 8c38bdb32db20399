import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.ts";
import { connectDatabase, type Database } from "../../src/db/connect.ts";
import { createApp, type App } from "../../src/main.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { createTestDatabase, TEST_POSTGRES_URL, type TestDatabase } from "../support/database.ts";
import { signUpAndIn, TEST_PASSWORD, type Browser } from "../support/portal.ts";
import { freePort } from "../support/synapse.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

/** A failure guard only: a portal that hangs while the database is down fails here instead of stalling the suite. */
const REQUEST_GUARD_MS = 20_000;

describe("the portal while its PostgreSQL is unreachable", () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let proxied: Database;
  let app: App;
  let url: string;
  let dataDir: string;
  let browser: Browser;

  beforeAll(async () => {
    database = await createTestDatabase("postgres");
    const server = new URL(TEST_POSTGRES_URL);
    proxy = await startTcpProxy({
      host: server.hostname,
      port: server.port === "" ? 5432 : Number(server.port),
    });
    proxied = await connectDatabase({ url: proxy.rewrite(database.url!), poolMax: 5 });
    dataDir = await mkdtemp(join(tmpdir(), "switchboard-portal-down-"));
    const port = await freePort();
    url = `http://127.0.0.1:${String(port)}`;
    const config = parseConfig(
      JSON.stringify({
        dataDir,
        log: { level: process.env.TEST_LOG_LEVEL ?? "warn" },
        secrets: {
          masterKeys: { test: Buffer.alloc(32, 9).toString("base64") },
          activeKeyId: "test",
        },
        portal: { host: "127.0.0.1", port, publicUrl: url, authAttemptsPerMinute: 1000 },
      }),
      {},
      "test config",
    );
    app = await createApp(config, {
      database: proxied,
      log: createLogger({ level: config.log.level, pretty: false }),
    });
    await app.portal.start();
    browser = await signUpAndIn(await app.portal.app(), join(dataDir, "outbox"), "ops@example.org");
  }, 60_000);

  afterAll(async () => {
    await proxy?.restore();
    await app?.close();
    await proxied?.close();
    await proxy?.close();
    await database?.drop();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  /** A real HTTP request as this signed-in browser; the guard aborts it if the portal hangs. */
  const get = (path: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${url}${path}`, {
      headers: { cookie: browser.cookieHeader(), ...headers },
      signal: AbortSignal.timeout(REQUEST_GUARD_MS),
      redirect: "manual",
    });

  it("answers 503 with a clear body, says database on /readyz, stays alive, and recovers by itself", async () => {
    expect((await get("/api/v1/me")).status).toBe(200);
    const csrfToken = await browser.csrfToken();

    await proxy.cut();
    try {
      const api = await get("/api/v1/me");
      expect(api.status).toBe(503);
      expect(api.headers.get("content-type")).toContain("application/json");
      expect(api.headers.get("retry-after")).toMatch(/^\d+$/);
      const body = (await api.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("unavailable");
      expect(body.error.message).toMatch(/database/i);
      // Nothing about hosts, ports or users leaks into the message.
      expect(body.error.message).not.toMatch(/127\.0\.0\.1|ECONN|postgres:/i);

      const page = await get("/");
      expect(page.status).toBe(503);
      expect(page.headers.get("content-type")).toContain("text/html");
      expect(await page.text()).toMatch(/database/i);

      // Signing in needs the database too: the same 503, not a 500 or a wrong-password answer.
      const login = await fetch(`${url}/api/v1/session`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          cookie: browser.cookieHeader(),
          "x-csrf-token": csrfToken,
        },
        body: JSON.stringify({ email: "ops@example.org", password: TEST_PASSWORD }),
        signal: AbortSignal.timeout(REQUEST_GUARD_MS),
      });
      expect(login.status).toBe(503);

      const ready = await get("/readyz");
      expect(ready.status).toBe(503);
      const readiness = (await ready.json()) as { checks: Record<string, string> };
      expect(readiness.checks.database).toBe("failed: the database does not answer");
      expect((await get("/healthz")).status).toBe(200);
    } finally {
      await proxy.restore();
    }

    await expect.poll(async () => (await get("/readyz")).status, { timeout: 30_000 }).toBe(200);
    await expect.poll(async () => (await get("/api/v1/me")).status, { timeout: 30_000 }).toBe(200);
    expect((await get("/")).status).toBe(200);
  }, 120_000);

  it("answers 503, not a hang, when the network to the database goes silent", async () => {
    expect((await get("/api/v1/me")).status).toBe(200);

    // Connections are accepted and never answered: only a connect timeout ends the wait.
    proxy.silence();
    try {
      const api = await get("/api/v1/me");
      expect(api.status).toBe(503);
      expect(((await api.json()) as { error: { code: string } }).error.code).toBe("unavailable");
      expect((await get("/readyz")).status).toBe(503);
      expect((await get("/healthz")).status).toBe(200);
      // The pooled connection is gone by now: this one waits on a new connect, which must time out.
      const again = await get("/api/v1/me");
      expect(again.status).toBe(503);
      expect(((await again.json()) as { error: { message: string } }).error.message).toMatch(
        /database/,
      );
    } finally {
      await proxy.restore();
    }

    await expect.poll(async () => (await get("/api/v1/me")).status, { timeout: 30_000 }).toBe(200);
  }, 120_000);
});
