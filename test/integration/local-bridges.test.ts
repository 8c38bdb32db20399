import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../src/audit/audit-log.ts";
import { renderBridge } from "../../src/bridges/config-render.ts";
import type { BridgeNetwork } from "../../src/bridges/networks.ts";
import { createRelayLoginClient } from "../../src/bridges/relay-login.ts";
import { bridgeStore } from "../../src/bridges/repository.ts";
import type { BridgePlacement, BridgeSpec } from "../../src/provisioning/bridge-driver.ts";
import { matrixProbe } from "../../src/provisioning/homeserver-checks.ts";
import { LocalDriver } from "../../src/provisioning/local-driver.ts";
import { createProvisioner, type Provisioner } from "../../src/provisioning/provisioner.ts";
import { provisioningState } from "../../src/provisioning/state.ts";
import { AppError } from "../../src/shared/errors.ts";
import type { MatrixUserId, TenantId } from "../../src/shared/ids.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { freePort } from "../support/synapse.ts";
import { startStack, type TestStack } from "../support/stack.ts";

const NODE_24 = join(process.cwd(), "node_modules/.bin/node");
const FAKE_BRIDGE = join(process.cwd(), "test/support/fake-bridge-process.ts");
const GOOD = { botToken: `xoxb-${"7".repeat(12)}-goodbot`, appToken: `xapp-1-${"G".repeat(20)}` };
const BAD = { botToken: `xoxb-${"6".repeat(12)}-revoked`, appToken: GOOD.appToken };
const OPERATOR: Actor = { id: "operator", via: "cli" };
/** A first Synapse start on two busy cores, plus the bootstrap. */
const BRING_UP_TIMEOUT_MS = 150_000;
const CHANGE_TIMEOUT_MS = 90_000;

const slackCommand = (accepted: readonly string[]): string[] => [
  NODE_24,
  FAKE_BRIDGE,
  "--network",
  "slack",
  ...accepted.flatMap((token) => ["--accept-token", token]),
];

async function listening(url: string): Promise<boolean> {
  try {
    await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return true;
  } catch {
    return false;
  }
}

describe("LocalBridges (child processes, no homeserver)", () => {
  let dataDir: string;
  let portRangeStart: number;
  const tenantId = randomUUID() as TenantId;
  const target = { tenantId, slug: "acme", network: "slack" as BridgeNetwork };

  const makeDriver = (commands: Partial<Record<BridgeNetwork, string[]>>) =>
    new LocalDriver({
      dataDir,
      chrootDir: "/nonexistent",
      bindHost: "127.0.0.1",
      portRangeStart,
      portRangeEnd: portRangeStart + 20,
      bridgeCommands: commands,
      logger: createLogger({ level: "silent", pretty: false }),
    });

  function spec(placement: BridgePlacement, relays: readonly string[] = []): BridgeSpec {
    const rendered = renderBridge({
      network: "slack",
      serverName: "acme.localhost",
      placement,
      registrationId: "switchboard-slack",
      asToken: "as-token-for-the-local-bridge-test",
      hsToken: "hs-token-for-the-local-bridge-test",
      provisioningSecret: "provisioning-secret-of-the-test",
      relayUserId: "@switchboard-relay:acme.localhost" as MatrixUserId,
      adminUserIds: ["@admin:acme.localhost" as MatrixUserId],
      defaultRelayLoginIds: relays,
      credentials: null,
    });
    return {
      ...target,
      databaseSecret: "provisioning-secret-of-the-test",
      configYaml: rendered.configYaml,
      registrationYaml: rendered.registrationYaml,
    };
  }

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "local-bridges-"));
    portRangeStart = await freePort();
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it("refuses a network without a configured command, naming the key", async () => {
    const driver = makeDriver({});
    const refusal = await driver.bridges
      .placement({ ...target, databaseSecret: "x" })
      .catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(AppError);
    expect((refusal as AppError).code).toBe("bad_request");
    expect((refusal as AppError).message).toBe(
      "mautrix-slack is not installed here: set provisioning.local.bridgeCommands.slack (or use the docker driver)",
    );
  });

  it("runs the bridge in the tenant's directory on a kept port, restarts it on a change, stops and removes it", async () => {
    const driver = makeDriver({ slack: slackCommand([]), discord: slackCommand([]) });
    const placement = await driver.bridges.placement({ ...target, databaseSecret: "x" });
    const dir = join(dataDir, "homeservers", "acme", "bridges", "slack");
    expect(placement.listenPort).toBeGreaterThanOrEqual(portRangeStart);
    expect(placement.homeserverUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(placement.homeserverUrl).not.toContain(`:${String(placement.listenPort)}`);
    expect(placement.provisioningUrl).toBe(`http://127.0.0.1:${String(placement.listenPort)}`);
    expect(placement.database).toEqual({
      type: "sqlite3-fk-wal",
      uri: `file:${dir}/bridge.db?_txlock=immediate`,
    });
    const discord = await driver.bridges.placement({
      ...target,
      network: "discord",
      databaseSecret: "x",
    });
    expect(discord.database.type).toBe("sqlite3");
    expect(discord.listenPort).not.toBe(placement.listenPort);

    await driver.bridges.ensureBridge(spec(placement));
    const client = createRelayLoginClient({
      network: "slack",
      baseUrl: placement.provisioningUrl,
      sharedSecret: "provisioning-secret-of-the-test",
      relayUserId: "@switchboard-relay:acme.localhost" as MatrixUserId,
    });
    await expect
      .poll(
        () =>
          client.ready().then(
            () => true,
            () => false,
          ),
        { timeout: 20_000 },
      )
      .toBe(true);
    expect(await driver.bridges.inspectBridge(target)).toEqual({ state: "running" });
    for (const file of ["config.yaml", "registration.yaml"])
      expect(statSync(join(dir, file)).mode & 0o777).toBe(0o600);
    const starts = () =>
      readFileSync(join(dir, "bridge.log"), "utf8").split("--- switchboard: starting").length - 1;

    // Same files: left running. Changed config: restarted.
    await driver.bridges.ensureBridge(spec(placement));
    expect(starts()).toBe(1);
    await driver.bridges.ensureBridge(spec(placement, ["T1-U1"]));
    expect(starts()).toBe(2);
    await expect
      .poll(
        () =>
          client.ready().then(
            () => true,
            () => false,
          ),
        { timeout: 20_000 },
      )
      .toBe(true);

    // A restarted provisioner keeps the ports (the index), and its bridges died with the old one.
    await driver.close();
    expect(await listening(placement.provisioningUrl)).toBe(false);
    const again = makeDriver({ slack: slackCommand([]) });
    expect(await again.bridges.placement({ ...target, databaseSecret: "x" })).toEqual(placement);
    expect(await again.bridges.inspectBridge(target)).toEqual({ state: "stopped" });

    await again.bridges.ensureBridge(spec(placement));
    await expect.poll(() => listening(placement.provisioningUrl), { timeout: 20_000 }).toBe(true);
    await again.bridges.stopBridge(target);
    expect(await listening(placement.provisioningUrl)).toBe(false);
    expect(await again.bridges.inspectBridge(target)).toEqual({ state: "stopped" });

    await again.bridges.removeBridge(target);
    expect(existsSync(dir)).toBe(false);
    expect(await again.bridges.inspectBridge(target)).toEqual({ state: "absent" });
    const index = JSON.parse(
      readFileSync(join(dataDir, "homeservers", "provisioned.json"), "utf8"),
    ) as Record<string, { bridges?: Record<string, number> }>;
    expect(index[tenantId]?.bridges?.slack).toBeUndefined();
    await again.close();
  }, 90_000);
});

describe("bridges through the reconciler on a real Synapse (local driver, stand-in bridge binary)", () => {
  let stack: TestStack;
  let provisioner: Provisioner;
  let tenantId: TenantId;
  const slug = `lb${randomBytes(3).toString("hex")}`;
  /** Every log line of the provisioner and the app, at debug level. */
  const logLines: string[] = [];
  /** Secrets seen during the tests: none may appear in a log line. */
  const secrets = new Set<string>([GOOD.botToken, GOOD.appToken, BAD.botToken]);

  beforeAll(async () => {
    const portRangeStart = await freePort();
    stack = await startStack({
      logSink: new Writable({
        write(chunk: Buffer, _encoding, done) {
          logLines.push(chunk.toString("utf8"));
          done();
        },
      }),
      config: {
        provisioning: {
          reconcileIntervalMs: 1_000,
          demandPollMs: 200,
          initialBackoffMs: 500,
          maxBackoffMs: 2_000,
          local: {
            portRangeStart,
            portRangeEnd: Math.min(65_535, portRangeStart + 50),
            bridgeCommands: { slack: slackCommand([GOOD.botToken, GOOD.appToken]) },
          },
        },
        bridges: { readyTimeoutMs: 30_000 },
      },
    });
    provisioner = await createProvisioner(stack.app);
    provisioner.start();
    const { tenant } = await stack.app.tenants.create(
      { slug, name: slug, serverName: `${slug}.localhost`, homeserverUrl: "http://127.0.0.1:9" },
      { status: "provisioning" },
    );
    tenantId = tenant.id;
    // Polled by hand: expect.poll belongs to tests.
    const deadline = Date.now() + BRING_UP_TIMEOUT_MS;
    for (;;) {
      const current = await stack.app.tenantRepository.findById(stack.database.knex, tenantId);
      if (current?.status === "active") break;
      if (Date.now() > deadline) throw new Error("the tenant's homeserver did not come up");
      await new Promise((resolveDelay) => setTimeout(resolveDelay, 250));
    }
  }, BRING_UP_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    await provisioner?.stop();
    await stack?.stop();
  });

  const row = () => bridgeStore.find(stack.database.knex, tenantId, "slack");
  const bridgeDir = () => join(stack.config.dataDir, "homeservers", slug, "bridges", "slack");

  async function relayClient() {
    const [withSecrets] = await bridgeStore.listWithSecrets(stack.database.knex, tenantId);
    const sharedSecret = stack.app.cipher.decrypt(withSecrets?.secrets.provisioningSecret ?? "");
    const asToken = stack.app.cipher.decrypt(withSecrets?.secrets.asToken ?? "");
    secrets.add(sharedSecret).add(asToken);
    const placement = await provisioner.driver.bridges?.placement({
      tenantId,
      slug,
      network: "slack",
      databaseSecret: sharedSecret,
    });
    return {
      placement,
      asToken,
      client: createRelayLoginClient({
        network: "slack",
        baseUrl: placement?.provisioningUrl ?? "",
        sharedSecret,
        relayUserId: `@${stack.config.runtime.relayLocalpart}:${slug}.localhost` as MatrixUserId,
      }),
    };
  }

  it(
    "refused tokens: login_failed with the bridge's clear message, no login left on the bridge",
    async () => {
      await stack.app.bridges.connect(tenantId, "slack", BAD, OPERATOR);
      await expect
        .poll(async () => (await row())?.state, { timeout: CHANGE_TIMEOUT_MS, interval: 250 })
        .toBe("login_failed");
      const failed = await row();
      expect(failed?.lastError).toMatch(/Slack/);
      expect(failed?.lastError).not.toContain(BAD.botToken);
      expect(failed?.loginFailedVersion).toBe(1);
      const { client } = await relayClient();
      expect(await client.status()).toEqual({ loggedIn: false, loginId: null });
    },
    CHANGE_TIMEOUT_MS + 10_000,
  );

  it(
    "good tokens: Synapse restarted with the bridge's registration, the bridge answers through it, the relay logged in",
    async () => {
      await stack.app.bridges.connect(tenantId, "slack", GOOD, OPERATOR);
      await expect
        .poll(async () => (await row())?.state, { timeout: CHANGE_TIMEOUT_MS, interval: 250 })
        .toBe("connected");
      const connected = await row();
      expect(connected?.loginVersion).toBe(2);
      expect(connected?.relayLoginId).not.toBeNull();
      expect(connected?.lastError).toBeNull();
      // The login then becomes the default relay: the bridge is restarted with it.
      await expect
        .poll(
          async () =>
            (await provisioningState.steps(stack.database.knex, tenantId)).some(
              (step) => step.step === "bridge:slack:set-default-relay" && step.status === "done",
            ),
          { timeout: CHANGE_TIMEOUT_MS, interval: 250 },
        )
        .toBe(true);

      const { client, asToken } = await relayClient();
      await expect
        .poll(
          () =>
            client.status().then(
              (status) => status.loggedIn,
              () => false,
            ),
          { timeout: 30_000 },
        )
        .toBe(true);
      // The homeserver loaded the registration and reaches the bridge with its hs_token.
      const homeserver = await stack.app.tenantRepository.findHomeserver(
        stack.database.knex,
        tenantId,
      );
      await matrixProbe.pingAppservice(homeserver?.clientUrl ?? "", "switchboard-slack", asToken);
      expect(existsSync(join(stack.config.dataDir, "homeservers", slug))).toBe(true);
      const config = readFileSync(join(bridgeDir(), "config.yaml"), "utf8");
      expect(config).toContain(connected?.relayLoginId ?? "?");
      expect(statSync(join(bridgeDir(), "config.yaml")).mode & 0o777).toBe(0o600);
    },
    CHANGE_TIMEOUT_MS + 40_000,
  );

  it(
    "disconnect: the bridge process and directory are gone, and so is its row",
    async () => {
      const { placement, asToken } = await relayClient();
      await stack.app.bridges.disconnect(tenantId, "slack", OPERATOR);
      await expect.poll(row, { timeout: CHANGE_TIMEOUT_MS, interval: 250 }).toBeUndefined();
      expect(existsSync(bridgeDir())).toBe(false);
      // Synapse was restarted without the bridge's registration.
      const homeserver = await stack.app.tenantRepository.findHomeserver(
        stack.database.knex,
        tenantId,
      );
      await expect(
        matrixProbe.pingAppservice(homeserver?.clientUrl ?? "", "switchboard-slack", asToken),
      ).rejects.toThrow();
      expect(await listening(placement?.provisioningUrl ?? "")).toBe(false);
      expect(
        await provisioner.driver.bridges?.inspectBridge({ tenantId, slug, network: "slack" }),
      ).toEqual({
        state: "absent",
      });
    },
    CHANGE_TIMEOUT_MS + 10_000,
  );

  it("puts no token or bridge secret in any log line", () => {
    const logs = logLines.join("");
    expect(logs).toContain("bridge started");
    for (const secret of secrets) expect(logs).not.toContain(secret);
  });
});
