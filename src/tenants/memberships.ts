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

/** One membership row, as the tenant sees it (no account details: those are service-wide). */
export interface MembershipRecord {
  readonly accountId: AccountId;
  readonly role: MemberRole;
  readonly matrixUserId: string | null;
  readonly createdAt: Date;
}

interface MembershipRow {
  account_id: string;
  role: MemberRole;
  matrix_user_id: string | null;
  created_at: Date;
}

const toRecord = (row: MembershipRow): MembershipRecord => ({
  accountId: row.account_id as AccountId,
  role: row.role,
  matrixUserId: row.matrix_user_id,
  createdAt: new Date(row.created_at),
});

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

  /** The members of the tenant of the transaction, oldest first; `limit` rows from `offset`. */
  async list(
    trx: Knex.Transaction,
    page: { limit: number; offset: number },
  ): Promise<MembershipRecord[]> {
    const rows = (await trx("memberships")
      .orderBy([{ column: "created_at" }, { column: "account_id" }])
      .offset(page.offset)
      .limit(page.limit)) as MembershipRow[];
    return rows.map(toRecord);
  },

  async get(trx: Knex.Transaction, accountId: AccountId): Promise<MembershipRecord | undefined> {
    const row = (await trx("memberships").where({ account_id: accountId }).first()) as
      MembershipRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  },

  /** One member, locked for the rest of the transaction (role and link changes check, then write). */
  async getForUpdate(
    trx: Knex.Transaction,
    accountId: AccountId,
  ): Promise<MembershipRecord | undefined> {
    const row = (await trx("memberships").where({ account_id: accountId }).forUpdate().first()) as
      MembershipRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  },

  /**
   * How many owners the tenant has, with the owner rows locked, so two
   * concurrent demotions cannot both see "another owner is left".
   */
  async countOwnersForUpdate(trx: Knex.Transaction): Promise<number> {
    const rows = (await trx("memberships")
      .where({ role: "owner" })
      // One lock order for every caller, so two demotions wait instead of deadlocking.
      .orderBy("account_id")
      .forUpdate()
      .select("account_id")) as unknown[];
    return rows.length;
  },

  async setRole(trx: Knex.Transaction, accountId: AccountId, role: MemberRole): Promise<void> {
    await trx("memberships").where({ account_id: accountId }).update({ role });
  },

  async setMatrixUserId(
    trx: Knex.Transaction,
    accountId: AccountId,
    matrixUserId: string | null,
  ): Promise<void> {
    await trx("memberships")
      .where({ account_id: accountId })
      .update({ matrix_user_id: matrixUserId });
  },

  /** The member who linked a Matrix ID in this tenant, if any. */
  async findByMatrixUserId(
    trx: Knex.Transaction,
    matrixUserId: string,
  ): Promise<MembershipRecord | undefined> {
    const row = (await trx("memberships").where({ matrix_user_id: matrixUserId }).first()) as
      MembershipRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  },

  async remove(trx: Knex.Transaction, accountId: AccountId): Promise<boolean> {
    return (await trx("memberships").where({ account_id: accountId }).delete()) > 0;
  },
};
