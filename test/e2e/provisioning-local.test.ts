import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../src/audit/audit-log.ts";
import { createProvisioner, type Provisioner } from "../../src/provisioning/provisioner.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { loginWithPassword } from "../../src/synapse/admin-api.ts";
import { tenantDeletion } from "../../src/tenants/deletion.ts";
import { TenantOperations } from "../../src/tenants/operations.ts";
import { MatrixTestUser, messageFrom } from "../support/matrix-user.ts";
import { signUpAndIn } from "../support/portal.ts";
import { createTenant } from "../support/portal-tenants.ts";
import { freePort } from "../support/synapse.ts";
import { startStack, type TestStack } from "../support/stack.ts";

const OPERATOR: Actor = { id: "operator", via: "cli" };
/** A first Synapse start on two busy cores, plus the bootstrap. */
const BRING_UP_TIMEOUT_MS = 150_000;
const CHANGE_TIMEOUT_MS = 60_000;

describe("provisioning with the local driver on a real Synapse", () => {
  let stack: TestStack;
  let provisioner: Provisioner;
  let operations: TenantOperations;
  let tenantId: TenantId;

  beforeAll(async () => {
    const portRangeStart = await freePort();
    stack = await startStack({
      config: {
        provisioning: {
          reconcileIntervalMs: 1_000,
          demandPollMs: 200,
          initialBackoffMs: 500,
          maxBackoffMs: 2_000,
          local: { portRangeStart, portRangeEnd: Math.min(65_535, portRangeStart + 50) },
        },
      },
    });
    provisioner = await createProvisioner(stack.app);
    provisioner.start();
    operations = new TenantOperations(
      stack.app.database.knex,
      stack.config.plans,
      stack.app.planChanges,
    );
  }, 60_000);

  afterAll(async () => {
    await provisioner?.stop();
    await stack?.stop();
  });

  async function state(): Promise<string> {
    return (await provisioner.driver.inspect(tenantId)).state;
  }

  it(
    "a tenant created in the portal gets a homeserver; its bootstrap admin talks to the demo agent",
    async () => {
      const portal = await stack.app.portal.app();
      const owner = await signUpAndIn(portal, stack.outboxDir, "owner@prov.test");
      const created = await createTenant(owner, "prov");
      tenantId = created.id as TenantId;
      expect(created.status).toBe("provisioning");

      await expect
        .poll(
          async () =>
            (await stack.app.tenantRepository.findById(stack.database.knex, tenantId))?.status,
          {
            timeout: BRING_UP_TIMEOUT_MS,
            interval: 250,
          },
        )
        .toBe("active");

      const homeserver = await stack.app.tenantRepository.findHomeserver(
        stack.database.knex,
        tenantId,
      );
      expect(homeserver?.clientUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const record = (await stack.database
        .knex("provisioning")
        .where({ tenant_id: tenantId })
        .first()) as {
        admin_user_id: string;
        admin_password_encrypted: string;
        management_room_id: string;
      };
      expect(record.admin_user_id).toBe("@admin:prov.localhost");
      expect(record.management_room_id).toMatch(/^!/);
      const steps = (await stack.database
        .knex("provisioning_steps")
        .where({ tenant_id: tenantId, status: "done" })
        .pluck("step")) as string[];
      expect(steps).toEqual(
        expect.arrayContaining([
          "ensure",
          "record-endpoint",
          "health",
          "bootstrap",
          "mark-provisioned",
        ]),
      );

      const clientUrl = homeserver?.clientUrl ?? "";
      const session = await loginWithPassword(
        clientUrl,
        "admin",
        stack.app.cipher.decrypt(record.admin_password_encrypted),
      );
      const admin = new MatrixTestUser(clientUrl, session.userId, session.accessToken);
      const ada = `@${stack.config.runtime.agentPrefix}ada:prov.localhost`;
      const roomId = await admin.openDm(ada);
      stack.model.enqueue({ kind: "reply", text: "Hello from your new homeserver." });
      await admin.sendText(roomId, "hello?");
      const reply = await admin.waitForEvent(roomId, messageFrom(ada));
      expect(reply.content.body).toContain("Hello from your new homeserver");
    },
    BRING_UP_TIMEOUT_MS + 60_000,
  );

  it(
    "a killed homeserver is started again by the next pass",
    async () => {
      const before = await provisioner.driver.inspect(tenantId);
      const pid = before.details?.pid;
      expect(typeof pid).toBe("number");
      process.kill(pid as number, "SIGKILL");
      await expect
        .poll(async () => (await provisioner.driver.inspect(tenantId)).details?.pid, {
          timeout: CHANGE_TIMEOUT_MS,
          interval: 250,
        })
        .not.toBe(pid);
      await expect.poll(state, { timeout: CHANGE_TIMEOUT_MS, interval: 250 }).toBe("running");
    },
    CHANGE_TIMEOUT_MS * 2,
  );

  it(
    "suspension stops the homeserver with its data; resumption starts it again",
    async () => {
      await operations.suspend(tenantId, OPERATOR);
      await expect.poll(state, { timeout: CHANGE_TIMEOUT_MS, interval: 250 }).toBe("stopped");
      await operations.resume(tenantId, OPERATOR);
      await expect.poll(state, { timeout: CHANGE_TIMEOUT_MS, interval: 250 }).toBe("running");
      // The same accounts are there: the data was kept.
      const homeserver = await stack.app.tenantRepository.findHomeserver(
        stack.database.knex,
        tenantId,
      );
      const record = (await stack.database
        .knex("provisioning")
        .where({ tenant_id: tenantId })
        .first("admin_password_encrypted")) as { admin_password_encrypted: string };
      await loginWithPassword(
        homeserver?.clientUrl ?? "",
        "admin",
        stack.app.cipher.decrypt(record.admin_password_encrypted),
      );
    },
    CHANGE_TIMEOUT_MS * 3,
  );

  it(
    "deletion removes the homeserver and its data after retention, then the tenant",
    async () => {
      await tenantDeletion.schedule(stack.database.knex, tenantId, 0, OPERATOR);
      await expect.poll(state, { timeout: CHANGE_TIMEOUT_MS, interval: 250 }).toBe("absent");
      await expect
        .poll(() => stack.app.tenantRepository.findById(stack.database.knex, tenantId), {
          timeout: CHANGE_TIMEOUT_MS,
          interval: 250,
        })
        .toBeUndefined();
      expect(existsSync(join(stack.config.dataDir, "homeservers", "prov"))).toBe(false);
    },
    CHANGE_TIMEOUT_MS * 2,
  );
});
