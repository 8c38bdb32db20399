import { z } from "zod";
import { AGENT_NAME_PATTERN } from "../../agents/validation.ts";
import { bulletList, define, type CommandServices } from "../define.ts";
import { helpFor, helpOverview } from "../help.ts";
import type { AnyCommand } from "../types.ts";

/** Usage, room policy and help: commands about the tenant and this room. */
export function adminCommands(
  services: CommandServices,
  all: () => readonly AnyCommand[],
): AnyCommand[] {
  return [
    define({
      words: ["help"],
      summary: "list commands, or explain one",
      positional: [{ name: "topic", rest: true }],
      schema: z.strictObject({
        topic: z.string().max(200).optional().describe("a command, e.g. `agent create`"),
      }),
      permission: "anyone",
      examples: ["help", "help agent set"],
      run(context, { topic }) {
        if (topic === undefined)
          return Promise.resolve({ text: helpOverview(all(), { isAdmin: context.isAdmin }) });
        const text = helpFor(all(), topic.trim().split(/\s+/));
        return Promise.resolve(
          text === null
            ? {
                text: `There is no command \`${topic.slice(0, 80)}\`. Say \`help\` for the list.`,
                notice: true,
              }
            : { text },
        );
      },
    }),
    define({
      words: ["usage"],
      summary: "messages and tokens today and this month",
      positional: [],
      schema: z.strictObject({}),
      permission: "admin",
      examples: ["usage"],
      async run(context) {
        const { today, month } = await services.usage(context.tenant.id);
        const line = (label: string, totals: typeof today): string =>
          `${label}: ${String(totals.messages)} answered message(s), ${String(totals.inputTokens)} input and ${String(totals.outputTokens)} output tokens`;
        // Plans and their limits arrive with billing; until then there are none to show.
        return {
          text: `${line("Today", today)}\n${line("This month", month)}\nPlan limits: none (billing is off on this installation).`,
        };
      },
    }),
    define({
      words: ["room", "show"],
      summary: "how each agent answers in this room",
      positional: [],
      schema: z.strictObject({}),
      permission: "admin",
      examples: ["room show"],
      async run(context) {
        const policies = await services.agents.roomPolicies(context.tenant.id, context.roomId);
        const lines = policies.map(
          ({ agent, policy, overridden }) =>
            `**${agent.displayName}**: ${policy}${overridden ? " (set for this room)" : " (its default)"}`,
        );
        return { text: bulletList(lines, "No agents yet.") };
      },
    }),
    define({
      words: ["room", "set"],
      summary: "choose when an agent answers in this room",
      description:
        "`mentions`: when addressed; `all`: every message; `off`: never here; `default`: the agent's own setting.",
      positional: [{ name: "agent" }, { name: "policy" }],
      schema: z.strictObject({
        agent: z
          .string()
          .regex(AGENT_NAME_PATTERN, "must be an agent name")
          .describe("the agent's name"),
        policy: z.enum(["mentions", "all", "off", "default"]).describe("when it answers here"),
      }),
      permission: "admin",
      examples: ["room set ada all", "room set max off", "room set ada default"],
      async run(context, { agent, policy }) {
        const updated = await services.agents.setRoomPolicy(
          context.tenant.id,
          context.roomId,
          agent,
          policy,
          context.by,
        );
        return {
          text:
            policy === "default"
              ? `**${updated.displayName}** follows its own setting here again (${updated.triggerPolicy}).`
              : `**${updated.displayName}** now answers here: ${policy}.`,
        };
      },
    }),
  ];
}
