import type { Knex } from "knex";
import { bridgeBotNetwork } from "../bridges/relay-account.ts";
import type { RoomStateReader } from "../bridges/room-state.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { recordMessage } from "../memory/history.ts";
import { platformOfUserId, resolvePerson } from "../memory/people.ts";
import type { MatrixUserId, RoomId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type { Tenant } from "../tenants/types.ts";
import { tenantHolds } from "../tenants/holds.ts";
import { agentNameOf, agentUserId } from "./identity.ts";
import { limitNotices, postLimitNotice, suspensionNotice } from "./limit-notices.ts";
import type { ChatGateway, IncomingInvite, IncomingMessage, MembershipChange } from "./ports.ts";
import { agentRepository } from "./repository.ts";
import { roomPolicies } from "./room-policies.ts";
import type { RoomSizes } from "./room-sizes.ts";
import { chooseResponders } from "./routing.ts";
import { runTurn, type TurnDependencies } from "./turn.ts";
import type { AgentIdentity } from "./types.ts";

/** Where a tenant's events come from and go to. */
export interface TenantContext {
  readonly tenant: Tenant;
  readonly serverName: string;
  readonly botUserId: MatrixUserId;
  /** The account the tenant's bridges relay the agents through (src/bridges/relay-account.ts). */
  readonly relayUserId: MatrixUserId;
  readonly chat: ChatGateway;
  readonly roomState: RoomStateReader;
}

/** The service bot, as conversations need it (implemented in src/commands). */
export interface BotHandler {
  /** The bot joined a room (after accepting an invite). */
  joined(context: TenantContext, roomId: RoomId, isDirect: boolean): Promise<void>;
  left(context: TenantContext, roomId: RoomId): Promise<void>;
  /** Runs the message as a command if it is one for the bot; false when agents may answer it. */
  handle(context: TenantContext, message: IncomingMessage): Promise<boolean>;
}

/** The bridges' relay account, as conversations need it (implemented in src/bridges/relay-account.ts). */
export interface RelayHandler {
  /** The relay account was invited: joins the tenant's bridges' rooms, declines the rest. */
  invited(context: TenantContext, invite: IncomingInvite): Promise<void>;
  /** The relay account left or was removed from a room. */
  left(context: TenantContext, roomId: RoomId): Promise<void>;
  /** A bridge bot's message (set-relay answers, bridge notices); never one for the agents. */
  bridgeBotMessage(context: TenantContext, message: IncomingMessage): Promise<void>;
}

/**
 * Handles a tenant's room events for its agents: invitations, membership,
 * and messages (recorded in history, routed, answered). Called in room order
 * by the runtime; every method is safe to call again for the same event.
 */
export class Conversations {
  readonly #deps: TurnDependencies;
  readonly #agentPrefix: string;
  readonly #log: Logger;
  readonly #roomSizes: RoomSizes;
  readonly #bot: BotHandler | undefined;
  readonly #relay: RelayHandler | undefined;

  constructor(
    deps: TurnDependencies,
    agentPrefix: string,
    roomSizes: RoomSizes,
    bot?: BotHandler,
    relay?: RelayHandler,
  ) {
    this.#deps = deps;
    this.#roomSizes = roomSizes;
    this.#bot = bot;
    this.#relay = relay;
    this.#agentPrefix = agentPrefix;
    this.#log = deps.log.child({ module: "conversations" });
  }

  get #db(): Knex {
    return this.#deps.db;
  }

  /** An agent (or the service bot) invited to a room joins if the tenant allows it. */
  async handleInvite(context: TenantContext, invite: IncomingInvite): Promise<void> {
    const { tenant, chat } = context;
    if (invite.invitee === context.botUserId) {
      await chat.join(invite.invitee, invite.roomId);
      await this.#bot?.joined(context, invite.roomId, invite.isDirect);
      return;
    }
    if (invite.invitee === context.relayUserId) {
      if (this.#relay === undefined) await chat.leave(invite.invitee, invite.roomId);
      else await this.#relay.invited(context, invite);
      return;
    }
    const name = agentNameOf(this.#agentPrefix, invite.invitee, context.serverName);
    if (name === null) return;
    const agent = await withTenant(this.#db, tenant.id, (trx) =>
      agentRepository.findByName(trx, name),
    );
    if (agent === undefined || agent.status !== "active" || tenant.status !== "active") {
      this.#log.info(
        { tenantId: tenant.id, roomId: invite.roomId, invitee: invite.invitee },
        "declining invite: no such active agent",
      );
      await chat.leave(invite.invitee, invite.roomId);
      return;
    }
    await chat.ensureProfile(invite.invitee, agent.displayName, agent.avatarUrl);
    await chat.join(invite.invitee, invite.roomId);
    await withTenant(this.#db, tenant.id, async (trx) => {
      const upsert = trx("rooms")
        .insert({ tenant_id: tenant.id, room_id: invite.roomId, is_direct: invite.isDirect })
        .onConflict(["tenant_id", "room_id"]);
      await (invite.isDirect ? upsert.merge({ is_direct: true }) : upsert.ignore());
      await agentRepository.setMembership(trx, tenant.id, agent.id, invite.roomId, "join");
    });
  }

  async handleMembership(context: TenantContext, change: MembershipChange): Promise<void> {
    this.#roomSizes.forget(context.tenant.id, change.roomId);
    if (
      change.userId === context.botUserId &&
      (change.membership === "leave" || change.membership === "ban")
    ) {
      await this.#bot?.left(context, change.roomId);
      return;
    }
    if (
      change.userId === context.relayUserId &&
      (change.membership === "leave" || change.membership === "ban")
    ) {
      await this.#relay?.left(context, change.roomId);
      return;
    }
    const name = agentNameOf(this.#agentPrefix, change.userId, context.serverName);
    if (
      name === null ||
      (change.membership !== "leave" && change.membership !== "ban" && change.membership !== "join")
    )
      return;
    const membership = change.membership === "join" ? "join" : "leave";
    await withTenant(this.#db, context.tenant.id, async (trx) => {
      const agent = await agentRepository.findByName(trx, name);
      if (agent !== undefined)
        await agentRepository.setMembership(
          trx,
          context.tenant.id,
          agent.id,
          change.roomId,
          membership,
        );
    });
  }

  async handleMessage(context: TenantContext, message: IncomingMessage): Promise<void> {
    const { tenant } = context;
    if (this.#isOurs(context, message.sender)) return;
    // Bridge bots speak for the bridge (command answers, status), never for a
    // person: no agent answers them and nothing of theirs enters memory.
    if (bridgeBotNetwork(message.sender, context.serverName) !== undefined) {
      await this.#relay?.bridgeBotMessage(context, message);
      return;
    }
    if (this.#bot !== undefined && (await this.#bot.handle(context, message))) return;
    const platform = platformOfUserId(message.sender);
    const prepared = await withTenant(this.#db, tenant.id, async (trx) => {
      const agents = await agentRepository.joinedTo(trx, message.roomId);
      if (agents.length === 0) return null;
      const personId = await resolvePerson(trx, message.sender, platform);
      await recordMessage(trx, {
        eventId: message.eventId,
        roomId: message.roomId,
        threadRootId: message.threadRootId,
        sender: message.sender,
        personId,
        agentId: null,
        platform,
        body: message.body,
        sentAt: message.sentAt,
      });
      const room = (await trx("rooms").where({ room_id: message.roomId }).first()) as
        { is_direct: boolean } | undefined;
      const repliedTo =
        message.replyToEventId === null
          ? undefined
          : ((await trx("messages")
              .where({ event_id: message.replyToEventId })
              .select("sender")
              .first()) as { sender: string } | undefined);
      const policies = await roomPolicies.forRoom(trx, message.roomId);
      return {
        agents,
        personId,
        policies,
        flaggedDirect: room?.is_direct === true,
        repliedToSender: (repliedTo?.sender as MatrixUserId | undefined) ?? null,
      };
    });
    if (prepared === null) return;

    const identities: AgentIdentity[] = prepared.agents.map((agent) => ({
      agent,
      userId: agentUserId(this.#agentPrefix, agent.name, context.serverName),
    }));
    const isDirect =
      prepared.flaggedDirect ||
      (await this.#roomSizes.isDirect(
        context.chat,
        (identities[0] as AgentIdentity).userId,
        tenant.id,
        message.roomId,
      ));
    const responders = chooseResponders({
      message,
      agents: identities,
      isDirect,
      repliedToSender: prepared.repliedToSender,
      roomPolicies: prepared.policies,
      serviceAccounts: {
        serverName: context.serverName,
        botUserId: context.botUserId,
        relayUserId: context.relayUserId,
      },
    });
    if (tenant.status !== "active") {
      const [first] = responders;
      if (first !== undefined && tenant.status === "suspended")
        await this.#noticeSuspended(context, first, message);
      return;
    }
    // One after another: several agents in a room take turns rather than talk over each other.
    for (const identity of responders) {
      // Display name and avatar may have changed in the portal since the
      // agent joined; the gateway remembers what it set, so this is usually free.
      await context.chat
        .ensureProfile(identity.userId, identity.agent.displayName, identity.agent.avatarUrl)
        .catch((error: unknown) => {
          this.#log.warn(
            { err: error, userId: identity.userId },
            "updating the agent's profile failed",
          );
        });
      await runTurn(
        this.#deps,
        {
          tenantId: tenant.id,
          chat: context.chat,
          isDirect,
          personId: prepared.personId,
          platform,
        },
        identity,
        message,
      );
    }
  }

  /**
   * A suspended tenant's agents do not answer (nor call a model); the first
   * agent that would have says why, once per room and UTC day.
   */
  async #noticeSuspended(
    context: TenantContext,
    responder: AgentIdentity,
    message: IncomingMessage,
  ): Promise<void> {
    const { tenant } = context;
    const claimed = await withTenant(this.#db, tenant.id, async (trx) => {
      const day = await limitNotices.claim(trx, tenant.id, message.roomId, "suspended");
      if (day === null) return null;
      const holds = await tenantHolds.list(trx, tenant.id);
      return { day, reasons: holds.map((hold) => hold.reason) };
    });
    this.#log.info(
      { tenantId: tenant.id, roomId: message.roomId, notice: claimed !== null },
      "tenant suspended; not answering",
    );
    if (claimed === null) return;
    await postLimitNotice(
      context.chat,
      {
        sender: responder.userId,
        roomId: message.roomId,
        threadRootId: message.threadRootId,
        kind: "suspended",
        day: claimed.day,
        body: suspensionNotice(claimed.reasons, this.#deps.portalUrl ?? null),
      },
      this.#log,
    );
  }

  #isOurs(context: TenantContext, userId: MatrixUserId): boolean {
    return (
      userId === context.botUserId ||
      userId === context.relayUserId ||
      agentNameOf(this.#agentPrefix, userId, context.serverName) !== null
    );
  }
}
