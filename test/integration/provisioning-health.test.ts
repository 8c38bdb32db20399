import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HomeserverProbe } from "../../src/provisioning/homeserver-checks.ts";
import type { BootstrapInput, TenantBootstrapper } from "../../src/provisioning/bootstrap.ts";
import { createProvisioner, type Provisioner } from "../../src/provisioning/provisioner.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { BACKENDS } from "../support/database.ts";
import { FakeHomeserverDriver } from "../support/fake-homeserver-driver.ts";
import { signedInOperator } from "../support/ops-fixtures.ts";
import { startPortalTest, type PortalTest } from "../support/portal.ts";

/** Healthy unless told otherwise. */
class SwitchableProbe implements HomeserverProbe {
  healthyNow = true;
  healthy(): Promise<boolean> {
    return Promise.resolve(this.healthyNow);
  }
  pingAppservice(): Promise<void> {
    return Promise.resolve();
  }
}

class NoBootstrap implements TenantBootstrapper {
  bootstrap(_input: BootstrapInput): Promise<void> {
    return Promise.resolve();
  }
}

describe.each(BACKENDS)("health monitor in the provisioner (%s)", (backend) => {
  let t: PortalTest;
  let driver: FakeHomeserverDriver;
  let probe: SwitchableProbe;
  let provisioner: Provisioner;
  let tenantId: TenantId;

  const requestedAt = async (): Promise<number> =>
    new Date(
      (
        (await t.app.database
          .knex("tenants")
          .where({ id: tenantId })
          .first("provision_requested_at")) as {
          provision_requested_at: Date | string;
        }
      ).provision_requested_at,
    ).getTime();

  beforeAll(async () => {
    t = await startPortalTest({
      database: backend,
      config: { provisioning: { health: { restartAfterFailures: 2 }, alertAfterFailures: 3 } },
    });
    driver = new FakeHomeserverDriver();
    probe = new SwitchableProbe();
    provisioner = await createProvisioner(t.app, {
      driver,
      probe,
      bootstrapper: new NoBootstrap(),
      options: { initialBackoffMs: 1_000, maxBackoffMs: 10_000, healthTimeoutMs: 1_000 },
    });
    const { tenant } = await t.app.tenants.create(
      {
        slug: "acme",
        name: "Acme",
        serverName: "acme.localhost",
        homeserverUrl: "https://acme.localhost",
      },
      { status: "provisioning" },
    );
    tenantId = tenant.id;
    const [outcome] = await provisioner.reconciler.runPass();
    expect(outcome?.result).toBe("converged");
  });
  afterAll(async () => {
    await provisioner.stop();
    await t.stop();
  });

  it("watches provisioned tenants; restarts an unhealthy one through the reconciler; recovery clears degraded", async () => {
    expect((await provisioner.health.runOnce()).map((o) => o.result)).toEqual(["healthy"]);

    probe.healthyNow = false;
    expect((await provisioner.health.runOnce())[0]).toMatchObject({
      result: "unhealthy",
      restarted: false,
    });
    const before = await requestedAt();
    const second = (await provisioner.health.runOnce())[0];
    expect(second).toMatchObject({ restarted: true, alerted: false });
    // Restarted as the monitor promises: stopped, and a pass asked for that skips backoff.
    expect(driver.callsOf("stop", tenantId)).toHaveLength(1);
    expect(await requestedAt()).toBeGreaterThanOrEqual(before);
    expect((await provisioner.health.runOnce())[0]).toMatchObject({ alerted: true });

    const operator = await signedInOperator(t, "ops@example.org");
    expect((await operator.request(`/admin/tenants/${tenantId}`)).body).toContain(
      "failed checks in a row",
    );
    const metrics = (await t.browser().request("/metrics")).body;
    expect(metrics).toMatch(/switchboard_homeservers_degraded 1/);
    expect(metrics).toMatch(/switchboard_homeserver_alerts_total 1/);
    expect(metrics).toMatch(/switchboard_homeserver_restarts_total 1/);

    probe.healthyNow = true;
    await provisioner.reconciler.runPass();
    expect(driver.stateOf(tenantId)).toBe("running");
    expect((await provisioner.health.runOnce())[0]?.result).toBe("healthy");
    expect((await operator.request(`/admin/tenants/${tenantId}`)).body).not.toContain(
      "failed checks in a row",
    );
    expect((await t.browser().request("/metrics")).body).toMatch(
      /switchboard_homeservers_degraded 0/,
    );
  });
});
