import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Actor } from "../../src/audit/audit-log.ts";
import type {
  BridgeRenderInput,
  RelayLogin,
  RelayLoginClient,
  RenderedBridge,
} from "../../src/bridges/contracts.ts";
import type { BridgeCredentials, BridgeNetwork } from "../../src/bridges/networks.ts";
import { bridgeStore, type BridgeRecord } from "../../src/bridges/repository.ts";
import { parseConfig } from "../../src/config/load.ts";
import { withSystemTransaction } from "../../src/db/tenant-transaction.ts";
import { createApp, type App } from "../../src/main.ts";
import type {
  BridgeDriver,
  BridgeObservation,
  BridgePlacement,
  BridgeRunState,
  BridgeSpec,
  BridgeTarget,
} from "../../src/provisioning/bridge-driver.ts";
import type { RelayLoginClientFactory } from "../../src/provisioning/bridge-reconciler.ts";
import type { HomeserverProbe } from "../../src/provisioning/homeserver-checks.ts";
import { createProvisioner, type Provisioner } from "../../src/provisioning/provisioner.ts";
import { provisioningState } from "../../src/provisioning/state.ts";
import { AppError, badRequest } from "../../src/shared/errors.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { tenantDeletion } from "../../src/tenants/deletion.ts";
import { tenantHolds } from "../../src/tenants/holds.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { FakeHomeserverDriver } from "../support/fake-homeserver-driver.ts";

const OPERATOR: Actor = { id: "operator", via: "cli" };
const INITIAL_BACKOFF_MS = 10_000;
const SLACK = { botToken: `xoxb-${"1".repeat(12)}-abcdef`, appToken: `xapp-1-${"A".repeat(16)}` };
const OTHER_SLACK = { botToken: `xoxb-${"2".repeat(12)}-ghijkl`, appToken: SLACK.appToken };
const REFUSAL =
  "Slack refused the bot token: invalid_auth. Check that the bot token belongs to the app.";

interface BridgeCall {
  readonly method: "placement" | "ensure" | "stop" | "remove";
  readonly tenantId: TenantId;
  readonly network: BridgeNetwork;
  readonly spec?: BridgeSpec;
}

/** Records every call; bridges "run" once ensured. `placementError` plays a bridge not installed. */
class RecordingBridgeDriver implements BridgeDriver {
  readonly calls: BridgeCall[] = [];
  readonly states = new Map<string, BridgeRunState>();
  placementError: AppError | undefined;
  ensureFailures = 0;

  placement(target: BridgeTarget): Promise<BridgePlacement> {
    this.calls.push({ method: "placement", tenantId: target.tenantId, network: target.network });
    if (this.placementError !== undefined) return Promise.reject(this.placementError);
    const url = `http://bridge-${target.slug}-${target.network}.test:29000`;
    return Promise.resolve({
      listenHost: "127.0.0.1",
      listenPort: 29000,
      appserviceUrl: url,
      homeserverUrl: "http://synapse.test:8008",
      provisioningUrl: url,
      database: { type: "sqlite3-fk-wal", uri: "file:bridge.db" },
    });
  }
  ensureBridge(spec: BridgeSpec): Promise<void> {
    this.calls.push({ method: "ensure", tenantId: spec.tenantId, network: spec.network, spec });
    if (this.ensureFailures > 0) {
      this.ensureFailures--;
      return Promise.reject(new AppError("unavailable", "bridge image pull timed out"));
    }
    this.states.set(`${spec.tenantId}/${spec.network}`, "running");
    return Promise.resolve();
  }
  stopBridge(target: BridgeTarget): Promise<void> {
    this.calls.push({ method: "stop", tenantId: target.tenantId, network: target.network });
    this.states.set(`${target.tenantId}/${target.network}`, "stopped");
    return Promise.resolve();
  }
  removeBridge(target: BridgeTarget): Promise<void> {
    this.calls.push({ method: "remove", tenantId: target.tenantId, network: target.network });
    this.states.delete(`${target.tenantId}/${target.network}`);
    return Promise.resolve();
  }
  inspectBridge(target: BridgeTarget): Promise<BridgeObservation> {
    return Promise.resolve({
      state: this.states.get(`${target.tenantId}/${target.network}`) ?? "absent",
    });
  }
  callsOf(method: BridgeCall["method"], tenantId: TenantId): BridgeCall[] {
    return this.calls.filter((call) => call.method === method && call.tenantId === tenantId);
  }
  ensures(tenantId: TenantId): BridgeSpec[] {
    return this.callsOf("ensure", tenantId).flatMap((call) =>
      call.spec === undefined ? [] : [call.spec],
    );
  }
}

/** Relay login clients that answer as the test says, recording logins and logouts. */
class FakeRelayLogins {
  readonly logins: { readonly baseUrl: string; readonly credentials: BridgeCredentials }[] = [];
  readonly logouts: string[] = [];
  readonly options: Parameters<RelayLoginClientFactory>[0][] = [];
  outcome: "ok" | "refused" | "unavailable" = "ok";
  #count = 0;

  loginsAt(slug: string): BridgeCredentials[] {
    return this.logins
      .filter((login) => login.baseUrl.includes(`-${slug}-`))
      .map((login) => login.credentials);
  }

  readonly factory: RelayLoginClientFactory = (options) => {
    this.options.push(options);
    const client: RelayLoginClient = {
      ready: () => Promise.resolve(),
      login: (credentials): Promise<RelayLogin> => {
        this.logins.push({ baseUrl: options.baseUrl, credentials });
        if (this.outcome === "refused") return Promise.reject(badRequest(REFUSAL));
        if (this.outcome === "unavailable")
          return Promise.reject(new AppError("unavailable", "the Slack bridge answered 502"));
        return Promise.resolve({ loginId: `T0${++this.#count}-U01`, remoteName: "Acme" });
      },
      status: () => Promise.resolve({ loggedIn: true, loginId: null }),
      logout: () => {
        this.logouts.push(options.baseUrl);
        return Promise.resolve();
      },
    };
    return client;
  };
}

/** Renders inputs as JSON so tests can read what the reconciler asked for. */
function recordingRender(input: BridgeRenderInput): RenderedBridge {
  const { placement, adminUserIds, defaultRelayLoginIds, relayUserId, credentials } = input;
  return {
    configYaml: JSON.stringify({
      placement,
      adminUserIds,
      defaultRelayLoginIds,
      relayUserId,
      credentials,
    }),
    registrationYaml: `id: ${input.registrationId}\nas_token: ${input.asToken}\nhs_token: ${input.hsToken}\n`,
    userNamespaces: [`@${input.network}_.*:${input.serverName}`],
  };
}

const probe: HomeserverProbe = {
  healthy: () => Promise.resolve(true),
  pingAppservice: () => Promise.resolve(),
};

describe("bridge reconciler decisions (fake drivers, PGlite)", () => {
  let database: TestDatabase;
  let app: App;
  let driver: FakeHomeserverDriver;
  let bridges: RecordingBridgeDriver;
  let relay: FakeRelayLogins;
  let provisioner: Provisioner;
  let clock: Date;
  let slugCounter = 0;
  /** The slug of the test's tenant (passes also converge earlier tests' tenants). */
  let slug = "";

  beforeAll(async () => {
    database = await createTestDatabase("pglite");
    const config = parseConfig(
      JSON.stringify({
        defaultPlan: "enterprise",
        secrets: { masterKeys: { t: Buffer.alloc(32, 5).toString("base64") } },
      }),
      {},
      "test",
    );
    app = await createApp(config, {
      database,
      log: createLogger({ level: "silent", pretty: false }),
    });
  });

  afterAll(async () => {
    await app.close();
    await database.drop();
  });

  beforeEach(async () => {
    driver = new FakeHomeserverDriver();
    bridges = new RecordingBridgeDriver();
    relay = new FakeRelayLogins();
    clock = new Date();
    provisioner = await createProvisioner(app, {
      driver,
      probe,
      bootstrapper: { bootstrap: () => Promise.resolve() },
      bridgeDriver: bridges,
      renderBridge: recordingRender,
      relayLogin: relay.factory,
      now: () => clock,
      options: {
        initialBackoffMs: INITIAL_BACKOFF_MS,
        maxBackoffMs: 60_000,
        healthTimeoutMs: 1_000,
      },
    });
  });

  /** A tenant whose homeserver is up (first pass done). */
  async function runningTenant(): Promise<TenantId> {
    slug = `b${++slugCounter}`;
    const { tenant } = await app.tenants.create(
      {
        slug,
        name: slug,
        serverName: `${slug}.localhost`,
        homeserverUrl: `https://${slug}.localhost`,
      },
      { status: "provisioning" },
    );
    await provisioner.reconciler.runPass();
    return tenant.id;
  }

  async function passFor(tenantId: TenantId) {
    const outcomes = await provisioner.reconciler.runPass();
    return outcomes.find((outcome) => outcome.tenantId === tenantId);
  }

  async function bridge(tenantId: TenantId): Promise<BridgeRecord | undefined> {
    return bridgeStore.find(app.database.knex, tenantId, "slack");
  }

  async function bridgeSteps(tenantId: TenantId): Promise<string[]> {
    return (await provisioningState.steps(app.database.knex, tenantId))
      .reverse()
      .filter((step) => step.step.startsWith("bridge:"))
      .map((step) => `${step.step}:${step.status}`);
  }

  function registrations(): Readonly<Record<string, string>> {
    const last = driver.callsOf("ensure").at(-1);
    return last?.method === "ensure" ? last.spec.appserviceRegistrations : {};
  }

  it("connects a bridge: registration on the homeserver, bridge ensured, relay logged in and made the default relay", async () => {
    const tenantId = await runningTenant();
    await app.tenants.addAdmin(tenantId, "@boss:b1.localhost", "operator", OPERATOR);
    await app.bridges.connect(tenantId, "slack", SLACK, OPERATOR);

    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(Object.keys(registrations()).sort()).toEqual(["bridge-slack.yaml", "switchboard.yaml"]);
    expect(registrations()["bridge-slack.yaml"]).toContain("id: switchboard-slack");

    const [first, second] = bridges.ensures(tenantId);
    const firstConfig = JSON.parse(first?.configYaml ?? "{}") as Record<string, unknown>;
    expect(firstConfig.defaultRelayLoginIds).toEqual([]);
    expect(firstConfig.adminUserIds).toEqual(["@boss:b1.localhost"]);
    expect(firstConfig.relayUserId).toBe("@switchboard-relay:b1.localhost");
    expect(JSON.parse(second?.configYaml ?? "{}")).toMatchObject({
      defaultRelayLoginIds: ["T01-U01"],
    });
    expect(second?.registrationYaml).toBe(first?.registrationYaml);
    // The database secret is the bridge's provisioning secret, which the login client authenticates with.
    expect(first?.databaseSecret).toBe(relay.options[0]?.sharedSecret);
    expect(relay.options[0]?.baseUrl).toBe("http://bridge-b1-slack.test:29000");
    expect(relay.loginsAt(slug)).toEqual([{ network: "slack", ...SLACK }]);

    expect(await bridge(tenantId)).toMatchObject({
      state: "connected",
      loginVersion: 1,
      relayLoginId: "T01-U01",
      relayRemoteName: "Acme",
      lastError: null,
    });
    expect((await bridge(tenantId))?.connectedAt).toEqual(clock);
    expect(await bridgeSteps(tenantId)).toEqual([
      "bridge:slack:ensure:done",
      "bridge:slack:ready:done",
      "bridge:slack:login:done",
      "bridge:slack:set-default-relay:done",
    ]);

    // Settled: the next pass takes the cheap path, touching nothing.
    const ensures = driver.callsOf("ensure").length;
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(driver.callsOf("ensure")).toHaveLength(ensures);
    expect(bridges.ensures(tenantId)).toHaveLength(2);

    // A bridge process that died is started again with its relay as default; no new login.
    bridges.states.set(`${tenantId}/slack`, "exited");
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(bridges.ensures(tenantId)).toHaveLength(3);
    expect(JSON.parse(bridges.ensures(tenantId)[2]?.configYaml ?? "{}")).toMatchObject({
      defaultRelayLoginIds: ["T01-U01"],
    });
    expect(relay.loginsAt(slug)).toHaveLength(1);
    expect((await bridge(tenantId))?.state).toBe("connected");
  });

  it("refused credentials: login_failed with the bridge's clear message, never retried until new ones arrive", async () => {
    const tenantId = await runningTenant();
    await app.bridges.connect(tenantId, "slack", SLACK, OPERATOR);
    relay.outcome = "refused";
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(await bridge(tenantId)).toMatchObject({
      state: "login_failed",
      loginFailedVersion: 1,
      loginVersion: 0,
      relayLoginId: null,
      lastError: REFUSAL,
    });

    // Another requested pass (e.g. an operator's) keeps the bridge but does not retry the login.
    await app.database
      .knex("tenants")
      .where({ id: tenantId })
      .update({ provision_requested_at: new Date(clock.getTime() + 1) });
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(relay.loginsAt(slug)).toHaveLength(1);
    expect((await bridge(tenantId))?.state).toBe("login_failed");

    // New credentials are tried, and they work.
    relay.outcome = "ok";
    await app.bridges.connect(tenantId, "slack", OTHER_SLACK, OPERATOR);
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(relay.loginsAt(slug).at(-1)).toEqual({ network: "slack", ...OTHER_SLACK });
    expect(await bridge(tenantId)).toMatchObject({
      state: "connected",
      loginVersion: 2,
      lastError: null,
    });
  });

  it("an unavailable bridge fails alone, with backoff, and is retried after it", async () => {
    const tenantId = await runningTenant();
    await app.bridges.connect(tenantId, "slack", SLACK, OPERATOR);
    relay.outcome = "unavailable";
    expect((await passFor(tenantId))?.result).toBe("converged");
    const failed = await bridge(tenantId);
    expect(failed).toMatchObject({ state: "failed", failures: 1, loginFailedVersion: 0 });
    expect(failed?.lastError).toContain("502");
    expect(failed?.nextAttemptAt?.getTime()).toBe(clock.getTime() + INITIAL_BACKOFF_MS);
    expect(await bridgeSteps(tenantId)).toContain("bridge:slack:login:failed");

    // Within the backoff the healthy tenant takes the cheap path: nothing is retried.
    relay.outcome = "ok";
    await passFor(tenantId);
    expect(relay.loginsAt(slug)).toHaveLength(1);

    clock = new Date(clock.getTime() + INITIAL_BACKOFF_MS + 1);
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(relay.loginsAt(slug)).toHaveLength(2);
    expect(await bridge(tenantId)).toMatchObject({
      state: "connected",
      failures: 0,
      nextAttemptAt: null,
    });

    // A failing ensure is recorded the same way, on the bridge only.
    bridges.ensureFailures = 1;
    bridges.states.set(`${tenantId}/slack`, "exited");
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(await bridge(tenantId)).toMatchObject({ state: "failed", failures: 1 });
    expect((await bridge(tenantId))?.lastError).toContain("pull timed out");
  });

  it("a bridge that cannot run here is left out of the homeserver and says why", async () => {
    const tenantId = await runningTenant();
    bridges.placementError = badRequest(
      "mautrix-slack is not installed here: set provisioning.local.bridgeCommands.slack (or use the docker driver)",
    );
    await app.bridges.connect(tenantId, "slack", SLACK, OPERATOR);
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(Object.keys(registrations())).toEqual(["switchboard.yaml"]);
    expect(bridges.ensures(tenantId)).toEqual([]);
    expect(await bridge(tenantId)).toMatchObject({ state: "failed" });
    expect((await bridge(tenantId))?.lastError).toContain("bridgeCommands.slack");
  });

  it("disconnect: relay logged out, bridge removed, row deleted, registration gone from the homeserver", async () => {
    const tenantId = await runningTenant();
    await app.bridges.connect(tenantId, "slack", SLACK, OPERATOR);
    await passFor(tenantId);
    expect((await bridge(tenantId))?.state).toBe("connected");

    await app.bridges.disconnect(tenantId, "slack", OPERATOR);
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(relay.logouts).toEqual([`http://bridge-${slug}-slack.test:29000`]);
    expect(bridges.callsOf("remove", tenantId)).toHaveLength(1);
    expect(bridges.states.has(`${tenantId}/slack`)).toBe(false);
    expect(await bridge(tenantId)).toBeUndefined();
    expect(Object.keys(registrations())).toEqual(["switchboard.yaml"]);
    expect(await bridgeSteps(tenantId)).toContain("bridge:slack:remove:done");
  });

  it("a suspended tenant's bridges are stopped with their data; lifting the hold starts them again", async () => {
    const tenantId = await runningTenant();
    await app.bridges.connect(tenantId, "slack", SLACK, OPERATOR);
    await passFor(tenantId);
    await withSystemTransaction(app.database.knex, (trx) =>
      tenantHolds.place(trx, tenantId, "operator", OPERATOR),
    );
    await passFor(tenantId);
    expect(driver.stateOf(tenantId)).toBe("stopped");
    expect(bridges.states.get(`${tenantId}/slack`)).toBe("stopped");
    expect((await bridge(tenantId))?.state).toBe("stopped");
    // Stopping is idempotent: a stopped bridge is not stopped again.
    await passFor(tenantId);
    expect(bridges.callsOf("stop", tenantId)).toHaveLength(1);

    await withSystemTransaction(app.database.knex, (trx) =>
      tenantHolds.lift(trx, tenantId, "operator", OPERATOR),
    );
    await passFor(tenantId);
    expect(bridges.states.get(`${tenantId}/slack`)).toBe("running");
    expect((await bridge(tenantId))?.state).toBe("connected");
    expect(relay.loginsAt(slug)).toHaveLength(1);
  });

  it("a deleted tenant: bridges stopped during retention, then the driver's removal and the purge take them", async () => {
    const tenantId = await runningTenant();
    await app.bridges.connect(tenantId, "slack", SLACK, OPERATOR);
    await passFor(tenantId);
    await tenantDeletion.schedule(app.database.knex, tenantId, 1, OPERATOR);
    await passFor(tenantId);
    expect(bridges.states.get(`${tenantId}/slack`)).toBe("stopped");

    clock = new Date(clock.getTime() + 2 * 86_400_000);
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(driver.callsOf("remove", tenantId)).toHaveLength(1);
    // The tenant-wide removal covers bridges; nothing is removed bridge by bridge.
    expect(bridges.callsOf("remove", tenantId)).toEqual([]);
    expect(await app.database.knex("bridges").where({ tenant_id: tenantId })).toEqual([]);
  });
});
