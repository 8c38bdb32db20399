import type { Knex } from "knex";
import { enableTenantIsolation } from "../row-level-security.ts";

/**
 * The provisioner's bookkeeping (src/provisioning/reconciler.ts).
 *
 * `provisioning`: one row per tenant whose homeserver the provisioner runs.
 * Tenants created active with a homeserver made elsewhere (the CLI, the
 * embedded demo) have none and are left alone; a tenant created in status
 * provisioning (portal sign-up) gets its row on the first pass. The row
 * holds what must survive a crash: the driver that made the stack, the
 * per-tenant registration shared secret (encrypted), the bootstrap results
 * (admin account, management room), the last observation and the retry
 * state (failures, next_attempt_at, last_error). The bootstrap admin's
 * password is kept encrypted until the owner has seen it once in the portal.
 *
 * `provisioning_steps`: every step of every pass (ensure, health, bootstrap,
 * stop, remove, ...), started then done or failed, with the attempt number:
 * the history an operator reads when a tenant is stuck.
 *
 * Both cascade with the tenant: the reconciler removes the homeserver before
 * it lets deletion purge the tenant.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("provisioning", (t) => {
    t.uuid("tenant_id").primary().references("tenants.id").onDelete("cascade");
    t.text("driver").notNullable();
    t.text("registration_shared_secret_encrypted").notNullable();
    /** running | stopped | deleted: what the last pass aimed for. */
    t.text("desired_state");
    /** absent | stopped | starting | running | unhealthy: what the driver last reported. */
    t.text("observed_state");
    t.text("observed_detail");
    /** Consecutive failed passes; 0 after a good one. */
    t.integer("failures").notNullable().defaultTo(0);
    t.timestamp("next_attempt_at", { useTz: true });
    t.text("last_error");
    t.timestamp("reconciled_at", { useTz: true });
    t.text("admin_user_id");
    t.text("admin_password_encrypted");
    t.text("management_room_id");
    t.timestamp("bootstrapped_at", { useTz: true });
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.check("failures >= 0");
  });
  await enableTenantIsolation(knex, "provisioning");

  await knex.schema.createTable("provisioning_steps", (t) => {
    t.bigIncrements("id").primary();
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("step").notNullable();
    t.text("status").notNullable();
    t.integer("attempt").notNullable();
    t.text("error");
    t.timestamp("started_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("finished_at", { useTz: true });
    t.check("status in ('started', 'done', 'failed')");
    t.index(["tenant_id", "id"]);
  });
  await enableTenantIsolation(knex, "provisioning_steps");
}
