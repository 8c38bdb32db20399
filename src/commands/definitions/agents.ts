import { z } from "zod";
import { agentUserId } from "../../agents/identity.ts";
import type { Agent } from "../../agents/types.ts";
import { AgentNameSchema } from "../../agents/validation.ts";
import { ModelProviderName } from "../../config/schema.ts";
import { badRequest } from "../../shared/errors.ts";
import type { RoomId } from "../../shared/ids.ts";
import { bulletList, code, define, type CommandServices } from "../define.ts";
import type { AnyCommand } from "../types.ts";

const agentName = AgentNameSchema.describe("the agent's name");
const roomRef = z
  .string()
  .regex(/^!.+:.+$/, "must be a room ID like !abc:example.org")
  .optional()
  .describe("a room ID; default: this room");

/** Settable fields, as people type them, and how their text becomes a setting. */
const SETTABLE = {
  "display-name": (value: string) => ({ displayName: value }),
  avatar: (value: string) => ({ avatarUrl: value === "none" ? null : value }),
  instructions: (value: string) => ({ instructions: value }),
  provider: (value: string) => ({ provider: value }),
  model: (value: string) => ({ model: value }),
  "base-url": (value: string) => ({ baseUrl: value === "none" ? null : value }),
  temperature: (value: string) => ({ temperature: Number(value) }),
  "max-tokens": (value: string) => ({ maxTokens: Number(value) }),
  trigger: (value: string) => ({ triggerPolicy: value }),
  memory: (value: string) => ({ memoryScope: value }),
  "key-source": (value: string) => ({ keySource: value }),
  status: (value: string) => ({ status: value }),
} as const;
type SettableField = keyof typeof SETTABLE;

function describeAgent(agent: Agent, userId: string): string {
  return [
    `**${agent.displayName}** ${code(userId)} (${agent.status})`,
    `- model: ${agent.provider} / ${code(agent.model)}${agent.baseUrl === null ? "" : ` at ${agent.baseUrl}`}, key: ${agent.keySource}`,
    `- temperature ${String(agent.temperature)}, max tokens ${String(agent.maxTokens)}`,
    `- answers: ${agent.triggerPolicy}, memory: ${agent.memoryScope}`,
    `- instructions: ${agent.instructions === "" ? "(none)" : agent.instructions.length > 300 ? `${agent.instructions.slice(0, 300)}…` : agent.instructions}`,
  ].join("\n");
}

export function agentCommands(services: CommandServices): AnyCommand[] {
  const userIdOf = (name: string, serverName: string): string =>
    agentUserId(services.agentPrefix, name, serverName);
  return [
    define({
      words: ["agent", "list"],
      summary: "list the tenant's agents",
      positional: [],
      schema: z.strictObject({}),
      permission: "admin",
      examples: ["agent list"],
      async run(context) {
        const agents = await services.agents.list(context.tenant.id);
        const lines = agents.map(
          (agent) =>
            `**${agent.displayName}** ${code(userIdOf(agent.name, context.serverName))}: ${agent.provider}/${agent.model}, ${agent.triggerPolicy}, ${agent.status}`,
        );
        return { text: bulletList(lines, "No agents yet. Create one with `agent create <name>`.") };
      },
    }),
    define({
      words: ["agent", "show"],
      summary: "show an agent's settings",
      positional: [{ name: "name" }],
      schema: z.strictObject({ name: agentName }),
      permission: "admin",
      examples: ["agent show ada"],
      async run(context, { name }) {
        const agent = await services.agents.get(context.tenant.id, name);
        return { text: describeAgent(agent, userIdOf(agent.name, context.serverName)) };
      },
    }),
    define({
      words: ["agent", "create"],
      summary: "create an agent",
      description:
        "Creates an agent with sensible defaults; change anything later with `agent set`.",
      positional: [{ name: "name" }],
      schema: z.strictObject({
        name: agentName,
        displayName: z.string().max(64).optional().describe("the name people see"),
        provider: ModelProviderName.optional().describe("the model provider"),
        model: z.string().max(128).optional().describe("the model"),
        instructions: z.string().max(8_000).optional().describe("persona and instructions"),
        trigger: z.enum(["mentions", "dms", "all"]).optional().describe("when it answers"),
        memory: z
          .enum(["private", "shared"])
          .optional()
          .describe("whether what it learns is shared with the other agents"),
      }),
      permission: "admin",
      examples: [
        "agent create ada",
        'agent create max display-name="Max" model=gpt-4o trigger=all',
      ],
      async run(context, args) {
        const agent = await services.agents.create(
          context.tenant.id,
          {
            name: args.name,
            displayName: args.displayName,
            provider: args.provider,
            model: args.model,
            instructions: args.instructions,
            triggerPolicy: args.trigger,
            memoryScope: args.memory,
          },
          context.by,
        );
        const userId = userIdOf(agent.name, context.serverName);
        return {
          text: `Created **${agent.displayName}** ${code(userId)}. Invite it to a room, or say \`agent invite ${agent.name}\` in a room where I am.`,
        };
      },
    }),
    define({
      words: ["agent", "set"],
      summary: "change one setting of an agent",
      description: `Fields: ${Object.keys(SETTABLE).join(", ")}. The value is the rest of the line ("none" clears avatar and base-url).`,
      positional: [{ name: "name" }, { name: "field" }, { name: "value", rest: true }],
      schema: z.strictObject({
        name: agentName,
        field: z
          .enum(Object.keys(SETTABLE) as [SettableField, ...SettableField[]])
          .describe("the setting to change"),
        value: z.string().min(1).max(8_000).describe("the new value"),
      }),
      permission: "admin",
      examples: [
        "agent set ada model gpt-4o",
        "agent set ada instructions You are a terse release manager.",
        "agent set ada trigger all",
      ],
      async run(context, { name, field, value }) {
        const changes = SETTABLE[field](value.trim());
        if (
          Object.values(changes).some(
            (setting) => typeof setting === "number" && !Number.isFinite(setting),
          )
        )
          throw badRequest(`${field}: must be a number`);
        const agent = await services.agents.update(context.tenant.id, name, changes, context.by);
        return { text: `Updated ${field} of **${agent.displayName}**.` };
      },
    }),
    define({
      words: ["agent", "rename"],
      summary: "change the name people see (the Matrix ID stays)",
      positional: [{ name: "name" }, { name: "displayName", rest: true }],
      schema: z.strictObject({
        name: agentName,
        displayName: z.string().trim().min(1).max(64).describe("the new display name"),
      }),
      permission: "admin",
      examples: ["agent rename ada Ada Lovelace"],
      async run(context, { name, displayName }) {
        const agent = await services.agents.update(
          context.tenant.id,
          name,
          { displayName },
          context.by,
        );
        await context.chat.ensureProfile(
          userIdOf(agent.name, context.serverName) as never,
          agent.displayName,
          agent.avatarUrl,
        );
        return { text: `**${name}** is now called **${agent.displayName}**.` };
      },
    }),
    define({
      words: ["agent", "delete"],
      summary: "delete an agent (its memory of shared facts stays with the tenant)",
      positional: [{ name: "name" }, { name: "confirm" }],
      schema: z.strictObject({
        name: agentName,
        confirm: z.literal("confirm").optional().describe('the word "confirm"'),
      }),
      permission: "admin",
      examples: ["agent delete ada confirm"],
      async run(context, { name, confirm }) {
        const agent = await services.agents.get(context.tenant.id, name);
        if (confirm === undefined) {
          return {
            text: `This deletes **${agent.displayName}**, its private memory and its room memberships. To go ahead, send \`agent delete ${name} confirm\`.`,
            notice: true,
          };
        }
        const rooms = await services.agents.rooms(context.tenant.id, name);
        const userId = userIdOf(name, context.serverName);
        for (const roomId of rooms)
          await context.chat.leave(userId as never, roomId as RoomId).catch(() => undefined);
        await services.agents.remove(context.tenant.id, name, context.by);
        return {
          text: `Deleted **${agent.displayName}**; it left ${String(rooms.length)} room(s).`,
        };
      },
    }),
    define({
      words: ["agent", "invite"],
      summary: "bring an agent into a room (this one by default)",
      positional: [{ name: "name" }, { name: "room" }],
      schema: z.strictObject({ name: agentName, room: roomRef }),
      permission: "admin",
      examples: ["agent invite ada", "agent invite ada !abc:example.org"],
      async run(context, { name, room }) {
        const agent = await services.agents.get(context.tenant.id, name);
        const roomId = (room ?? context.roomId) as RoomId;
        await context.chat.invite(
          context.botUserId,
          roomId,
          userIdOf(agent.name, context.serverName) as never,
        );
        return { text: `Invited **${agent.displayName}**; it joins in a moment.` };
      },
    }),
    define({
      words: ["agent", "remove"],
      summary: "take an agent out of a room (this one by default)",
      positional: [{ name: "name" }, { name: "room" }],
      schema: z.strictObject({ name: agentName, room: roomRef }),
      permission: "admin",
      examples: ["agent remove ada"],
      async run(context, { name, room }) {
        const agent = await services.agents.get(context.tenant.id, name);
        await context.chat.leave(
          userIdOf(agent.name, context.serverName) as never,
          (room ?? context.roomId) as RoomId,
        );
        return { text: `**${agent.displayName}** left the room.` };
      },
    }),
  ];
}
