import type { Knex } from "knex";

/**
 * The audit log is read newest first by id (keyset pages in the portal);
 * this index serves that order within a tenant.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw("create index audit_log_by_id on audit_log (tenant_id, id desc)");
}
