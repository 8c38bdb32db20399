import type { Knex } from "knex";
import { withTenant } from "../db/tenant-transaction.ts";
import type { TenantId } from "../shared/ids.ts";

/** Who is acting, and through which surface; services record it with every change. */
export interface Actor {
  /** A Matrix ID (chat), a member id (portal/API), or "operator" (CLI). */
  readonly id: string;
  readonly via: AuditEntry["via"];
  readonly roomId?: string | null;
}

/** One administrative action: who did what to what, from where. */
export interface AuditEntry {
  readonly actor: string;
  /** Dotted verb, e.g. "agent.create", "key.set", "memory.forget". */
  readonly action: string;
  readonly target?: string | null;
  readonly roomId?: string | null;
  /** "chat", "portal", "api" or "cli". */
  readonly via: "chat" | "portal" | "api" | "cli";
  /** Extra facts about the action; never secrets. */
  readonly details?: Readonly<Record<string, unknown>>;
}

export interface AuditRecord extends AuditEntry {
  readonly id: number;
  readonly createdAt: Date;
}

interface AuditRow {
  id: number;
  actor: string;
  action: string;
  target: string | null;
  room_id: string | null;
  via: AuditEntry["via"];
  details: Record<string, unknown> | string;
  created_at: Date;
}

/**
 * The audit log, written in the same transaction as the action it records
 * (an action that rolls back leaves no entry, and no entry is lost).
 */
export const auditLog = {
  /** Records an action by an actor (the common case). */
  async recordBy(
    trx: Knex.Transaction,
    tenantId: TenantId,
    by: Actor,
    action: string,
    target: string | null,
    details: Readonly<Record<string, unknown>> = {},
  ): Promise<void> {
    await auditLog.record(trx, tenantId, {
      actor: by.id,
      via: by.via,
      roomId: by.roomId ?? null,
      action,
      target,
      details,
    });
  },

  async record(trx: Knex.Transaction, tenantId: TenantId, entry: AuditEntry): Promise<void> {
    await trx("audit_log").insert({
      tenant_id: tenantId,
      actor: entry.actor,
      action: entry.action,
      target: entry.target ?? null,
      room_id: entry.roomId ?? null,
      via: entry.via,
      details: JSON.stringify(entry.details ?? {}),
    });
  },

  async recent(trx: Knex.Transaction, limit: number): Promise<AuditRecord[]> {
    const rows = (await trx("audit_log").orderBy("id", "desc").limit(limit)) as AuditRow[];
    return rows.map(toRecord);
  },

  /**
   * Newest first, entries older than `beforeId` (keyset pagination: stable
   * while new entries arrive). Fetches `limit` rows; callers ask for one more
   * than they show to learn whether there is a next page.
   */
  async page(
    trx: Knex.Transaction,
    options: { readonly limit: number; readonly beforeId?: number | undefined },
  ): Promise<AuditRecord[]> {
    const query = trx("audit_log").orderBy("id", "desc").limit(options.limit);
    if (options.beforeId !== undefined) void query.where("id", "<", options.beforeId);
    return ((await query) as AuditRow[]).map(toRecord);
  },
};

function toRecord(row: AuditRow): AuditRecord {
  return {
    id: Number(row.id),
    actor: row.actor,
    action: row.action,
    target: row.target,
    roomId: row.room_id,
    via: row.via,
    details:
      typeof row.details === "string"
        ? (JSON.parse(row.details) as Record<string, unknown>)
        : row.details,
    createdAt: new Date(row.created_at),
  };
}

/** A page of a tenant's audit log, newest first, older than `beforeId`; in its own tenant transaction. */
export async function readAuditPage(
  db: Knex,
  tenantId: TenantId,
  options: { readonly limit: number; readonly beforeId?: number | undefined },
): Promise<AuditRecord[]> {
  return withTenant(db, tenantId, (trx) => auditLog.page(trx, options));
}
