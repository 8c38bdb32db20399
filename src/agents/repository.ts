import type { Knex } from "knex";
import type { AgentId, TenantId } from "../shared/ids.ts";
import type { Agent } from "./types.ts";
import type { AgentChanges, AgentSettings } from "./validation.ts";

interface AgentRow {
  id: string;
  tenant_id: string;
  name: string;
  display_name: string;
  avatar_url: string | null;
  instructions: string;
  provider: Agent["provider"];
  model: string;
  base_url: string | null;
  temperature: number;
  max_tokens: number;
  key_source: Agent["keySource"];
  trigger_policy: Agent["triggerPolicy"];
  memory_scope: Agent["memoryScope"];
  status: Agent["status"];
}

function toAgent(row: AgentRow): Agent {
  return {
    id: row.id as AgentId,
    tenantId: row.tenant_id as TenantId,
    name: row.name,
    displayName: row.display_name,
    avatarUrl: row.avatar_url,
    instructions: row.instructions,
    provider: row.provider,
    model: row.model,
    baseUrl: row.base_url,
    temperature: Number(row.temperature),
    maxTokens: row.max_tokens,
    keySource: row.key_source,
    triggerPolicy: row.trigger_policy,
    memoryScope: row.memory_scope,
    status: row.status,
  };
}

const COLUMN_OF: Record<keyof AgentSettings, string> = {
  displayName: "display_name",
  avatarUrl: "avatar_url",
  instructions: "instructions",
  provider: "provider",
  model: "model",
  baseUrl: "base_url",
  temperature: "temperature",
  maxTokens: "max_tokens",
  keySource: "key_source",
  triggerPolicy: "trigger_policy",
  memoryScope: "memory_scope",
  status: "status",
};

function toColumns(settings: { [K in keyof AgentSettings]?: AgentSettings[K] | undefined }): Record<
  string,
  unknown
> {
  const columns: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(settings)) {
    if (value !== undefined) columns[COLUMN_OF[key as keyof AgentSettings]] = value;
  }
  return columns;
}

/** Agents of the tenant that `trx` is scoped to (see withTenant). */
export const agentRepository = {
  async insert(
    trx: Knex.Transaction,
    tenantId: TenantId,
    name: string,
    settings: AgentSettings,
  ): Promise<Agent> {
    const [row] = (await trx("agents")
      .insert({ tenant_id: tenantId, name, ...toColumns(settings) })
      .returning("*")) as AgentRow[];
    return toAgent(row as AgentRow);
  },

  async update(
    trx: Knex.Transaction,
    id: AgentId,
    changes: AgentChanges,
  ): Promise<Agent | undefined> {
    const [row] = (await trx("agents")
      .where({ id })
      .update({ ...toColumns(changes), updated_at: trx.fn.now() })
      .returning("*")) as AgentRow[];
    return row === undefined ? undefined : toAgent(row);
  },

  async findByName(trx: Knex.Transaction, name: string): Promise<Agent | undefined> {
    const row = (await trx("agents").where({ name }).first()) as AgentRow | undefined;
    return row === undefined ? undefined : toAgent(row);
  },

  async findById(trx: Knex.Transaction, id: AgentId): Promise<Agent | undefined> {
    const row = (await trx("agents").where({ id }).first()) as AgentRow | undefined;
    return row === undefined ? undefined : toAgent(row);
  },

  async list(trx: Knex.Transaction): Promise<Agent[]> {
    const rows = (await trx("agents").orderBy("name")) as AgentRow[];
    return rows.map(toAgent);
  },

  async remove(trx: Knex.Transaction, id: AgentId): Promise<boolean> {
    return (await trx("agents").where({ id }).delete()) > 0;
  },

  /** Agents whose last known membership in the room is `join`. */
  async joinedTo(trx: Knex.Transaction, roomId: string): Promise<Agent[]> {
    const rows = (await trx("agents")
      .join("agent_rooms", "agent_rooms.agent_id", "agents.id")
      .where({ "agent_rooms.room_id": roomId, "agent_rooms.membership": "join" })
      .select("agents.*")) as AgentRow[];
    return rows.map(toAgent);
  },

  async setMembership(
    trx: Knex.Transaction,
    tenantId: TenantId,
    agentId: AgentId,
    roomId: string,
    membership: "invite" | "join" | "leave",
  ): Promise<void> {
    await trx("agent_rooms")
      .insert({ tenant_id: tenantId, agent_id: agentId, room_id: roomId, membership })
      .onConflict(["tenant_id", "agent_id", "room_id"])
      .merge({ membership, updated_at: trx.fn.now() });
  },
};
