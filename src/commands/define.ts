import type { z } from "zod";
import type { ModelProviderName } from "../config/schema.ts";
import type { AgentService } from "../agents/service.ts";
import type { BridgeService } from "../bridges/service.ts";
import type { MemoryService } from "../memory/service.ts";
import type { ProviderKeys } from "../tenants/provider-keys.ts";
import type { UsageSummary } from "../tenants/usage.ts";
import type { TenantId } from "../shared/ids.ts";
import type { AnyCommand, CommandDefinition } from "./types.ts";

/** What command handlers work with; built once in the composition root. */
export interface CommandServices {
  readonly agents: AgentService;
  readonly keys: ProviderKeys;
  readonly memory: MemoryService;
  readonly usage: (tenantId: TenantId) => Promise<UsageSummary>;
  /** Makes a tiny real model call with the key; resolves when it works, throws ModelFailure when not. */
  readonly testKey: (provider: ModelProviderName, key: string, model: string) => Promise<void>;
  /** Whether the operator configured a managed key for the provider. */
  readonly hasManagedKey: (provider: ModelProviderName) => boolean;
  readonly defaultModel: (provider: ModelProviderName) => string;
  readonly agentPrefix: string;
  readonly bridges: BridgeService;
  /** The portal's base URL, for commands that point to a page. */
  readonly portalUrl: string;
}

/** Types a definition against its schema, then erases the argument type for the registry. */
export function define<Schema extends z.ZodType<Record<string, unknown>>>(
  definition: CommandDefinition<z.infer<Schema>> & { schema: Schema },
): AnyCommand {
  return definition as unknown as AnyCommand;
}

/** "me" or a Matrix ID, resolved to the Matrix ID. */
export function resolveWho(who: string | undefined, sender: string): string {
  return who === undefined || who.toLowerCase() === "me" ? sender : who;
}

/** A short markdown list, or a line saying there is nothing. */
export function bulletList(lines: readonly string[], empty: string): string {
  return lines.length === 0 ? empty : lines.map((line) => `- ${line}`).join("\n");
}

/** Inline code that cannot be broken out of by backticks in user data. */
export function code(text: string): string {
  return `\`${text.replace(/`/g, "ʼ")}\``;
}
