import type { Knex } from "knex";
import type { TenantId } from "../shared/ids.ts";

export type AdminSource = "bootstrap" | "operator" | "member";

/**
 * The Matrix IDs that administer a tenant by chat: its bootstrap account,
 * IDs an operator adds, and (with the portal) members' linked IDs.
 */
export const tenantAdmins = {
  async add(
    trx: Knex.Transaction,
    tenantId: TenantId,
    userId: string,
    source: AdminSource,
  ): Promise<void> {
    await trx("tenant_admins")
      .insert({ tenant_id: tenantId, user_id: userId, source })
      .onConflict(["tenant_id", "user_id"])
      .ignore();
  },

  async remove(trx: Knex.Transaction, userId: string): Promise<boolean> {
    return (await trx("tenant_admins").where({ user_id: userId }).delete()) > 0;
  },

  /**
   * Removes an ID only if it was added for that reason: unlinking a member's
   * Matrix ID must not take away rights an operator or bootstrap granted.
   */
  async removeFrom(trx: Knex.Transaction, userId: string, source: AdminSource): Promise<boolean> {
    return (await trx("tenant_admins").where({ user_id: userId, source }).delete()) > 0;
  },

  async isAdmin(trx: Knex.Transaction, userId: string): Promise<boolean> {
    return (await trx("tenant_admins").where({ user_id: userId }).first()) !== undefined;
  },

  async list(trx: Knex.Transaction): Promise<{ userId: string; source: AdminSource }[]> {
    const rows = (await trx("tenant_admins").orderBy("user_id").select("user_id", "source")) as {
      user_id: string;
      source: AdminSource;
    }[];
    return rows.map((row) => ({ userId: row.user_id, source: row.source }));
  },
};
