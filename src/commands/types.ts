import type { z } from "zod";
import type { ChatGateway } from "../agents/ports.ts";
import type { Actor } from "../audit/audit-log.ts";
import type { EventId, MatrixUserId, RoomId } from "../shared/ids.ts";
import type { Tenant } from "../tenants/types.ts";

/**
 * Chat administration: commands people send to the service bot. One
 * definition per command drives parsing, validation, permission checks and
 * help, so the help text can never disagree with what is accepted.
 */

/** Who may run a command. `anyone` commands check inside that non-admins act only on themselves. */
export type Permission = "admin" | "anyone";

export interface CommandDefinition<Args extends Record<string, unknown> = Record<string, unknown>> {
  /** The words that name the command, e.g. ["agent", "create"]. */
  readonly words: readonly string[];
  readonly summary: string;
  /** Longer explanation shown by `help <command>`. */
  readonly description?: string;
  /**
   * Positional arguments in order. The last one may be `rest`, taking the
   * remainder of the line verbatim (instructions, a key, free text).
   */
  readonly positional: readonly { readonly name: keyof Args & string; readonly rest?: boolean }[];
  /**
   * Every argument (positional and key=value options), validated together.
   * Field descriptions (`.describe()`) appear in help.
   */
  readonly schema: z.ZodType<Args>;
  readonly permission: Permission;
  readonly examples: readonly string[];
  /** Marks messages that carry secrets: the bot redacts them before anything else. */
  readonly secret?: boolean;
  run(context: CommandContext, args: Args): Promise<CommandReply>;
}

/** A command whose argument type is erased, for registries. */
export type AnyCommand = CommandDefinition;

/** Where a command came from and who sent it. */
export interface CommandInvocation {
  readonly tenant: Tenant;
  readonly sender: MatrixUserId;
  readonly roomId: RoomId;
  readonly eventId: EventId;
  readonly threadRootId: EventId | null;
  readonly isAdmin: boolean;
  readonly serverName: string;
  readonly botUserId: MatrixUserId;
  /** The tenant's homeserver, for commands that act in Matrix (invite, leave). */
  readonly chat: ChatGateway;
  /** The sender as recorded in the audit log. */
  readonly by: Actor;
}

export interface CommandContext extends CommandInvocation {
  /** Shows progress for long-running commands (typing, then an edit with the result). */
  progress(text: string): Promise<void>;
}

export interface CommandReply {
  /** Markdown, short. */
  readonly text: string;
  /** Shown as a notice (errors, refusals) rather than a normal message. */
  readonly notice?: boolean;
  /** A file to upload into the room with the reply (e.g. a data export). */
  readonly file?: { readonly name: string; readonly mimetype: string; readonly content: Buffer };
}

/** What parsing a message gives. */
export type ParseResult =
  | {
      readonly kind: "command";
      readonly command: AnyCommand;
      readonly args: Record<string, unknown>;
    }
  /** Not a known command. `input` is the leading words as typed (at most 80 characters), for echoing back; `suggestion` is the closest command's words, if any is close. */
  | { readonly kind: "unknown"; readonly input: string; readonly suggestion: string | null }
  /** A known command with bad arguments: what is wrong, and the usage line. */
  | {
      readonly kind: "invalid";
      readonly command: AnyCommand;
      readonly problems: readonly string[];
      readonly usage: string;
    }
  | { readonly kind: "empty" };
