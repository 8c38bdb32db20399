import { createHash } from "node:crypto";
import type { Knex } from "knex";
import type { IncomingInvite, IncomingMessage } from "../agents/ports.ts";
import type { RelayHandler, TenantContext } from "../agents/conversation.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { localpartOf, serverNameOf, type MatrixUserId, type RoomId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { BRIDGE_NETWORKS, NETWORKS, networkOfLocalpart, type BridgeNetwork } from "./networks.ts";
import { bridgeStore, type BridgeRoom } from "./repository.ts";
import type { RoomStateEvent } from "./room-state.ts";

/** A bridge's repeated complaint reaches the admins at most once in this window. */
const NOTICE_REPEAT_WINDOW_MS = 60 * 60 * 1000;

/**
 * How the bridges word a set-relay that went through: bridgev2 (Slack,
 * Telegram: mautrix-go bridgev2/commands/relay.go) and mautrix-discord
 * (commands.go: a webhook saved, or one already set). Every other answer
 * of the bot to our command is a failure, kept verbatim for the admins.
 */
const SET_RELAY_SUCCESS = [
  /will now be relayed through/i,
  /as portal relay webhook/i,
  /already has a relay webhook /i,
];

/** State events mautrix bridges put in every portal room (MSC2346 and its predecessor). */
const BRIDGE_STATE_TYPES = new Set(["m.bridge", "uk.half-shot.bridge"]);

/** The network whose bridge bot `userId` is on this homeserver, if any. */
export function bridgeBotNetwork(
  userId: MatrixUserId,
  serverName: string,
): BridgeNetwork | undefined {
  if (serverNameOf(userId) !== serverName) return undefined;
  const localpart = localpartOf(userId);
  return BRIDGE_NETWORKS.find((network) => NETWORKS[network].botLocalpart === localpart);
}

/** The network whose bot or ghost `userId` is on this homeserver, if any. */
export function bridgeUserNetwork(
  userId: MatrixUserId,
  serverName: string,
): BridgeNetwork | undefined {
  return serverNameOf(userId) === serverName ? networkOfLocalpart(localpartOf(userId)) : undefined;
}

export function isSetRelaySuccess(text: string): boolean {
  return SET_RELAY_SUCCESS.some((pattern) => pattern.test(text));
}

export interface RelayAccountDependencies {
  readonly db: Knex;
  readonly log: Logger;
  /** The clock for the notice window (tests). */
  readonly now?: () => number;
}

/**
 * The runtime side of the relay account (config.runtime.relayLocalpart),
 * which the bridges know as the login that relays the agents:
 * - it joins the portals the tenant's bridges invite it to, records them
 *   (bridge_rooms) and makes itself their relay with the network's
 *   set-relay command; the bridge bot's answer sets relay_state;
 * - it declines every other invite;
 * - what a bridge bot tells it in its management room (bridge status,
 *   "not logged in") goes to the tenant's admins in the tenant's
 *   management room, as the service bot, and into bridges.last_error.
 * Bridge bots never reach the agents: Conversations hands their messages
 * here. Every method is safe to call again for the same event.
 */
export class RelayAccount implements RelayHandler {
  readonly #db: Knex;
  readonly #log: Logger;
  readonly #now: () => number;
  /** When each tenant's bridge complaint was last posted, by tenant, network and text. */
  readonly #noticesPostedAt = new Map<string, number>();

  constructor(deps: RelayAccountDependencies) {
    this.#db = deps.db;
    this.#log = deps.log.child({ module: "relay-account" });
    this.#now = deps.now ?? Date.now;
  }

  async invited(context: TenantContext, invite: IncomingInvite): Promise<void> {
    const { tenant, chat, relayUserId } = context;
    const log = this.#log.child({ tenantId: tenant.id, roomId: invite.roomId });
    const network = bridgeUserNetwork(invite.inviter, context.serverName);
    const bridge =
      network === undefined
        ? undefined
        : await withTenant(this.#db, tenant.id, (trx) => bridgeStore.find(trx, tenant.id, network));
    if (network === undefined || bridge?.desired !== "enabled") {
      log.info({ inviter: invite.inviter }, "relay account declines an invite not from a bridge");
      await chat.leave(relayUserId, invite.roomId);
      return;
    }
    await chat.join(relayUserId, invite.roomId);
    const state = (await context.roomState.state(relayUserId, invite.roomId)) ?? [];
    if (!state.some((event) => BRIDGE_STATE_TYPES.has(event.type))) {
      // The bridge bot's direct chat with the relay: its management room, not a portal.
      log.info({ network }, "relay account joined its bridge management room");
      return;
    }
    const room = await withTenant(this.#db, tenant.id, async (trx) => {
      await bridgeStore.recordRoom(trx, {
        tenantId: tenant.id,
        roomId: invite.roomId,
        network,
        remoteName: roomName(state),
      });
      return (await bridgeStore.findRoom(trx, tenant.id, invite.roomId)) as BridgeRoom;
    });
    if (room.relayState === "set") return;
    await this.#sendSetRelay(context, room);
    log.info({ network }, "relay account joined a portal and asked to be its relay");
  }

  async left(context: TenantContext, roomId: RoomId): Promise<void> {
    await withTenant(this.#db, context.tenant.id, (trx) =>
      bridgeStore.deleteRoom(trx, context.tenant.id, roomId),
    );
  }

  async bridgeBotMessage(context: TenantContext, message: IncomingMessage): Promise<void> {
    const { tenant } = context;
    const network = bridgeBotNetwork(message.sender, context.serverName);
    if (network === undefined) return;
    const found = await withTenant(this.#db, tenant.id, async (trx) => ({
      bridge: await bridgeStore.find(trx, tenant.id, network),
      room: await bridgeStore.findRoom(trx, tenant.id, message.roomId),
    }));
    if (found.bridge === undefined) return;
    if (found.room !== undefined) {
      if (found.room.network === network) await this.#relayAnswer(context, found.room, message);
      return;
    }
    if (await this.#inManagementRoom(context, message.roomId))
      await this.#surface(context, network, message);
  }

  /** The relay account's set-relay, once per stay in the room (a new join asks again). */
  async #sendSetRelay(context: TenantContext, room: BridgeRoom): Promise<void> {
    await context.chat.send(
      context.relayUserId,
      room.roomId,
      { msgtype: "m.text", body: NETWORKS[room.network].setRelayCommand },
      `${room.roomId}/relay/set-relay/${String(room.joinedAt.getTime())}`,
    );
  }

  /**
   * The bot's answer in a portal: a success sets the relay whatever came
   * before; while the relay is pending, anything else is the failure.
   */
  async #relayAnswer(
    context: TenantContext,
    room: BridgeRoom,
    message: IncomingMessage,
  ): Promise<void> {
    const { tenant } = context;
    const success = isSetRelaySuccess(message.body);
    if (!success && room.relayState !== "pending") return;
    await withTenant(this.#db, tenant.id, (trx) =>
      success
        ? bridgeStore.setRoomRelay(trx, tenant.id, room.roomId, "set")
        : bridgeStore.setRoomRelay(trx, tenant.id, room.roomId, "failed", message.body),
    );
    this.#log[success ? "info" : "warn"](
      { tenantId: tenant.id, roomId: room.roomId, network: room.network },
      success ? "relay set in a portal" : "the bridge refused to set the relay in a portal",
    );
  }

  /** Whether the relay account is in the room: then a non-portal room with the bot is its management room. */
  async #inManagementRoom(context: TenantContext, roomId: RoomId): Promise<boolean> {
    const state = await context.roomState.state(context.relayUserId, roomId);
    return (
      state?.some(
        (event) =>
          event.type === "m.room.member" &&
          event.state_key === context.relayUserId &&
          event.content.membership === "join",
      ) === true
    );
  }

  /** Records the complaint and tells the admins, at most once per text in the window. */
  async #surface(
    context: TenantContext,
    network: BridgeNetwork,
    message: IncomingMessage,
  ): Promise<void> {
    const { tenant } = context;
    const text = message.body.trim();
    const key = `${tenant.id}/${network}/${text}`;
    const now = this.#now();
    const posted = this.#noticesPostedAt.get(key);
    if (posted !== undefined && now - posted < NOTICE_REPEAT_WINDOW_MS) return;
    const managementRoomId = await withTenant(this.#db, tenant.id, async (trx) => {
      await bridgeStore.update(trx, tenant.id, network, { lastError: text });
      const row = (await trx("provisioning").first("management_room_id")) as
        { management_room_id: string | null } | undefined;
      return (row?.management_room_id ?? null) as RoomId | null;
    });
    const log = this.#log.child({ tenantId: tenant.id, network });
    if (managementRoomId === null) {
      log.warn("a bridge reported a problem, and the tenant has no management room to tell");
    } else {
      const body = `${NETWORKS[network].displayName} bridge: ${text}`;
      await context.chat.send(
        context.botUserId,
        managementRoomId,
        { msgtype: "m.notice", body },
        `bridge-notice/${network}/${createHash("sha256").update(text).digest("hex")}/${String(Math.floor(now / NOTICE_REPEAT_WINDOW_MS))}`,
      );
      log.info("a bridge's notice was passed on to the tenant's admins");
    }
    this.#forgetOldNotices(now);
    this.#noticesPostedAt.set(key, now);
  }

  #forgetOldNotices(now: number): void {
    for (const [key, postedAt] of this.#noticesPostedAt)
      if (now - postedAt >= NOTICE_REPEAT_WINDOW_MS) this.#noticesPostedAt.delete(key);
  }
}

function roomName(state: readonly RoomStateEvent[]): string | null {
  const name = state.find((event) => event.type === "m.room.name" && event.state_key === "")
    ?.content.name;
  return typeof name === "string" && name.trim() !== "" ? name.trim() : null;
}
