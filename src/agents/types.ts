import type { ModelProviderName } from "../config/schema.ts";
import type { AgentId, MatrixUserId, TenantId } from "../shared/ids.ts";

/**
 * When an agent answers: `dms` only in direct chats; `mentions` in direct
 * chats and when addressed in a group; `all` every message it sees.
 */
export type TriggerPolicy = "mentions" | "dms" | "all";
/** A room's override of an agent's trigger policy; `off` silences the agent in that room. */
export type RoomTriggerPolicy = "mentions" | "all" | "off";
/** Whether what an agent learns is its own or shared with the tenant's other agents. */
export type MemoryScope = "private" | "shared";
/** Whose key pays for the model: the operator's managed key or the tenant's own. */
export type KeySource = "managed" | "own";

export interface Agent {
  readonly id: AgentId;
  readonly tenantId: TenantId;
  /** Lowercase name; the Matrix ID is @<agentPrefix><name>:<server>. */
  readonly name: string;
  readonly displayName: string;
  /** mxc:// URL of the avatar, if any. */
  readonly avatarUrl: string | null;
  readonly instructions: string;
  readonly provider: ModelProviderName;
  readonly model: string;
  /** Overrides the provider's endpoint (OpenAI-compatible servers). */
  readonly baseUrl: string | null;
  readonly temperature: number;
  readonly maxTokens: number;
  readonly keySource: KeySource;
  readonly triggerPolicy: TriggerPolicy;
  readonly memoryScope: MemoryScope;
  readonly status: "active" | "paused";
}

/** An agent together with its Matrix identity on the tenant's homeserver. */
export interface AgentIdentity {
  readonly agent: Agent;
  readonly userId: MatrixUserId;
}
