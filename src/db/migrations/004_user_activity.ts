import type { Knex } from "knex";
import { enableTenantIsolation } from "../row-level-security.ts";

/**
 * Days on which each person was active in a tenant's rooms with agents
 * (matrix-appservice-bridge's UserActivityTracker data), for active-user
 * counts in usage and billing.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("user_activity", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("user_id").notNullable();
    t.jsonb("activity").notNullable();
    t.primary(["tenant_id", "user_id"]);
  });
  await enableTenantIsolation(knex, "user_activity");
}
