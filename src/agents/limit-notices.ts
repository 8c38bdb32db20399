import type { Knex } from "knex";
import { describeError } from "../shared/errors.ts";
import type { EventId, MatrixUserId, RoomId, TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type { MessageAllowance } from "../tenants/entitlements.ts";
import type { HoldReason } from "../tenants/holds.ts";
import type { ChatGateway } from "./ports.ts";

/** Why agents stopped answering: the daily message limit, or a suspended tenant. */
export type LimitNoticeKind = "messages" | "suspended";

/**
 * Agents that stop answering say why once per room, UTC day and kind, not on
 * every message (limit_notices, migration 011).
 */
export const limitNotices = {
  /**
   * Claims today's notice of `kind` for the room. Returns the UTC day
   * (YYYY-MM-DD) when this call is the first for that room, day and kind;
   * null when the notice was claimed already. Claimed in the caller's
   * transaction and posted after commit: at most one notice, even if posting
   * then fails (the failure is logged).
   */
  async claim(
    trx: Knex.Transaction,
    tenantId: TenantId,
    roomId: RoomId,
    kind: LimitNoticeKind,
  ): Promise<string | null> {
    const result = (await trx.raw(
      `insert into limit_notices (tenant_id, room_id, day, kind)
       values (?, ?, (now() at time zone 'utc')::date, ?)
       on conflict do nothing
       returning to_char(day, 'YYYY-MM-DD') as day`,
      [tenantId, roomId, kind],
    )) as { rows: { day: string }[] };
    return result.rows[0]?.day ?? null;
  },
};

/** The notice when today's messages are used up. */
export function messageLimitNotice(allowance: MessageAllowance): string {
  return `This tenant has used its ${String(allowance.limit ?? allowance.used)} messages for today on the ${allowance.plan.plan.name} plan; agents answer again tomorrow (UTC) or after an upgrade.`;
}

/** Why the tenant is suspended and who can do something about it, per hold. */
const HOLD_EXPLANATION: Record<HoldReason, string> = {
  billing:
    "its subscription is unpaid or paused; an owner can update the payment method on the portal's billing page",
  deletion: "it is scheduled for deletion; an owner can restore it in the portal's settings",
  operator: "the service's operator suspended it; the tenant's owners can ask the operator why",
};

/** The notice when the tenant is suspended, naming each hold and whom to contact. */
export function suspensionNotice(reasons: readonly HoldReason[], portalUrl: string | null): string {
  const why = reasons.map((reason) => HOLD_EXPLANATION[reason]);
  const portal = portalUrl === null ? "" : ` (${portalUrl})`;
  return why.length === 0
    ? `This tenant is suspended, so its agents do not answer; contact the tenant's owners${portal}.`
    : `This tenant is suspended, so its agents do not answer: ${why.join("; ")}${portal}.`;
}

/**
 * Posts a claimed notice as `sender` (an agent in the room). Never throws:
 * the notice is a courtesy and its claim is already committed, so a failure
 * is logged and the event is handled.
 */
export async function postLimitNotice(
  chat: ChatGateway,
  post: {
    readonly sender: MatrixUserId;
    readonly roomId: RoomId;
    readonly threadRootId: EventId | null;
    readonly kind: LimitNoticeKind;
    readonly day: string;
    readonly body: string;
  },
  log: Logger,
): Promise<void> {
  try {
    await chat.send(
      post.sender,
      post.roomId,
      { msgtype: "m.notice", body: post.body, threadRootId: post.threadRootId },
      `limit-notice/${post.kind}/${post.day}/${post.roomId}`,
    );
  } catch (error) {
    log.warn(
      { roomId: post.roomId, kind: post.kind, err: describeError(error) },
      "posting the limit notice failed",
    );
  }
}
