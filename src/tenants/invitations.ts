import type { Knex } from "knex";
import type { AccountId } from "../accounts/types.ts";
import type { TenantId } from "../shared/ids.ts";

/** The roles an invitation can grant; owners are made by owners, from members. */
export type InvitedRole = "admin" | "member";

export interface Invitation {
  readonly id: string;
  readonly tenantId: TenantId;
  /** Lowercased, like account emails. */
  readonly email: string;
  readonly role: InvitedRole;
  readonly invitedBy: AccountId | null;
  readonly expiresAt: Date;
  readonly acceptedAt: Date | null;
  readonly createdAt: Date;
}

interface InvitationRow {
  id: string;
  tenant_id: string;
  email: string;
  role: InvitedRole;
  invited_by: string | null;
  expires_at: Date;
  accepted_at: Date | null;
  created_at: Date;
}

const toInvitation = (row: InvitationRow): Invitation => ({
  id: row.id,
  tenantId: row.tenant_id as TenantId,
  email: row.email,
  role: row.role,
  invitedBy: row.invited_by as AccountId | null,
  expiresAt: new Date(row.expires_at),
  acceptedAt: row.accepted_at === null ? null : new Date(row.accepted_at),
  createdAt: new Date(row.created_at),
});

/** Invitations to join a tenant; only the SHA-256 of each mailed token is stored. */
export const invitations = {
  /** Inserts a pending invitation, replacing the address's earlier pending one. */
  async replace(
    trx: Knex.Transaction,
    invitation: {
      tenantId: TenantId;
      email: string;
      role: InvitedRole;
      tokenSha256: string;
      invitedBy: AccountId | null;
      expiresAt: Date;
    },
  ): Promise<Invitation> {
    await trx("invitations").where({ email: invitation.email }).whereNull("accepted_at").delete();
    const [row] = (await trx("invitations")
      .insert({
        tenant_id: invitation.tenantId,
        email: invitation.email,
        role: invitation.role,
        token_sha256: invitation.tokenSha256,
        invited_by: invitation.invitedBy,
        expires_at: invitation.expiresAt,
      })
      .returning("*")) as InvitationRow[];
    return toInvitation(row as InvitationRow);
  },

  /** Pending (not accepted) invitations of the transaction's tenant, newest first, expired included. */
  async listPending(
    trx: Knex.Transaction,
    page: { limit: number; offset: number },
  ): Promise<Invitation[]> {
    const rows = (await trx("invitations")
      .whereNull("accepted_at")
      .orderBy([
        { column: "created_at", order: "desc" },
        { column: "id", order: "desc" },
      ])
      .offset(page.offset)
      .limit(page.limit)) as InvitationRow[];
    return rows.map(toInvitation);
  },

  async deletePending(trx: Knex.Transaction, id: string): Promise<Invitation | undefined> {
    const [row] = (await trx("invitations")
      .where({ id })
      .whereNull("accepted_at")
      .delete()
      .returning("*")) as InvitationRow[];
    return row === undefined ? undefined : toInvitation(row);
  },

  /**
   * The pending invitation behind a mailed token, in any tenant. Runs on the
   * service connection: the token is what tells us the tenant (like an API
   * token); everything after goes through withTenant.
   */
  async findPendingByToken(db: Knex, tokenSha256: string): Promise<Invitation | undefined> {
    const row = (await db("invitations")
      .where({ token_sha256: tokenSha256 })
      .whereNull("accepted_at")
      .first()) as InvitationRow | undefined;
    return row === undefined ? undefined : toInvitation(row);
  },

  /** Marks a pending invitation accepted; false when it was accepted or replaced meanwhile. */
  async markAccepted(trx: Knex.Transaction, id: string): Promise<boolean> {
    const updated = (await trx("invitations")
      .where({ id })
      .whereNull("accepted_at")
      .update({ accepted_at: trx.fn.now() }, ["id"])) as unknown[];
    return updated.length > 0;
  },
};
