import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Actor } from "../../src/audit/audit-log.ts";
import { parseConfig } from "../../src/config/load.ts";
import { withSystemTransaction } from "../../src/db/tenant-transaction.ts";
import { createApp, type App } from "../../src/main.ts";
import type { BootstrapInput, TenantBootstrapper } from "../../src/provisioning/bootstrap.ts";
import type { HomeserverProbe } from "../../src/provisioning/homeserver-checks.ts";
import { createProvisioner, type Provisioner } from "../../src/provisioning/provisioner.ts";
import { provisioningState } from "../../src/provisioning/state.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { tenantDeletion } from "../../src/tenants/deletion.ts";
import { tenantHolds } from "../../src/tenants/holds.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { FakeHomeserverDriver } from "../support/fake-homeserver-driver.ts";

const OPERATOR: Actor = { id: "operator", via: "cli" };
const INITIAL_BACKOFF_MS = 10_000;

class RecordingBootstrapper implements TenantBootstrapper {
  readonly calls: BootstrapInput[] = [];
  failures = 0;
  bootstrap(input: BootstrapInput): Promise<void> {
    this.calls.push(input);
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new Error("bootstrap crashed on purpose"));
    }
    return Promise.resolve();
  }
}

/** Healthy unless told otherwise; records the pings (appservice id, token). */
class FakeProbe implements HomeserverProbe {
  healthyNow = true;
  readonly pings: { clientUrl: string; appserviceId: string }[] = [];
  healthy(): Promise<boolean> {
    return Promise.resolve(this.healthyNow);
  }
  pingAppservice(clientUrl: string, appserviceId: string): Promise<void> {
    this.pings.push({ clientUrl, appserviceId });
    return Promise.resolve();
  }
}

describe("reconciler decisions (fake driver, PGlite)", () => {
  let database: TestDatabase;
  let app: App;
  let driver: FakeHomeserverDriver;
  let probe: FakeProbe;
  let bootstrapper: RecordingBootstrapper;
  let provisioner: Provisioner;
  let clock: Date;
  let slugCounter = 0;

  beforeAll(async () => {
    database = await createTestDatabase("pglite");
    const config = parseConfig(
      JSON.stringify({ secrets: { masterKeys: { t: Buffer.alloc(32, 3).toString("base64") } } }),
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
    probe = new FakeProbe();
    bootstrapper = new RecordingBootstrapper();
    clock = new Date();
    provisioner = await createProvisioner(app, {
      driver,
      probe,
      bootstrapper,
      now: () => clock,
      options: {
        initialBackoffMs: INITIAL_BACKOFF_MS,
        maxBackoffMs: 60_000,
        healthTimeoutMs: 1_000,
      },
    });
  });

  async function portalTenant(): Promise<TenantId> {
    const slug = `t${++slugCounter}`;
    const { tenant } = await app.tenants.create(
      {
        slug,
        name: slug,
        serverName: `${slug}.localhost`,
        homeserverUrl: `https://${slug}.localhost`,
      },
      { status: "provisioning" },
    );
    return tenant.id;
  }

  async function statusOf(tenantId: TenantId): Promise<string | undefined> {
    return (await app.tenantRepository.findById(app.database.knex, tenantId))?.status;
  }

  async function passFor(tenantId: TenantId) {
    const outcomes = await provisioner.reconciler.runPass();
    return outcomes.find((outcome) => outcome.tenantId === tenantId);
  }

  async function steps(tenantId: TenantId): Promise<string[]> {
    return (await provisioningState.steps(app.database.knex, tenantId))
      .reverse()
      .map((step) => `${step.step}:${step.status}:${step.attempt}`);
  }

  it("brings a new tenant up once: ensure on its plan's resources, client URL, health, bootstrap, active", async () => {
    const tenantId = await portalTenant();
    expect((await passFor(tenantId))?.result).toBe("converged");

    const [ensure] = driver.callsOf("ensure", tenantId);
    expect(ensure?.method === "ensure" && ensure.spec.resources).toEqual(
      app.config.plans.free?.homeserver,
    );
    expect(
      ensure?.method === "ensure" && ensure.spec.appserviceRegistrations["switchboard.yaml"],
    ).toContain("as_token");
    const homeserver = await app.tenantRepository.findHomeserver(app.database.knex, tenantId);
    expect(homeserver?.clientUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(probe.pings.at(-1)).toEqual({
      clientUrl: homeserver?.clientUrl,
      appserviceId: homeserver?.registrationId,
    });
    expect(bootstrapper.calls).toHaveLength(1);
    expect(bootstrapper.calls[0]?.registrationSharedSecret.length).toBeGreaterThanOrEqual(32);
    expect(await statusOf(tenantId)).toBe("active");
    expect(await steps(tenantId)).toEqual([
      "ensure:done:1",
      "record-endpoint:done:1",
      "health:done:1",
      "bootstrap:done:1",
      "mark-provisioned:done:1",
    ]);
    // The shared secret is stored encrypted, never in clear.
    const row = (await app.database
      .knex("provisioning")
      .where({ tenant_id: tenantId })
      .first()) as Record<string, unknown>;
    expect(JSON.stringify(row)).not.toContain(bootstrapper.calls[0]?.registrationSharedSecret);

    // A second pass over a healthy tenant changes nothing and records nothing.
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(driver.callsOf("ensure", tenantId)).toHaveLength(1);
    expect(bootstrapper.calls).toHaveLength(1);
    expect(await steps(tenantId)).toHaveLength(5);
  });

  it("leaves tenants whose homeserver was made elsewhere alone", async () => {
    const { tenant } = await app.tenants.create({
      slug: "external",
      name: "External",
      serverName: "external.localhost",
      homeserverUrl: "http://127.0.0.1:9",
    });
    await provisioner.reconciler.runPass();
    expect(driver.calls.filter((call) => call.tenantId === tenant.id)).toEqual([]);
  });

  it("backs off after a failure, retries, and a crash in bootstrap is finished by the next pass", async () => {
    const tenantId = await portalTenant();
    await passFor(tenantId); // first pass answers the creation request
    driver.failNext("ensure");
    driver.kill(tenantId);
    const failed = await passFor(tenantId);
    expect(failed?.result).toBe("failed");
    expect(failed?.error).toContain("failed on purpose");
    const [record] = await provisioningState.listManaged(app.database.knex, tenantId);
    expect(record?.provisioning?.failures).toBe(1);
    expect(record?.provisioning?.nextAttemptAt?.getTime()).toBe(
      clock.getTime() + INITIAL_BACKOFF_MS,
    );

    // Within the backoff: skipped.
    expect((await passFor(tenantId))?.result).toBe("skipped");
    // After it: converged again, failures reset.
    clock = new Date(clock.getTime() + INITIAL_BACKOFF_MS + 1);
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(driver.stateOf(tenantId)).toBe("running");
    const [after] = await provisioningState.listManaged(app.database.knex, tenantId);
    expect(after?.provisioning?.failures).toBe(0);
    expect(after?.provisioning?.lastError).toBeNull();
    expect(await steps(tenantId)).toContain("ensure:failed:1");

    const second = await portalTenant();
    bootstrapper.failures = 1;
    expect((await passFor(second))?.result).toBe("failed");
    expect(await statusOf(second)).toBe("provisioning");
    clock = new Date(clock.getTime() + INITIAL_BACKOFF_MS + 1);
    expect((await passFor(second))?.result).toBe("converged");
    expect(bootstrapper.calls.filter((call) => call.tenantId === second)).toHaveLength(2);
    expect(await statusOf(second)).toBe("active");
    expect(await steps(second)).toContain("bootstrap:failed:1");
    expect(await steps(second)).toContain("bootstrap:done:2");
  });

  it("an operator's re-provision request skips the backoff", async () => {
    const tenantId = await portalTenant();
    await passFor(tenantId);
    driver.failNext("ensure");
    driver.kill(tenantId);
    expect((await passFor(tenantId))?.result).toBe("failed");
    expect((await passFor(tenantId))?.result).toBe("skipped");
    await app.database
      .knex("tenants")
      .where({ id: tenantId })
      .update({ provision_requested_at: app.database.knex.fn.now() });
    expect((await passFor(tenantId))?.result).toBe("converged");
  });

  it("a plan change applies the new plan's homeserver resources on the next pass", async () => {
    const tenantId = await portalTenant();
    await passFor(tenantId);
    expect(driver.callsOf("ensure", tenantId)).toHaveLength(1);
    await app.planChanges.apply(tenantId, "pro", { id: "ops", via: "cli" });
    expect((await passFor(tenantId))?.result).toBe("converged");
    const ensures = driver.callsOf("ensure", tenantId);
    expect(ensures).toHaveLength(2);
    const last = ensures.at(-1);
    expect(last?.method === "ensure" && last.spec.resources).toEqual(
      app.config.plans.pro?.homeserver,
    );
  });

  it("a killed homeserver is started again by the next pass", async () => {
    const tenantId = await portalTenant();
    await passFor(tenantId);
    driver.kill(tenantId);
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(driver.stateOf(tenantId)).toBe("running");
    expect(driver.callsOf("ensure", tenantId)).toHaveLength(2);
  });

  it("any hold stops the homeserver (data kept); lifting it starts it again", async () => {
    const tenantId = await portalTenant();
    await passFor(tenantId);
    await withSystemTransaction(app.database.knex, (trx) =>
      tenantHolds.place(trx, tenantId, "operator", OPERATOR),
    );
    await passFor(tenantId);
    expect(driver.stateOf(tenantId)).toBe("stopped");
    expect(driver.callsOf("remove", tenantId)).toEqual([]);
    // Stopping is idempotent: a stopped homeserver is not stopped again.
    await passFor(tenantId);
    expect(driver.callsOf("stop", tenantId)).toHaveLength(1);

    await withSystemTransaction(app.database.knex, (trx) =>
      tenantHolds.lift(trx, tenantId, "operator", OPERATOR),
    );
    await passFor(tenantId);
    expect(driver.stateOf(tenantId)).toBe("running");
    expect(await statusOf(tenantId)).toBe("active");
    expect(bootstrapper.calls.filter((call) => call.tenantId === tenantId)).toHaveLength(1);
  });

  it("after retention, removes the homeserver and then lets deletion purge the tenant", async () => {
    const tenantId = await portalTenant();
    await passFor(tenantId);
    await tenantDeletion.schedule(app.database.knex, tenantId, 1, OPERATOR);
    await passFor(tenantId);
    expect(driver.stateOf(tenantId)).toBe("stopped");
    expect(await statusOf(tenantId)).toBe("suspended");

    // A failed removal keeps the tenant (and its record) for the retry.
    clock = new Date(clock.getTime() + 2 * 86_400_000);
    driver.failNext("remove");
    expect((await passFor(tenantId))?.result).toBe("failed");
    expect(await statusOf(tenantId)).toBe("suspended");
    clock = new Date(clock.getTime() + INITIAL_BACKOFF_MS + 1);
    expect((await passFor(tenantId))?.result).toBe("converged");
    expect(driver.stateOf(tenantId)).toBe("absent");
    expect(await statusOf(tenantId)).toBeUndefined();
  });

  it("the runtime picks up a homeserver the provisioner moved, also from another process", async () => {
    const tenantId = await portalTenant();
    const before = await app.runtime.registry.get(tenantId);
    expect(before?.homeserver.clientUrl).toMatch(/^https:/);
    await passFor(tenantId);
    // In-process: forgotten at once by the provisioner's callback.
    const after = await app.runtime.registry.get(tenantId);
    expect(after?.homeserver.clientUrl).toMatch(/^http:\/\/127\.0\.0\.1:/);
    // Another process moved it: the periodic check forgets the stale entry.
    await app.tenantRepository.updateHomeserverUrl(
      app.database.knex,
      tenantId,
      "http://127.0.0.1:7",
    );
    expect(await app.runtime.registry.forgetChanged()).toBe(1);
    expect((await app.runtime.registry.get(tenantId))?.homeserver.clientUrl).toBe(
      "http://127.0.0.1:7",
    );
  });
});
