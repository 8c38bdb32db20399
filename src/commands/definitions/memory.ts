import { z } from "zod";
import { isMatrixUserId } from "../../shared/ids.ts";
import { bulletList, code, define, resolveWho, type CommandServices } from "../define.ts";
import type { AnyCommand, CommandContext, CommandReply } from "../types.ts";

const who = z
  .string()
  .refine(
    (value) => value.toLowerCase() === "me" || isMatrixUserId(value),
    "must be `me` or a Matrix ID like @alice:example.org",
  )
  .optional()
  .describe("`me` (default) or a Matrix ID (admins only)");
const userId = z.string().refine(isMatrixUserId, "must be a Matrix ID like @alice:example.org");
const SHOW_LIMIT = 30;

/** Non-admins may act on their own memory only. */
function refuseOthers(context: CommandContext, target: string): CommandReply | null {
  if (context.isAdmin || target === context.sender) return null;
  return {
    text: "You can only see and change what is remembered about **you** (use `me`). A tenant admin can help with others.",
    notice: true,
  };
}

export function memoryCommands(services: CommandServices): AnyCommand[] {
  return [
    define({
      words: ["memory", "show"],
      summary: "show what the agents remember about a person",
      positional: [{ name: "who" }],
      schema: z.strictObject({ who }),
      permission: "anyone",
      examples: ["memory show", "memory show me", "memory show @alice:example.org"],
      async run(context, args) {
        const target = resolveWho(args.who, context.sender);
        const refusal = refuseOthers(context, target);
        if (refusal !== null) return refusal;
        const facts = await services.memory.factsAbout(context.tenant.id, target, SHOW_LIMIT);
        const lines = facts.map(
          (fact) =>
            `${fact.content} — ${fact.agentId === null ? "shared" : "one agent"}, ${fact.source}, id ${code(fact.id)}`,
        );
        const subject = target === context.sender ? "you" : target;
        return {
          text: `What the agents remember about ${subject}:\n${bulletList(lines, "nothing yet.")}${facts.length === SHOW_LIMIT ? `\n(the newest ${String(SHOW_LIMIT)})` : ""}`,
        };
      },
    }),
    define({
      words: ["memory", "forget"],
      summary: "forget one fact (by the id `memory show` prints)",
      positional: [{ name: "fact" }],
      schema: z.strictObject({ fact: z.string().min(1).max(64).describe("the fact's id") }),
      permission: "anyone",
      examples: ["memory forget 1b4e28ba-2fa1-11d2-883f-0016d3cca427"],
      async run(context, { fact }) {
        const forgotten = await services.memory.forgetFact(
          context.tenant.id,
          fact,
          context.by,
          context.isAdmin ? undefined : context.sender,
        );
        return forgotten
          ? { text: "Forgotten." }
          : {
              text: "No current fact with that id is about you (see `memory show`).",
              notice: true,
            };
      },
    }),
    define({
      words: ["memory", "forget-all"],
      summary: "erase every fact about a person (asks for confirmation)",
      positional: [{ name: "who" }, { name: "confirm" }],
      schema: z.strictObject({
        who,
        confirm: z.literal("confirm").optional().describe('the word "confirm"'),
      }),
      permission: "anyone",
      examples: ["memory forget-all me confirm"],
      async run(context, args) {
        const target = resolveWho(args.who, context.sender);
        const refusal = refuseOthers(context, target);
        if (refusal !== null) return refusal;
        const label = target === context.sender ? "me" : target;
        if (args.confirm === undefined)
          return {
            text: `This erases every fact the agents hold about ${label === "me" ? "you" : label}. Send \`memory forget-all ${label} confirm\` to go ahead.`,
            notice: true,
          };
        const count = await services.memory.forgetEverythingAbout(
          context.tenant.id,
          target,
          context.by,
        );
        return {
          text: `Erased ${String(count)} fact(s). The agents no longer remember anything about ${label === "me" ? "you" : label}.`,
        };
      },
    }),
    define({
      words: ["memory", "export"],
      summary: "download everything remembered about a person as a JSON file",
      positional: [{ name: "who" }],
      schema: z.strictObject({ who }),
      permission: "anyone",
      examples: ["memory export", "memory export @alice:example.org"],
      async run(context, args) {
        const target = resolveWho(args.who, context.sender);
        const refusal = refuseOthers(context, target);
        if (refusal !== null) return refusal;
        await context.progress("Preparing the export…");
        const exported = await services.memory.exportFor(context.tenant.id, target, context.by);
        if (exported === null)
          return { text: "Nothing is remembered about that person.", notice: true };
        const name = `memory-${target.replace(/[^a-zA-Z0-9._-]+/g, "_")}.json`;
        return {
          text: `Here is everything remembered about ${target === context.sender ? "you" : target}: ${String(exported.facts.length)} fact(s), ${String(exported.messages.length)} message(s).`,
          file: {
            name,
            mimetype: "application/json",
            content: Buffer.from(JSON.stringify(exported, null, 2)),
          },
        };
      },
    }),
    define({
      words: ["person", "link"],
      summary: "make two Matrix IDs one person (e.g. someone's account and their Telegram ghost)",
      positional: [{ name: "first" }, { name: "second" }],
      schema: z.strictObject({
        first: userId.describe("a Matrix ID"),
        second: userId.describe("another Matrix ID of the same person"),
      }),
      permission: "admin",
      examples: ["person link @alice:example.org @telegram_123:example.org"],
      async run(context, { first, second }) {
        await services.memory.link(context.tenant.id, first, second, context.by);
        return {
          text: `${code(first)} and ${code(second)} are now one person; memory follows both.`,
        };
      },
    }),
    define({
      words: ["person", "unlink"],
      summary: "make a Matrix ID a person of its own again",
      positional: [{ name: "user" }],
      schema: z.strictObject({ user: userId.describe("the Matrix ID to separate") }),
      permission: "admin",
      examples: ["person unlink @telegram_123:example.org"],
      async run(context, { user }) {
        await services.memory.unlink(context.tenant.id, user, context.by);
        return {
          text: `${code(user)} is now a person of its own (facts stay with the original person).`,
        };
      },
    }),
  ];
}
