import type { Knex } from "knex";
import { enableTenantIsolation } from "../row-level-security.ts";

/**
 * Suspension becomes a set of independent holds instead of one status
 * value: an operator, billing (past due beyond grace, paused subscription)
 * and a scheduled deletion can each suspend a tenant, and lifting one must
 * not lift the others. `tenants.status` stays as the value everything reads
 * (the runtime, the portal), recomputed by src/tenants/holds.ts whenever a
 * hold changes: suspended while any hold exists, else active once the
 * homeserver was provisioned (`provisioned_at`), else provisioning.
 *
 * `status_before_deletion` (008) only existed to undo a deletion's
 * suspension; holds make it redundant, so it is migrated into holds and
 * dropped here.
 *
 * `limit_notices` records the one notice per room, UTC day and kind
 * ("messages", "suspended") that agents post when they stop answering.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("tenant_holds", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("reason").notNullable();
    t.timestamp("since", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "reason"]);
    t.check("reason in ('operator', 'billing', 'deletion')");
  });
  await enableTenantIsolation(knex, "tenant_holds");

  // Defaults to now() like status defaults to 'active': a row inserted
  // without either is a running tenant. Provisioning tenants set it null.
  await knex.schema.alterTable("tenants", (t) => {
    t.timestamp("provisioned_at", { useTz: true }).defaultTo(knex.fn.now());
  });
  await knex.raw(
    `update tenants set provisioned_at = null
      where status = 'provisioning'
         or (delete_after is not null and status_before_deletion = 'provisioning')`,
  );

  // An operator suspension: suspended without a deletion, or suspended
  // before the deletion was scheduled.
  await knex.raw(
    `insert into tenant_holds (tenant_id, reason)
     select id, 'operator' from tenants
      where status = 'suspended'
        and (delete_after is null or status_before_deletion = 'suspended')`,
  );
  await knex.raw(
    `insert into tenant_holds (tenant_id, reason)
     select id, 'deletion' from tenants where delete_after is not null`,
  );
  await knex.schema.alterTable("tenants", (t) => {
    t.dropColumn("status_before_deletion");
  });

  await knex.schema.createTable("limit_notices", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("room_id").notNullable();
    /** The UTC day the notice was posted for. */
    t.date("day").notNullable();
    t.text("kind").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "room_id", "day", "kind"]);
    t.check("kind in ('messages', 'suspended')");
  });
  await enableTenantIsolation(knex, "limit_notices");
}
