import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LightMyRequestResponse } from "fastify";
import { readOutbox } from "../../src/accounts/mailer.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import type { DatabaseKind } from "../../src/db/connect.ts";
import { createApp, type App } from "../../src/main.ts";
import type { PortalApp } from "../../src/portal/types.ts";
import { createLogger, type Logger } from "../../src/shared/logger.ts";
import { createTestDatabase, type TestDatabase } from "./database.ts";
import { freePort } from "./synapse.ts";

export const TEST_PASSWORD = "correct horse battery staple";

/** The portal of a real app on a real database, driven with `inject` (no listener). */
export interface PortalTest {
  readonly app: App;
  readonly portal: PortalApp;
  readonly database: TestDatabase;
  readonly config: Readonly<Config>;
  readonly outboxDir: string;
  /** With `listen: true`, where the portal listens (http://127.0.0.1:<port>, also its publicUrl). */
  readonly url: string | undefined;
  /** A new browser: its own cookie jar, like a fresh browser profile. */
  browser(): Browser;
  /** A browser signed in as a new, verified account. */
  signedIn(email: string): Promise<Browser>;
  /** The newest mail to an address in the outbox, with the first link in it. */
  lastMailTo(email: string): Promise<{ subject: string; text: string; link: string | undefined }>;
  stop(): Promise<void>;
}

export interface PortalTestOptions {
  readonly database?: DatabaseKind;
  /** Where logs go (tests that inspect them); default: the test log level, to stdout. */
  readonly log?: Logger;
  /** Deep-merged over the test config (e.g. { portal: { authAttemptsPerMinute: 3 } }). */
  readonly config?: Record<string, unknown>;
  /** Listen on a free loopback port (for real HTTP clients: browsers, benchmarks); mail links point there. */
  readonly listen?: boolean;
}

type InjectOptions = {
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  headers?: Record<string, string>;
  /** A form (urlencoded) body; `_csrf` is added unless `csrf: false`. */
  form?: Record<string, string>;
  /** A JSON body; the X-CSRF-Token header is added unless `csrf: false`. */
  json?: unknown;
  /** A raw body with an explicit content type. */
  body?: string | Buffer;
  csrf?: boolean;
};

/**
 * A cookie-keeping client over `inject`. Forms get the CSRF token of this
 * browser and session automatically (as the pages' hidden field would),
 * unless a test says `csrf: false` or sets `_csrf` itself.
 */
export class Browser {
  readonly cookies = new Map<string, string>();
  readonly #portal: PortalApp;

  constructor(portal: PortalApp) {
    this.#portal = portal;
  }

  cookieHeader(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join("; ");
  }

  async request(url: string, options: InjectOptions = {}): Promise<LightMyRequestResponse> {
    const method =
      options.method ?? ((options.form ?? options.json ?? options.body) ? "POST" : "GET");
    const headers: Record<string, string> = { ...options.headers };
    if (this.cookies.size > 0) headers.cookie = this.cookieHeader();
    let payload: string | Buffer | undefined;
    const needsCsrf = method !== "GET" && options.csrf !== false;
    if (options.form !== undefined) {
      const form = { ...options.form };
      if (needsCsrf && form._csrf === undefined) form._csrf = await this.csrfToken();
      payload = new URLSearchParams(form).toString();
      headers["content-type"] = "application/x-www-form-urlencoded";
    } else if (options.json !== undefined) {
      payload = JSON.stringify(options.json);
      headers["content-type"] = "application/json";
      if (needsCsrf && headers["x-csrf-token"] === undefined)
        headers["x-csrf-token"] = await this.csrfToken();
    } else if (options.body !== undefined) {
      payload = options.body;
    } else if (needsCsrf && headers["x-csrf-token"] === undefined) {
      headers["x-csrf-token"] = await this.csrfToken();
    }
    if (options.form !== undefined && needsCsrf && this.cookies.size > 0)
      headers.cookie = this.cookieHeader();
    if (options.json !== undefined && needsCsrf) headers.cookie = this.cookieHeader();
    const response = await this.#portal.inject({
      method,
      url,
      headers,
      ...(payload === undefined ? {} : { payload }),
    });
    for (const cookie of response.cookies as {
      name: string;
      value: string;
      maxAge?: number;
      expires?: Date;
    }[]) {
      const expired =
        cookie.value === "" ||
        cookie.maxAge === 0 ||
        (cookie.expires !== undefined && cookie.expires.getTime() <= Date.now());
      if (expired) this.cookies.delete(cookie.name);
      else this.cookies.set(cookie.name, cookie.value);
    }
    return response;
  }

  /** This browser's CSRF token, as the API hands it out (sets the browser cookie on first use). */
  async csrfToken(): Promise<string> {
    const response = await this.request("/api/v1/me");
    return (response.json() as { csrfToken: string }).csrfToken;
  }
}

/** Merges `extra` into `base` key by key (objects recursively; anything else replaces). */
export function deepMerge(
  base: Record<string, unknown>,
  extra: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key];
    out[key] =
      typeof value === "object" &&
      value !== null &&
      !Array.isArray(value) &&
      typeof current === "object" &&
      current !== null
        ? deepMerge(current as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

/** The newest mail to an address in an outbox, with the first link in it. */
export async function lastMailIn(
  outboxDir: string,
  email: string,
): Promise<{ subject: string; text: string; link: string | undefined }> {
  const mail = (await readOutbox(outboxDir, 200)).find((m) => m.to === email);
  if (mail === undefined) throw new Error(`no mail to ${email} in the outbox`);
  const link = /https?:\/\/\S+/.exec(mail.text)?.[0];
  return { subject: mail.subject, text: mail.text, link };
}

/** A new browser signed in as a new account, verified through the link mailed to the outbox. */
export async function signUpAndIn(
  portal: PortalApp,
  outboxDir: string,
  email: string,
): Promise<Browser> {
  const client = new Browser(portal);
  const signup = await client.request("/api/v1/accounts", {
    json: { email, password: TEST_PASSWORD },
  });
  if (signup.statusCode !== 202) throw new Error(`sign-up failed: ${signup.body}`);
  const { link } = await lastMailIn(outboxDir, email);
  const token = new URL(link ?? "http://x/").searchParams.get("token") ?? "";
  const verified = await client.request("/api/v1/accounts/verify", { json: { token } });
  if (verified.statusCode !== 200) throw new Error(`verification failed: ${verified.body}`);
  const login = await client.request("/api/v1/session", {
    json: { email, password: TEST_PASSWORD },
  });
  if (login.statusCode !== 200) throw new Error(`login failed: ${login.body}`);
  return client;
}

export async function startPortalTest(options: PortalTestOptions = {}): Promise<PortalTest> {
  const database = await createTestDatabase(options.database ?? "pglite");
  const dataDir = await mkdtemp(join(tmpdir(), "switchboard-portal-"));
  const port = options.listen === true ? await freePort() : undefined;
  const listening =
    port === undefined
      ? {}
      : { portal: { host: "127.0.0.1", port, publicUrl: `http://127.0.0.1:${String(port)}` } };
  const config = parseConfig(
    JSON.stringify(
      deepMerge(
        {
          dataDir,
          log: { level: process.env.TEST_LOG_LEVEL ?? "warn" },
          secrets: {
            masterKeys: { test: Buffer.alloc(32, 9).toString("base64") },
            activeKeyId: "test",
          },
          portal: {
            publicUrl: "http://portal.test",
            baseDomain: "example.test",
            authAttemptsPerMinute: 1000,
          },
        },
        deepMerge(listening, options.config ?? {}),
      ),
    ),
    {},
    "test config",
  );
  const app = await createApp(config, {
    database,
    log: options.log ?? createLogger({ level: config.log.level, pretty: false }),
  });
  const portal = await app.portal.app();
  const url = port === undefined ? undefined : await app.portal.start();
  const outboxDir = join(dataDir, "outbox");

  const lastMailTo: PortalTest["lastMailTo"] = (email) => lastMailIn(outboxDir, email);
  const browser = (): Browser => new Browser(portal);
  const signedIn = (email: string): Promise<Browser> => signUpAndIn(portal, outboxDir, email);

  return {
    app,
    portal,
    database,
    config,
    outboxDir,
    url,
    browser,
    signedIn,
    lastMailTo,
    stop: async () => {
      await app.close();
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
