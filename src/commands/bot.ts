import type { Knex } from "knex";
import type { BotHandler, TenantContext } from "../agents/conversation.ts";
import type { RoomSizes } from "../agents/room-sizes.ts";
import type { IncomingMessage } from "../agents/ports.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { isModelFailure } from "../models/failure.ts";
import { describeError, isAppError } from "../shared/errors.ts";
import type { EventId, RoomId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { tenantAdmins } from "../tenants/admins.ts";
import { escapeRegex } from "../shared/text.ts";
import { usageOf } from "./help.ts";
import { parseCommand } from "./parser.ts";
import type { AnyCommand, CommandContext, CommandReply } from "./types.ts";

/** Ways to address the bot in a room that is not its DM. */
const COMMAND_PREFIXES = ["!switchboard", "!sb"];

export interface BotDependencies {
  readonly db: Knex;
  readonly commands: readonly AnyCommand[];
  readonly render: (markdown: string) => string;
  readonly log: Logger;
  /** Shared with the agents, so a room's size is asked of the homeserver once. */
  readonly roomSizes: RoomSizes;
}

/**
 * The service bot: runs chat commands. In its DM (or a management room with
 * one person) every message is a command; elsewhere only messages addressed
 * to it (`!sb …`, or a mention). Secret-carrying messages are redacted
 * before anything else happens; each command runs once (command_runs).
 */
export class BotCommands implements BotHandler {
  readonly #deps: BotDependencies;
  readonly #log: Logger;
  /** Progress messages posted by running commands, by command event, so the result edits them. */
  readonly #progressEvent = new Map<string, EventId>();

  constructor(deps: BotDependencies) {
    this.#deps = deps;
    this.#log = deps.log.child({ module: "bot" });
  }

  /** The bot joined a room: remember it, and greet in a DM. */
  async joined(context: TenantContext, roomId: RoomId, isDirect: boolean): Promise<void> {
    const { tenant } = context;
    const first = await withTenant(this.#deps.db, tenant.id, async (trx) => {
      const existing: unknown = await trx("bot_rooms").where({ room_id: roomId }).first();
      await trx("bot_rooms")
        .insert({ tenant_id: tenant.id, room_id: roomId, is_direct: isDirect, membership: "join" })
        .onConflict(["tenant_id", "room_id"])
        .merge(["membership"]);
      return existing === undefined;
    });
    if (first && isDirect) {
      const text = "Hello! I manage this workspace's AI agents. Say `help` to see what I can do.";
      await context.chat.send(
        context.botUserId,
        roomId,
        { msgtype: "m.notice", body: text, html: this.#deps.render(text) },
        `${roomId}/bot/welcome`,
      );
    }
  }

  async left(context: TenantContext, roomId: RoomId): Promise<void> {
    await withTenant(this.#deps.db, context.tenant.id, (trx) =>
      trx("bot_rooms").where({ room_id: roomId }).update({ membership: "leave" }),
    );
  }

  /** Handles the message if it is a command for the bot; false when it is not (agents may answer it). */
  async handle(context: TenantContext, message: IncomingMessage): Promise<boolean> {
    const room = (await withTenant(this.#deps.db, context.tenant.id, (trx) =>
      trx("bot_rooms").where({ room_id: message.roomId, membership: "join" }).first(),
    )) as { is_direct: boolean } | undefined;
    if (room === undefined || message.msgtype === "m.notice") return false;
    const addressed = this.#stripAddress(context, message);
    const management =
      room.is_direct ||
      (addressed === null &&
        (await this.#deps.roomSizes.isDirect(
          context.chat,
          context.botUserId,
          context.tenant.id,
          message.roomId,
        )));
    if (addressed === null && !management) return false;
    const text = addressed ?? message.body.trim();

    // One transaction: claim the command in the ledger and learn whether the sender is an admin.
    const { started, isAdmin } = await withTenant(this.#deps.db, context.tenant.id, async (trx) => {
      await trx("command_runs")
        .insert({ tenant_id: context.tenant.id, event_id: message.eventId, status: "started" })
        .onConflict(["tenant_id", "event_id"])
        .ignore();
      const run = (await trx("command_runs")
        .where({ event_id: message.eventId })
        .first("status")) as { status: string };
      return {
        started: run.status === "started",
        isAdmin: await tenantAdmins.isAdmin(trx, message.sender),
      };
    });
    if (!started) return true;

    const parsed = parseCommand(text, this.#deps.commands);
    const carriesSecret =
      /^\s*key\b/i.test(text) ||
      (parsed.kind === "command" || parsed.kind === "invalid"
        ? parsed.command.secret === true
        : false);
    let warning = "";
    if (carriesSecret) warning = await this.#redact(context, message);

    const reply = await this.#run(context, message, parsed, isAdmin);
    await this.#deliver(
      context,
      message,
      warning === "" ? reply : { ...reply, text: `${warning}\n\n${reply.text}` },
    );
    await withTenant(this.#deps.db, context.tenant.id, (trx) =>
      trx("command_runs").where({ event_id: message.eventId }).update({ status: "done" }),
    );
    return true;
  }

  async #run(
    context: TenantContext,
    message: IncomingMessage,
    parsed: ReturnType<typeof parseCommand>,
    isAdmin: boolean,
  ): Promise<CommandReply> {
    switch (parsed.kind) {
      case "empty":
        return { text: "Say `help` to see what I can do." };
      case "unknown":
        return {
          text: `I don't know \`${parsed.input}\`.${parsed.suggestion === null ? "" : ` Did you mean \`${parsed.suggestion}\`?`} Say \`help\` for the list.`,
          notice: true,
        };
      case "invalid":
        return {
          text: `${parsed.problems.map((problem) => `- ${problem}`).join("\n")}\n\nUsage: \`${parsed.usage}\``,
          notice: true,
        };
      case "command":
        break;
    }
    const { command, args } = parsed;
    if (command.permission === "admin" && !isAdmin) {
      return {
        text: `Sorry, only tenant admins can use \`${command.words.join(" ")}\`. You can manage what is remembered about you: \`memory show\`, \`memory export\`, \`memory forget-all me\`.`,
        notice: true,
      };
    }
    const context2 = this.#commandContext(context, message, isAdmin);
    try {
      return await command.run(context2, args);
    } catch (error) {
      if (isModelFailure(error)) return { text: error.message, notice: true };
      if (isAppError(error) && error.code !== "internal") {
        const usage = error.code === "bad_request" ? `\n\nUsage: \`${usageOf(command)}\`` : "";
        return { text: `${error.message}${usage}`, notice: true };
      }
      this.#log.error(
        {
          err: describeError(error),
          command: command.words.join(" "),
          tenantId: context.tenant.id,
        },
        "command failed",
      );
      return {
        text: "Something went wrong on my side; nothing was changed. The details are in the service log.",
        notice: true,
      };
    }
  }

  #commandContext(
    context: TenantContext,
    message: IncomingMessage,
    isAdmin: boolean,
  ): CommandContext {
    return {
      tenant: context.tenant,
      sender: message.sender,
      roomId: message.roomId,
      eventId: message.eventId,
      threadRootId: message.threadRootId,
      isAdmin,
      serverName: context.serverName,
      botUserId: context.botUserId,
      chat: context.chat,
      by: { id: message.sender, via: "chat", roomId: message.roomId },
      progress: async (text) => {
        await context.chat.setTyping(context.botUserId, message.roomId, true);
        const body = `⏳ ${text}`;
        const eventId = await context.chat.send(
          context.botUserId,
          message.roomId,
          {
            msgtype: "m.notice",
            body,
            html: this.#deps.render(body),
            threadRootId: message.threadRootId,
            replyTo: message.eventId,
          },
          `${message.eventId}/bot/progress`,
        );
        this.#progressEvent.set(message.eventId, eventId);
      },
    };
  }

  async #deliver(
    context: TenantContext,
    message: IncomingMessage,
    reply: CommandReply,
  ): Promise<void> {
    const { chat, botUserId } = context;
    const outgoing = {
      msgtype: reply.notice === true ? ("m.notice" as const) : ("m.text" as const),
      body: reply.text,
      html: this.#deps.render(reply.text),
      threadRootId: message.threadRootId,
      replyTo: message.eventId,
    };
    const progress = this.#progressEvent.get(message.eventId);
    this.#progressEvent.delete(message.eventId);
    if (progress === undefined)
      await chat.send(botUserId, message.roomId, outgoing, `${message.eventId}/bot/reply`);
    else {
      await chat.edit(
        botUserId,
        message.roomId,
        progress,
        outgoing,
        `${message.eventId}/bot/final`,
      );
      await chat.setTyping(botUserId, message.roomId, false);
    }
    if (reply.file !== undefined) {
      await chat.sendFile(
        botUserId,
        message.roomId,
        { ...reply.file, threadRootId: message.threadRootId },
        `${message.eventId}/bot/file`,
      );
    }
  }

  /**
   * Removes a message that carries a secret, from the room and from our own
   * inbox copy; returns a warning when the room copy could not be removed.
   */
  async #redact(context: TenantContext, message: IncomingMessage): Promise<string> {
    await withTenant(this.#deps.db, context.tenant.id, (trx) =>
      trx("inbound_events")
        .where({ event_id: message.eventId })
        .update({ event: trx.raw("jsonb_set(event, '{content}', '{}'::jsonb)") }),
    );
    try {
      await context.chat.redact(
        context.botUserId,
        message.roomId,
        message.eventId,
        "contained a secret",
      );
      return "";
    } catch (error) {
      this.#log.warn(
        { err: describeError(error), tenantId: context.tenant.id, roomId: message.roomId },
        "could not redact a message carrying a secret",
      );
      return "⚠️ I could not remove your message (I need permission to delete messages in this room). Delete it yourself and consider rotating the key.";
    }
  }

  /** The command text when the message addresses the bot (prefix or mention); null otherwise. */
  #stripAddress(context: TenantContext, message: IncomingMessage): string | null {
    const body = message.body.trim();
    const lower = body.toLowerCase();
    for (const prefix of COMMAND_PREFIXES) {
      if (lower === prefix || lower.startsWith(`${prefix} `))
        return body.slice(prefix.length).trim();
    }
    const localpart = context.botUserId.slice(1, context.botUserId.indexOf(":"));
    const address = new RegExp(
      `^@?(?:${escapeRegex(context.botUserId)}|${escapeRegex(localpart)})(?![\\p{L}\\p{N}_])\\s*[:,]?\\s*`,
      "iu",
    );
    const mentioned = message.mentionedUserIds?.includes(context.botUserId) === true;
    if (address.test(body)) return body.replace(address, "").trim();
    return mentioned ? body : null;
  }
}
