import type { Knex } from "knex";
import { enableTenantIsolation } from "../row-level-security.ts";

/**
 * Per-tenant backups and homeserver health (src/provisioning/backups.ts,
 * health.ts).
 *
 * `backups` records every backup attempt: where its directory is, how big it
 * is, and whether it completed; the scheduler reads the newest completed one
 * per tenant to decide who is due, and pruning deletes rows with their
 * directories.
 *
 * `homeserver_health` is the health monitor's memory per tenant: consecutive
 * failed checks (drives the restart backoff and the operator alert) and
 * whether the stack is degraded, which the portal shows.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("backups", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    /** The backup's directory (absolute), holding manifest.json and its files. */
    t.text("path").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.bigInteger("bytes");
    t.text("status").notNullable().defaultTo("running");
    /** Why it failed; secret-free. */
    t.text("error");
    t.check("status in ('running', 'completed', 'failed')");
    t.index(["tenant_id", "created_at"]);
  });
  await enableTenantIsolation(knex, "backups");

  await knex.schema.createTable("homeserver_health", (t) => {
    t.uuid("tenant_id").primary().references("tenants.id").onDelete("cascade");
    t.text("status").notNullable().defaultTo("healthy");
    t.integer("consecutive_failures").notNullable().defaultTo(0);
    t.timestamp("last_checked_at", { useTz: true });
    t.timestamp("last_healthy_at", { useTz: true });
    /** What the last failed check saw; secret-free. */
    t.text("last_error");
    t.integer("restarts").notNullable().defaultTo(0);
    /** No restart before this time (exponential backoff). */
    t.timestamp("next_restart_at", { useTz: true });
    /** When the operator was alerted for the current failure streak. */
    t.timestamp("alerted_at", { useTz: true });
    t.check("status in ('healthy', 'degraded')");
  });
  await enableTenantIsolation(knex, "homeserver_health");
}
