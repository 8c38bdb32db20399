import type { Knex } from "knex";
import { z } from "zod";
import type { Mailer } from "../accounts/mailer.ts";
import { accountRepository } from "../accounts/repository.ts";
import { EmailSchema } from "../accounts/service.ts";
import type { Account, AccountId } from "../accounts/types.ts";
import { parseOrThrow } from "../agents/validation.ts";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { generateToken, sha256Hex } from "../secrets/cipher.ts";
import { AppError, badRequest, conflict, describeError, notFound } from "../shared/errors.ts";
import { isMatrixUserId, isUuid, type TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { tenantAdmins } from "./admins.ts";
import { invitations, type Invitation } from "./invitations.ts";
import { memberships, roleAtLeast, type MemberRole, type MembershipRecord } from "./memberships.ts";
import type { TenantRepository } from "./repository.ts";
import type { Tenant } from "./types.ts";

export const INVITATION_TTL_DAYS = 7;
const DAY_MS = 86_400_000;
const MAX_TOKEN_CHARS = 128;

export const InviteSchema = z.strictObject({
  email: EmailSchema,
  role: z.enum(["admin", "member"], "must be admin or member"),
});
export const RoleChangeSchema = z.strictObject({
  role: z.enum(["owner", "admin", "member"], "must be owner, admin or member"),
});
export const MatrixLinkSchema = z.strictObject({
  matrixUserId: z
    .string()
    .trim()
    .max(255)
    .refine(isMatrixUserId, "must be a Matrix ID like @alice:example.org"),
});

/** Who acts on members: their audit identity, their role in the tenant, and their account (none for API tokens). */
export interface MemberActor {
  readonly actor: Actor;
  readonly role: MemberRole;
  readonly accountId: AccountId | null;
}

/** A member as the tenant's people see them. */
export interface Member {
  readonly accountId: AccountId;
  readonly email: string;
  readonly displayName: string;
  readonly role: MemberRole;
  readonly matrixUserId: string | null;
  readonly joinedAt: Date;
}

/** A pending invitation as shown before it is accepted. */
export interface InvitationPreview {
  readonly tenant: Tenant;
  readonly email: string;
  readonly role: Invitation["role"];
  readonly expiresAt: Date;
}

/** Postgres' unique_violation: a concurrent request got there first. */
function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === "23505";
}

/**
 * A tenant's members, their roles and linked Matrix IDs, and invitations.
 * Rules: every tenant keeps at least one owner; only owners make, unmake or
 * remove owners; anyone may leave (except the last owner). A linked Matrix ID
 * of an owner or admin is a chat admin of the tenant too (tenant_admins,
 * source "member"), kept in step with role changes in the same transaction.
 */
export class MemberService {
  readonly #db: Knex;
  readonly #mailer: Mailer;
  readonly #tenants: TenantRepository;
  readonly #publicUrl: string;
  readonly #log: Logger;

  constructor(
    db: Knex,
    mailer: Mailer,
    tenants: TenantRepository,
    options: { publicUrl: string; log: Logger },
  ) {
    this.#db = db;
    this.#mailer = mailer;
    this.#tenants = tenants;
    this.#publicUrl = options.publicUrl.replace(/\/+$/, "");
    this.#log = options.log.child({ module: "members" });
  }

  /** A page of members, oldest first. */
  async list(tenantId: TenantId, page: { limit: number; offset: number }): Promise<Member[]> {
    const records = await withTenant(this.#db, tenantId, (trx) => memberships.list(trx, page));
    const accounts = new Map(
      (
        await accountRepository.findByIds(
          this.#db,
          records.map((record) => record.accountId),
        )
      ).map((account) => [account.id, account]),
    );
    return records.flatMap((record) => {
      const account = accounts.get(record.accountId);
      return account === undefined ? [] : [toMember(record, account)];
    });
  }

  /** The account's own membership (its role and linked Matrix ID), if any. */
  async membershipOf(
    tenantId: TenantId,
    accountId: AccountId,
  ): Promise<MembershipRecord | undefined> {
    return withTenant(this.#db, tenantId, (trx) => memberships.get(trx, accountId));
  }

  /**
   * Invites an address (mailed link, valid INVITATION_TTL_DAYS); a new
   * invitation to the same address replaces the pending one. If the mail
   * cannot be sent, the invitation is withdrawn and the error rethrown.
   */
  async invite(tenant: Tenant, input: unknown, by: MemberActor): Promise<Invitation> {
    const { email, role } = parseOrThrow(InviteSchema, input);
    const existing = await accountRepository.findByEmail(this.#db, email);
    const token = generateToken();
    const invitation = await withTenant(this.#db, tenant.id, async (trx) => {
      if (existing !== undefined && (await memberships.roleOf(trx, existing.account.id)))
        throw conflict(`${email} is already a member`);
      const created = await invitations
        .replace(trx, {
          tenantId: tenant.id,
          email,
          role,
          tokenSha256: sha256Hex(token),
          invitedBy: by.accountId,
          expiresAt: new Date(Date.now() + INVITATION_TTL_DAYS * DAY_MS),
        })
        .catch((error: unknown) => {
          throw isUniqueViolation(error)
            ? conflict(`${email} was invited at the same moment; try again`)
            : error;
        });
      await auditLog.recordBy(trx, tenant.id, by.actor, "member.invite", email, { role });
      return created;
    });
    try {
      await this.#mailer.send({
        to: email,
        subject: `You are invited to ${tenant.name} on Switchboard`,
        text: `${by.actor.id} invited you to join "${tenant.name}" on Switchboard as ${role}.\n\nOpen this link to accept (valid ${String(INVITATION_TTL_DAYS)} days; sign in or create an account with this email address first):\n${this.#publicUrl}/invitations/accept?token=${token}\n\nIf you did not expect this, ignore this mail.\n`,
      });
    } catch (error) {
      this.#log.warn(
        { tenantId: tenant.id, error: describeError(error) },
        "invitation not mailed; withdrawn",
      );
      await withTenant(this.#db, tenant.id, (trx) => invitations.deletePending(trx, invitation.id));
      throw error;
    }
    return invitation;
  }

  async listInvitations(
    tenantId: TenantId,
    page: { limit: number; offset: number },
  ): Promise<Invitation[]> {
    return withTenant(this.#db, tenantId, (trx) => invitations.listPending(trx, page));
  }

  /** Withdraws a pending invitation; its link stops working. */
  async revokeInvitation(tenantId: TenantId, invitationId: string, by: Actor): Promise<void> {
    if (!isUuid(invitationId)) throw notFound("invitation");
    await withTenant(this.#db, tenantId, async (trx) => {
      const removed = await invitations.deletePending(trx, invitationId);
      if (removed === undefined) throw notFound("invitation");
      await auditLog.recordBy(trx, tenantId, by, "member.invitation_revoke", removed.email);
    });
  }

  /** What a link invites to, for the page that asks to accept it. */
  async previewInvitation(token: string): Promise<InvitationPreview> {
    const invitation = await this.#livePending(token);
    const tenant = await this.#tenants.findById(this.#db, invitation.tenantId);
    if (tenant === undefined) throw badRequest(INVALID_INVITATION);
    return {
      tenant,
      email: invitation.email,
      role: invitation.role,
      expiresAt: invitation.expiresAt,
    };
  }

  /**
   * Accepts an invitation for the signed-in account, whose email must be the
   * invited one (the token was mailed there). Someone who is already a member
   * keeps their role.
   */
  async accept(
    account: Account,
    token: string,
    by: Actor,
  ): Promise<{ tenant: Tenant; role: MemberRole }> {
    const invitation = await this.#livePending(token);
    if (invitation.email !== account.email)
      throw new AppError(
        "forbidden",
        "this invitation was sent to another email address; sign in with that address to accept it",
      );
    const tenant = await this.#tenants.findById(this.#db, invitation.tenantId);
    if (tenant === undefined) throw badRequest(INVALID_INVITATION);
    const role = await withTenant(this.#db, tenant.id, async (trx) => {
      if (!(await invitations.markAccepted(trx, invitation.id)))
        throw badRequest(INVALID_INVITATION);
      const current = await memberships.roleOf(trx, account.id);
      if (current !== undefined) return current;
      await memberships.add(trx, tenant.id, account.id, invitation.role);
      await auditLog.recordBy(trx, tenant.id, by, "member.join", account.email, {
        role: invitation.role,
      });
      return invitation.role;
    });
    return { tenant, role };
  }

  /** Changes a member's role; chat admin rights of their linked Matrix ID follow. */
  async changeRole(
    tenantId: TenantId,
    accountId: string,
    input: unknown,
    by: MemberActor,
  ): Promise<MemberRole> {
    const { role } = parseOrThrow(RoleChangeSchema, input);
    const label = await this.#labelOf(accountId);
    return withTenant(this.#db, tenantId, async (trx) => {
      const owners = await memberships.countOwnersForUpdate(trx);
      const target = await this.#requireMember(trx, accountId);
      if (target.role === role) return role;
      if ((role === "owner" || target.role === "owner") && by.role !== "owner")
        throw new AppError("forbidden", "only owners can make someone an owner or unmake one");
      if (target.role === "owner" && owners <= 1)
        throw conflict("a tenant needs an owner: make someone else owner first");
      await memberships.setRole(trx, target.accountId, role);
      await auditLog.recordBy(trx, tenantId, by.actor, "member.role", label, {
        from: target.role,
        to: role,
      });
      if (target.matrixUserId !== null)
        await this.#syncChatAdmin(trx, tenantId, target.matrixUserId, role, by.actor);
      return role;
    });
  }

  /** Removes a member (or lets one leave); the last owner cannot go. */
  async remove(tenantId: TenantId, accountId: string, by: MemberActor): Promise<void> {
    const label = await this.#labelOf(accountId);
    await withTenant(this.#db, tenantId, async (trx) => {
      const owners = await memberships.countOwnersForUpdate(trx);
      const target = await this.#requireMember(trx, accountId);
      const self = by.accountId === target.accountId;
      if (!self && !roleAtLeast(by.role, "admin"))
        throw new AppError("forbidden", "only admins can remove other members");
      if (!self && target.role === "owner" && by.role !== "owner")
        throw new AppError("forbidden", "only owners can remove an owner");
      if (target.role === "owner" && owners <= 1)
        throw conflict("a tenant needs an owner: make someone else owner first");
      await memberships.remove(trx, target.accountId);
      await auditLog.recordBy(
        trx,
        tenantId,
        by.actor,
        self ? "member.leave" : "member.remove",
        label,
        { role: target.role },
      );
      if (target.matrixUserId !== null)
        await this.#syncChatAdmin(trx, tenantId, target.matrixUserId, "member", by.actor);
    });
  }

  /**
   * Links the account's own Matrix ID (replacing an earlier one). A Matrix ID
   * is linked by one member of a tenant at most.
   */
  async linkMatrixId(
    tenantId: TenantId,
    accountId: AccountId,
    input: unknown,
    by: Actor,
  ): Promise<string> {
    const { matrixUserId } = parseOrThrow(MatrixLinkSchema, input);
    const conflictMessage = `${matrixUserId} is linked by another member of this tenant`;
    try {
      return await withTenant(this.#db, tenantId, async (trx) => {
        const me = await this.#requireMember(trx, accountId);
        if (me.matrixUserId === matrixUserId) return matrixUserId;
        const holder = await memberships.findByMatrixUserId(trx, matrixUserId);
        if (holder !== undefined) throw conflict(conflictMessage);
        if (me.matrixUserId !== null)
          await this.#syncChatAdmin(trx, tenantId, me.matrixUserId, "member", by);
        await memberships.setMatrixUserId(trx, accountId, matrixUserId);
        await auditLog.recordBy(trx, tenantId, by, "member.link_matrix", matrixUserId);
        await this.#syncChatAdmin(trx, tenantId, matrixUserId, me.role, by);
        return matrixUserId;
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw conflict(conflictMessage);
      throw error;
    }
  }

  /** Unlinks the account's own Matrix ID; false when none was linked. */
  async unlinkMatrixId(tenantId: TenantId, accountId: AccountId, by: Actor): Promise<boolean> {
    return withTenant(this.#db, tenantId, async (trx) => {
      const me = await this.#requireMember(trx, accountId);
      if (me.matrixUserId === null) return false;
      await memberships.setMatrixUserId(trx, accountId, null);
      await auditLog.recordBy(trx, tenantId, by, "member.unlink_matrix", me.matrixUserId);
      await this.#syncChatAdmin(trx, tenantId, me.matrixUserId, "member", by);
      return true;
    });
  }

  async #livePending(token: string): Promise<Invitation> {
    if (token.length === 0 || token.length > MAX_TOKEN_CHARS) throw badRequest(INVALID_INVITATION);
    const invitation = await invitations.findPendingByToken(this.#db, sha256Hex(token));
    if (invitation === undefined) throw badRequest(INVALID_INVITATION);
    if (invitation.expiresAt.getTime() <= Date.now())
      throw badRequest("this invitation has expired; ask the tenant's admins for a new one");
    return invitation;
  }

  /** How the audit log names a member: their email (accounts are service-wide, read outside the transaction). */
  async #labelOf(accountId: string): Promise<string> {
    if (!isUuid(accountId)) return accountId;
    return (await accountRepository.findById(this.#db, accountId as AccountId))?.email ?? accountId;
  }

  async #requireMember(trx: Knex.Transaction, accountId: string): Promise<MembershipRecord> {
    const record = isUuid(accountId)
      ? await memberships.getForUpdate(trx, accountId as AccountId)
      : undefined;
    if (record === undefined) throw notFound("member");
    return record;
  }

  /** Owners and admins administer by chat through their linked ID; members do not. */
  async #syncChatAdmin(
    trx: Knex.Transaction,
    tenantId: TenantId,
    matrixUserId: string,
    role: MemberRole,
    by: Actor,
  ): Promise<void> {
    if (roleAtLeast(role, "admin")) {
      if (await tenantAdmins.isAdmin(trx, matrixUserId)) return;
      await tenantAdmins.add(trx, tenantId, matrixUserId, "member");
      await auditLog.recordBy(trx, tenantId, by, "admin.add", matrixUserId, { source: "member" });
    } else if (await tenantAdmins.removeFrom(trx, matrixUserId, "member")) {
      await auditLog.recordBy(trx, tenantId, by, "admin.remove", matrixUserId);
    }
  }
}

const INVALID_INVITATION =
  "this invitation link is invalid, used or withdrawn; ask the tenant's admins for a new one";

function toMember(record: MembershipRecord, account: Account): Member {
  return {
    accountId: record.accountId,
    email: account.email,
    displayName: account.displayName,
    role: record.role,
    matrixUserId: record.matrixUserId,
    joinedAt: record.createdAt,
  };
}
