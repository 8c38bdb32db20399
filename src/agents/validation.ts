import { z } from "zod";
import { ModelProviderName } from "../config/schema.ts";
import { badRequest } from "../shared/errors.ts";

/**
 * The rules for an agent's settings, shared by every surface that changes
 * agents (CLI, chat commands, portal, API) so they accept and refuse alike.
 */
export const AGENT_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,31}$/;
export const MAX_INSTRUCTIONS_CHARS = 8_000;

export const AgentSettingsSchema = z.strictObject({
  displayName: z.string().trim().min(1).max(64),
  avatarUrl: z
    .string()
    .regex(/^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/, "must be an mxc:// URL")
    .nullable(),
  instructions: z.string().max(MAX_INSTRUCTIONS_CHARS),
  provider: ModelProviderName,
  model: z.string().trim().min(1).max(128),
  baseUrl: z.url({ protocol: /^https?$/ }).nullable(),
  temperature: z.number().min(0).max(2),
  maxTokens: z.number().int().min(16).max(32_000),
  keySource: z.enum(["managed", "own"]),
  triggerPolicy: z.enum(["mentions", "dms", "all"]),
  memoryScope: z.enum(["private", "shared"]),
  status: z.enum(["active", "paused"]),
});

export type AgentSettings = z.infer<typeof AgentSettingsSchema>;

/** An agent's name; chat commands use this schema too, so every surface words the refusal alike. */
export const AgentNameSchema = z
  .string()
  .regex(AGENT_NAME_PATTERN, "must be 1-32 characters: lowercase letters, digits, '.', '_' or '-'");

/** Names a new agent may not take: the portal's pages use them as paths (/agents/new). */
const RESERVED_AGENT_NAMES = new Set(["new"]);

export const NewAgentSchema = AgentSettingsSchema.partial().extend({
  name: AgentNameSchema.refine(
    (name) => !RESERVED_AGENT_NAMES.has(name),
    "is reserved; pick another name",
  ),
});
export type NewAgent = z.infer<typeof NewAgentSchema>;

export const AgentChangesSchema = AgentSettingsSchema.partial();
export type AgentChanges = z.infer<typeof AgentChangesSchema>;

/** Parses input with a schema, turning problems into one bad_request naming each field. */
export function parseOrThrow<T>(schema: z.ZodType<T>, input: unknown): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map(
    (issue) => `${issue.path.join(".") || "input"}: ${issue.message}`,
  );
  throw badRequest(problems.join("; "), { problems });
}
