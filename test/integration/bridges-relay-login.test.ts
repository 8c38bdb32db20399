import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { RelayLoginClient } from "../../src/bridges/contracts.ts";
import {
  parseCredentials,
  type BridgeCredentials,
  type BridgeNetwork,
} from "../../src/bridges/networks.ts";
import { createRelayLoginClient } from "../../src/bridges/relay-login.ts";
import { AppError } from "../../src/shared/errors.ts";
import type { MatrixUserId } from "../../src/shared/ids.ts";
import {
  createFakeBridgeApi,
  startFakeBridgeApi,
  type FakeBridgeApi,
  type FakeBridgeApiOptions,
} from "../support/fake-bridge-api.ts";

const RELAY = "@switchboard-relay:acme.example" as MatrixUserId;
const PREFIX = "/_matrix/provision";

const fakes: FakeBridgeApi[] = [];
const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(fakes.splice(0).map((fake) => fake.close()));
  await Promise.all(
    servers.splice(0).map((server) => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  );
});

function telegramToken(): string {
  return `${7_000_000_000 + Math.floor(Math.random() * 1e9)}:${randomBytes(27).toString("base64url").slice(0, 35)}`;
}

function discordToken(botId: string): string {
  return `${Buffer.from(botId).toString("base64url")}.GhJkLm.${randomBytes(28).toString("base64url")}`;
}

function credentialsFor(network: BridgeNetwork): BridgeCredentials {
  switch (network) {
    case "slack":
      return parseCredentials("slack", {
        botToken: `xoxb-1111111111-2222222222-${randomBytes(12).toString("hex")}`,
        appToken: `xapp-1-A0123456789-3333333333-${randomBytes(16).toString("hex")}`,
      });
    case "telegram":
      return parseCredentials("telegram", {
        botToken: telegramToken(),
        apiId: 123456,
        apiHash: randomBytes(16).toString("hex"),
      });
    case "discord":
      return parseCredentials("discord", { botToken: discordToken("1234567890123456789") });
  }
}

/** The secret values of a credentials object, to look for where they must not be. */
function secretValues(credentials: BridgeCredentials): string[] {
  return Object.entries(credentials)
    .filter(([key]) => key !== "network" && key !== "apiId")
    .map(([, value]) => String(value));
}

async function setup(
  network: BridgeNetwork,
  options: Partial<FakeBridgeApiOptions> = {},
): Promise<{ fake: FakeBridgeApi; client: RelayLoginClient; secret: string }> {
  const secret = randomBytes(24).toString("hex");
  const fake = await startFakeBridgeApi({ network, sharedSecret: secret, ...options });
  fakes.push(fake);
  const client = createRelayLoginClient({
    network,
    baseUrl: fake.url,
    sharedSecret: secret,
    relayUserId: RELAY,
  });
  return { fake, client, secret };
}

async function failure(promise: Promise<unknown>): Promise<AppError> {
  const error: unknown = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

function expectNoSecretInUrls(fake: FakeBridgeApi, secrets: readonly string[]): void {
  expect(fake.requests.length).toBeGreaterThan(0);
  for (const request of fake.requests) {
    for (const secret of secrets) expect(request.url).not.toContain(secret);
    expect(request.query.user_id).toBe(RELAY);
  }
}

/** An address where nothing listens: a port that was just free. */
async function deadAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

const STEP_FIELDS: Record<"slack" | "telegram", (c: BridgeCredentials) => Record<string, string>> =
  {
    slack: (c) => (c.network === "slack" ? { bot_token: c.botToken, app_token: c.appToken } : {}),
    telegram: (c) =>
      c.network === "telegram" ? { "fi.mau.telegram.login.bot_token": c.botToken } : {},
  };

describe.each(["slack", "telegram"] as const)(
  "relay login to the %s bridge (bridgev2)",
  (network) => {
    const flow = network === "slack" ? "app" : "bot";
    const name = network === "slack" ? "Slack" : "Telegram";

    it("logs in through the documented flow, reports the login, and logs out", async () => {
      const { fake, client, secret } = await setup(network);
      const credentials = credentialsFor(network);
      await client.ready();

      const login = await client.login(credentials);

      const remote = fake.logins.get(RELAY) ?? [];
      expect(remote.map((entry) => entry.id)).toEqual([login.loginId]);
      expect(login.remoteName).toBe(remote[0]?.name);
      expect(fake.openLoginProcesses()).toBe(0);
      const paths = fake.requests.map((request) => `${request.method} ${request.path}`);
      const start = fake.requests.find((request) => request.path.includes("/login/start/"));
      const step = fake.requests.find((request) => request.path.includes("/login/step/"));
      expect(paths).toContain(`GET ${PREFIX}/v3/login/flows`);
      expect(start?.path).toBe(`${PREFIX}/v3/login/start/${flow}`);
      expect(step?.path).toMatch(
        new RegExp(
          `^${PREFIX}/v3/login/step/[0-9a-f]+/fi\\.mau\\.${network}\\.login\\.[a-z_]+/user_input$`,
        ),
      );
      expect(step?.query.txn_id).toMatch(/^bls_/);
      expect(step?.body).toEqual(STEP_FIELDS[network](credentials));
      expect(step?.status).toBe(200);

      expect(await client.status()).toEqual({ loggedIn: true, loginId: login.loginId });
      fake.logins.get(RELAY)?.forEach((entry) => (entry.state = "BAD_CREDENTIALS"));
      expect(await client.status()).toEqual({ loggedIn: false, loginId: login.loginId });

      await client.logout();
      expect(fake.logins.get(RELAY)).toBeUndefined();
      expect(await client.status()).toEqual({ loggedIn: false, loginId: null });
      expect(
        fake.requests.some((r) => r.method === "POST" && r.path === `${PREFIX}/v3/logout/all`),
      ).toBe(true);
      expectNoSecretInUrls(fake, [secret, ...secretValues(credentials)]);
    });

    it("turns a refused token into a clear bad_request, cancels the login and logs nothing in", async () => {
      const { fake, client, secret } = await setup(network, {
        acceptTokens: new Set(["something-else"]),
        // Real Go errors may carry the token (Telegram's Bot API URL has it in its path).
        rejectWith: (token) =>
          `Post "https://api.example/bot${token}/logOut": token ${token} is invalid`,
      });
      const credentials = credentialsFor(network);

      const error = await failure(client.login(credentials));

      expect(error.code).toBe("bad_request");
      expect(error.message).toContain(`${name} refused`);
      expect(error.message).toContain("[redacted]");
      expect(error.message).toMatch(/Check /);
      for (const value of [secret, ...secretValues(credentials)])
        expect(error.message).not.toContain(value);
      expect(fake.requests.some((r) => r.path.startsWith(`${PREFIX}/v3/login/cancel/`))).toBe(true);
      expect(fake.openLoginProcesses()).toBe(0);
      expect(fake.logins.get(RELAY)).toBeUndefined();
      expectNoSecretInUrls(fake, [secret, ...secretValues(credentials)]);
    });

    it("quotes the network's own reason when it refuses", async () => {
      const { client } = await setup(network, { acceptTokens: new Set(["something-else"]) });

      const error = await failure(client.login(credentialsFor(network)));

      expect(error.code).toBe("bad_request");
      expect(error.message).toContain(network === "slack" ? "invalid_auth" : "Unauthorized");
    });

    it("answers a step the bridge does not accept (M_BAD_STATE) with bad_request and cancels", async () => {
      const { fake, client } = await setup(network, { stepMismatch: true });

      const error = await failure(client.login(credentialsFor(network)));

      expect(error.code).toBe("bad_request");
      expect(error.message).toContain("did not accept the login step");
      expect(error.message).toContain("M_BAD_STATE");
      const cancel = fake.requests.find((r) => r.path.startsWith(`${PREFIX}/v3/login/cancel/`));
      expect(cancel?.status).toBe(200);
      expect(fake.openLoginProcesses()).toBe(0);
      expect(fake.logins.get(RELAY)).toBeUndefined();
    });

    it("cancels when the bridge asks for an unexpected step instead of completing", async () => {
      const { fake, client } = await setup(network, { unexpectedStep: true });

      const error = await failure(client.login(credentialsFor(network)));

      expect(error.code).toBe("bad_request");
      expect(error.message).toContain("asked for an unexpected step (display_and_wait");
      expect(fake.requests.at(-1)?.path).toMatch(/\/v3\/login\/cancel\//);
      expect(fake.openLoginProcesses()).toBe(0);
      expect(fake.logins.get(RELAY)).toBeUndefined();
    });

    it("refuses a value that does not match the field's pattern before submitting it, and cancels", async () => {
      const { fake, client } = await setup(network);
      // Built by hand: parseCredentials would refuse these shapes already.
      const credentials: BridgeCredentials =
        network === "slack"
          ? { network, botToken: "xoxp-user-token-not-a-bot", appToken: "xapp-1-abc" }
          : { network, botToken: "not-a-bot-token", apiId: 1, apiHash: "0".repeat(32) };

      const error = await failure(client.login(credentials));

      expect(error.code).toBe("bad_request");
      expect(error.message).toContain("expects the Bot token to match");
      expect(error.message).not.toContain(credentials.botToken);
      expect(fake.requests.some((r) => r.path.includes("/login/step/"))).toBe(false);
      expect(fake.openLoginProcesses()).toBe(0);
    });

    it("refuses when the bridge does not offer the login flow, without starting one", async () => {
      const { fake, client } = await setup(network, {
        flows: [{ id: "qr", name: "QR code", description: "Scan a QR code" }],
      });

      const error = await failure(client.login(credentialsFor(network)));

      expect(error.code).toBe("bad_request");
      expect(error.message).toContain(`does not offer the "${flow}" login (it offers: qr)`);
      expect(fake.requests.some((r) => r.path.includes("/login/start/"))).toBe(false);
    });

    it.each([500, 502, 503])(
      "maps a %i without login-level meaning to unavailable",
      async (status) => {
        const { client } = await setup(network, { failWith5xx: status });

        const error = await failure(client.login(credentialsFor(network)));

        expect(error.code).toBe("unavailable");
        expect(error.message).toContain(`HTTP ${status}`);
        expect((await failure(client.ready())).code).toBe("unavailable");
      },
    );

    it("maps a 5xx on the step itself to unavailable and still tries to cancel", async () => {
      const { fake, secret } = await setup(network);
      // The bridge breaks between the start and the step.
      const breaking: typeof fetch = (input, init) => {
        const url = input instanceof Request ? input.url : input.toString();
        if (url.includes("/login/step/")) fake.behaviour.failWith5xx = 500;
        return fetch(input, init);
      };
      const client = createRelayLoginClient({
        network,
        baseUrl: fake.url,
        sharedSecret: secret,
        relayUserId: RELAY,
        fetch: breaking,
      });

      const error = await failure(client.login(credentialsFor(network)));

      expect(error.code).toBe("unavailable");
      expect(fake.requests.at(-1)?.path).toMatch(/\/v3\/login\/cancel\//);
      expect(fake.logins.get(RELAY)).toBeUndefined();
    });

    it("says the bridge could not reach the network rather than blaming the token", async () => {
      const { fake, client } = await setup(network, {
        acceptTokens: new Set(["other"]),
        rejectWith: "dial tcp: lookup api.example: no such host",
      });

      const error = await failure(client.login(credentialsFor(network)));

      expect(error.code).toBe("unavailable");
      expect(error.message).toContain(`could not reach ${name}`);
      expect(fake.openLoginProcesses()).toBe(0);
    });

    it("maps a wrong shared secret to internal, without quoting it", async () => {
      const { fake } = await setup(network);
      const wrong = randomBytes(24).toString("hex");
      const client = createRelayLoginClient({
        network,
        baseUrl: fake.url,
        sharedSecret: wrong,
        relayUserId: RELAY,
      });

      const error = await failure(client.login(credentialsFor(network)));

      expect(error.code).toBe("internal");
      expect(error.message).toContain("rejected Switchboard's provisioning secret");
      expect(error.message).not.toContain(wrong);
      expect((await failure(client.status())).code).toBe("internal");
      expect(fake.requests.every((r) => r.status === 401)).toBe(true);
    });

    it("maps missing login permissions for the relay account to internal", async () => {
      const { client } = await setup(network, { loginUsers: ["@admin:acme.example"] });

      const error = await failure(client.login(credentialsFor(network)));

      expect(error.code).toBe("internal");
      expect(error.message).toContain("check the bridge's permissions");
    });
  },
);

describe("relay login to the discord bridge (mautrix-discord v1)", () => {
  it("logs in with a Bot token, reports the login, and logs out", async () => {
    const { fake, client, secret } = await setup("discord");
    const credentials = credentialsFor("discord");
    await client.ready();

    const login = await client.login(credentials);

    expect(login).toEqual({ loginId: "1234567890123456789", remoteName: "Switchboard" });
    const tokenRequest = fake.requests.find((r) => r.path === `${PREFIX}/v1/login/token`);
    expect(tokenRequest?.method).toBe("POST");
    expect(tokenRequest?.body).toEqual({
      token: `Bot ${credentials.network === "discord" ? credentials.botToken : ""}`,
    });
    expect(fake.logins.get(RELAY)?.map((entry) => entry.id)).toEqual([login.loginId]);
    expect(await client.status()).toEqual({ loggedIn: true, loginId: login.loginId });

    await client.logout();
    expect(fake.logins.get(RELAY)).toBeUndefined();
    expect(await client.status()).toEqual({ loggedIn: false, loginId: null });
    expectNoSecretInUrls(fake, [secret, ...secretValues(credentials)]);
  });

  it("treats 409 already logged in as done when the bridge holds the same bot", async () => {
    const { fake, client } = await setup("discord");
    const credentials = credentialsFor("discord");
    await client.login(credentials);

    const again = await client.login(credentials);

    expect(again.loginId).toBe("1234567890123456789");
    expect(
      fake.requests.filter((r) => r.path === `${PREFIX}/v1/login/token`).map((r) => r.status),
    ).toEqual([200, 409]);
    expect(fake.requests.some((r) => r.path === `${PREFIX}/v1/logout`)).toBe(false);
  });

  it("logs out another bot's login and retries once on 409", async () => {
    const { fake, client } = await setup("discord");
    await client.login(
      parseCredentials("discord", { botToken: discordToken("9876543210987654321") }),
    );

    const login = await client.login(credentialsFor("discord"));

    expect(login.loginId).toBe("1234567890123456789");
    expect(fake.logins.get(RELAY)?.map((entry) => entry.id)).toEqual(["1234567890123456789"]);
    expect(fake.requests.map((r) => `${r.method} ${r.path} ${r.status}`).slice(1)).toEqual([
      `POST ${PREFIX}/v1/login/token 409`,
      `GET ${PREFIX}/v1/ping 200`,
      `POST ${PREFIX}/v1/logout 200`,
      `POST ${PREFIX}/v1/login/token 200`,
    ]);
  });

  it("turns Discord's refusal (401) into a clear bad_request and logs nothing in", async () => {
    const { fake, client, secret } = await setup("discord", {
      acceptTokens: new Set(["other"]),
      rejectWith: (token) => `websocket: close 4004: Authentication failed (${token})`,
    });
    const credentials = credentialsFor("discord");

    const error = await failure(client.login(credentials));

    expect(error.code).toBe("bad_request");
    expect(error.message).toContain("Discord refused the bot token");
    expect(error.message).toContain("intents");
    for (const value of [secret, ...secretValues(credentials)])
      expect(error.message).not.toContain(value);
    expect(fake.logins.get(RELAY)).toBeUndefined();
    expectNoSecretInUrls(fake, [secret, ...secretValues(credentials)]);
  });

  it("maps a wrong shared secret to internal and a 5xx to unavailable", async () => {
    const { fake } = await setup("discord");
    const client = createRelayLoginClient({
      network: "discord",
      baseUrl: fake.url,
      sharedSecret: "not-the-secret-at-all",
      relayUserId: RELAY,
    });
    expect((await failure(client.login(credentialsFor("discord")))).code).toBe("internal");

    const { client: right } = await setup("discord", { failWith5xx: 500 });
    expect((await failure(right.login(credentialsFor("discord")))).code).toBe("unavailable");
    expect((await failure(right.status())).code).toBe("unavailable");
  });
});

describe.each(["slack", "telegram", "discord"] as const)("the %s bridge unreachable", (network) => {
  it("is unavailable when nothing listens", async () => {
    const client = createRelayLoginClient({
      network,
      baseUrl: await deadAddress(),
      sharedSecret: "s".repeat(32),
      relayUserId: RELAY,
    });

    const error = await failure(client.login(credentialsFor(network)));

    expect(error.code).toBe("unavailable");
    expect(error.message).toContain("is not reachable");
    expect((await failure(client.ready())).code).toBe("unavailable");
  });

  it("is unavailable when it does not answer within the timeout", async () => {
    // Holds every request open; the client's own timeout ends the wait.
    const server = createServer(() => undefined);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const client = createRelayLoginClient({
      network,
      baseUrl: `http://127.0.0.1:${port}`,
      sharedSecret: "s".repeat(32),
      relayUserId: RELAY,
      timeoutMs: 200,
    });

    const error = await failure(client.status());

    expect(error.code).toBe("unavailable");
    expect(error.message).toContain("did not answer");
  });
});

describe("the fake mounted on another server", () => {
  it("serves /_matrix/provision and leaves other paths to the host", async () => {
    const secret = randomBytes(24).toString("hex");
    const api = createFakeBridgeApi({ network: "slack", sharedSecret: secret });
    const server = createServer((req, res) => {
      if (api.handle(req, res)) return;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ host: true }));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = createRelayLoginClient({
      network: "slack",
      baseUrl,
      sharedSecret: secret,
      relayUserId: RELAY,
    });

    const login = await client.login(credentialsFor("slack"));

    expect(api.logins.get(RELAY)?.[0]?.id).toBe(login.loginId);
    expect(await (await fetch(`${baseUrl}/_matrix/app/v1/ping`)).json()).toEqual({ host: true });
    expect(api.requests.every((r) => r.path.startsWith(PREFIX))).toBe(true);
  });
});
