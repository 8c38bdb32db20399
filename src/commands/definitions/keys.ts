import { z } from "zod";
import { ModelProviderName } from "../../config/schema.ts";
import { bulletList, code, define, type CommandServices } from "../define.ts";
import type { AnyCommand } from "../types.ts";

const PROVIDERS = ModelProviderName.options;

/** Keys pasted with quotes or angle brackets keep them in the rest of the line; drop them. */
function unwrapKey(raw: string): string {
  return raw
    .trim()
    .replace(/^["'“‘<](.*)["'”’>]$/s, "$1")
    .trim();
}

export function keyCommands(services: CommandServices): AnyCommand[] {
  return [
    define({
      words: ["providers"],
      summary: "list model providers, managed keys and the tenant's own keys",
      positional: [],
      schema: z.strictObject({}),
      permission: "admin",
      examples: ["providers"],
      async run(context) {
        const own = new Map(
          (await services.keys.list(context.tenant.id)).map((key) => [key.provider, key.hint]),
        );
        const lines = PROVIDERS.map((provider) => {
          const ownKey = own.get(provider);
          return `**${provider}** (default model ${code(services.defaultModel(provider))}): managed key ${services.hasManagedKey(provider) ? "available" : "not configured"}; own key ${ownKey === undefined ? "not set" : code(ownKey)}`;
        });
        return { text: bulletList(lines, "") };
      },
    }),
    define({
      words: ["key", "set"],
      summary: "store the tenant's own API key for a provider (the message is removed at once)",
      description:
        "The key is encrypted at rest and never shown again. Agents use it when their key-source is `own`.",
      positional: [{ name: "provider" }, { name: "key", rest: true }],
      schema: z.strictObject({
        provider: ModelProviderName.describe("openai or anthropic"),
        key: z.string().min(1).max(600).describe("the API key"),
      }),
      permission: "admin",
      secret: true,
      examples: ["key set openai sk-…"],
      async run(context, { provider, key }) {
        const { hint } = await services.keys.set(
          context.tenant.id,
          provider,
          unwrapKey(key),
          context.by,
        );
        return {
          text: `Stored the ${provider} key ${code(hint)} (encrypted). Test it with \`key test ${provider}\`; agents use it with \`agent set <name> key-source own\`.`,
        };
      },
    }),
    define({
      words: ["key", "remove"],
      summary: "delete the tenant's own key for a provider",
      positional: [{ name: "provider" }],
      schema: z.strictObject({ provider: ModelProviderName.describe("openai or anthropic") }),
      permission: "admin",
      examples: ["key remove openai"],
      async run(context, { provider }) {
        const removed = await services.keys.remove(context.tenant.id, provider, context.by);
        return {
          text: removed ? `Removed the ${provider} key.` : `There was no ${provider} key.`,
          notice: !removed,
        };
      },
    }),
    define({
      words: ["key", "test"],
      summary: "check a key with a tiny real model call",
      positional: [{ name: "provider" }],
      schema: z.strictObject({
        provider: ModelProviderName.describe("openai or anthropic"),
        model: z
          .string()
          .max(128)
          .optional()
          .describe("model to call; default: the provider's default"),
      }),
      permission: "admin",
      examples: ["key test openai", "key test anthropic model=claude-haiku-4-5"],
      async run(context, { provider, model }) {
        const key = await services.keys.reveal(context.tenant.id, provider);
        if (key === undefined)
          return {
            text: `No ${provider} key is stored. Set one with \`key set ${provider} <key>\`.`,
            notice: true,
          };
        await context.progress(`Testing the ${provider} key…`);
        await services.testKey(provider, key, model ?? services.defaultModel(provider));
        return { text: `The ${provider} key works.` };
      },
    }),
  ];
}
