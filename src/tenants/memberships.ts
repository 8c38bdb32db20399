import type { Knex } from "knex";
import type { AccountId } from "../accounts/types.ts";
import type { TenantId } from "../shared/ids.ts";

/** A member's role in a tenant, from most to least powerful. */
export type MemberRole = "owner" | "admin" | "member";

const RANK: Record<MemberRole, number> = { owner: 3, admin: 2, member: 1 };

/** Whether `role` may do what needs `required`. */
export function roleAtLeast(role: MemberRole, required: MemberRole): boolean {
  return RANK[role] >= RANK[required];
}

export const memberships = {
  /** The account's role in the tenant of the transaction (row-level security scopes it), if any. */
  async roleOf(trx: Knex.Transaction, accountId: AccountId): Promise<MemberRole | undefined> {
    const row = (await trx("memberships").where({ account_id: accountId }).first("role")) as
      { role: MemberRole } | undefined;
    return row?.role;
  },

  async add(
    trx: Knex.Transaction,
    tenantId: TenantId,
    accountId: AccountId,
    role: MemberRole,
  ): Promise<void> {
    await trx("memberships")
      .insert({ tenant_id: tenantId, account_id: accountId, role })
      .onConflict(["tenant_id", "account_id"])
      .ignore();
  },

  /**
   * The tenants an account belongs to. This one lookup crosses tenants (it
   * is how a signed-in person finds their tenants), so it runs on the
   * service connection and returns ids and roles only; everything read
   * about a tenant afterwards goes through withTenant.
   */
  async tenantsOf(
    db: Knex,
    accountId: AccountId,
  ): Promise<{ tenantId: TenantId; role: MemberRole }[]> {
    const rows = (await db("memberships")
      .where({ account_id: accountId })
      .orderBy("created_at")
      .select("tenant_id", "role")) as { tenant_id: string; role: MemberRole }[];
    return rows.map((row) => ({ tenantId: row.tenant_id as TenantId, role: row.role }));
  },
};
