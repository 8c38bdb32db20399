import type { Knex } from "knex";

/**
 * Members and invitations, made safe against races the service's checks
 * alone cannot stop: a Matrix ID is linked by at most one member of a tenant
 * (unlinking it must not take chat admin rights from someone else), and an
 * address has at most one pending invitation per tenant (re-inviting
 * replaces it).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(
    "create unique index memberships_matrix_user_id on memberships (tenant_id, matrix_user_id) where matrix_user_id is not null",
  );
  await knex.raw(
    "create unique index invitations_pending_email on invitations (tenant_id, email) where accepted_at is null",
  );
}
