import type { Knex } from "knex";

/**
 * Scheduled tenant deletion keeps the status the tenant had before it was
 * suspended for deletion, so restoring it within the retention period puts
 * back exactly that status: a tenant that an operator had suspended (or that
 * was still provisioning) must not come back active just because its owner
 * deleted and restored it.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable("tenants", (t) => {
    t.text("status_before_deletion");
  });
}
