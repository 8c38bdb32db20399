import type { Knex } from "knex";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import type { Config } from "../config/schema.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { conflict, notFound } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Entitlements } from "../tenants/entitlements.ts";
import { agentRepository } from "./repository.ts";
import { roomPolicies } from "./room-policies.ts";
import type { Agent, RoomTriggerPolicy } from "./types.ts";
import {
  AgentChangesSchema,
  NewAgentSchema,
  parseOrThrow,
  type AgentSettings,
} from "./validation.ts";

/**
 * Creating and changing agents, with one set of rules for every surface
 * (CLI, chat commands, portal, API): input is validated here, not there,
 * and every change is written to the audit log in the same transaction.
 */
export class AgentService {
  readonly #db: Knex;
  readonly #models: Config["models"];
  readonly #entitlements: Entitlements;

  constructor(db: Knex, models: Config["models"], entitlements: Entitlements) {
    this.#db = db;
    this.#models = models;
    this.#entitlements = entitlements;
  }

  /** Settings a new agent gets unless the input says otherwise. */
  defaults(name: string): AgentSettings {
    const provider =
      this.#models.defaultProvider ??
      (this.#models.anthropic.apiKey !== undefined && this.#models.openai.apiKey === undefined
        ? "anthropic"
        : "openai");
    return {
      displayName: name.charAt(0).toUpperCase() + name.slice(1),
      avatarUrl: null,
      instructions: "",
      provider,
      model: this.#models[provider].defaultModel,
      baseUrl: null,
      temperature: 0.7,
      maxTokens: 1024,
      keySource: "managed",
      triggerPolicy: "mentions",
      memoryScope: "shared",
      status: "active",
    };
  }

  async create(tenantId: TenantId, input: unknown, by: Actor): Promise<Agent> {
    const { name, ...given } = parseOrThrow(NewAgentSchema, input);
    const settings = {
      ...this.defaults(name),
      ...Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined)),
    } as AgentSettings;
    if (given.provider !== undefined && given.model === undefined)
      settings.model = this.#models[given.provider].defaultModel;
    return withTenant(this.#db, tenantId, async (trx) => {
      if ((await agentRepository.findByName(trx, name)) !== undefined)
        throw conflict(`an agent named "${name}" already exists`);
      // Asked here, in the write's transaction, so every surface refuses alike.
      if (settings.keySource === "managed")
        this.#entitlements.assertManagedKeyAllowed(await this.#entitlements.planIn(trx, tenantId));
      if (settings.status === "active") await this.#entitlements.assertCanAddAgent(trx, tenantId);
      const agent = await agentRepository.insert(trx, tenantId, name, settings);
      await auditLog.recordBy(trx, tenantId, by, "agent.create", name, {
        provider: agent.provider,
        model: agent.model,
      });
      return agent;
    });
  }

  async update(tenantId: TenantId, name: string, input: unknown, by: Actor): Promise<Agent> {
    const changes = parseOrThrow(AgentChangesSchema, input);
    return withTenant(this.#db, tenantId, async (trx) => {
      const agent = await agentRepository.findByName(trx, name);
      if (agent === undefined) throw notFound(`agent "${name}"`);
      if (
        changes.provider !== undefined &&
        changes.model === undefined &&
        changes.provider !== agent.provider
      ) {
        changes.model = this.#models[changes.provider].defaultModel;
      }
      if (changes.keySource === "managed" && agent.keySource !== "managed")
        this.#entitlements.assertManagedKeyAllowed(await this.#entitlements.planIn(trx, tenantId));
      if (changes.status === "active" && agent.status !== "active")
        await this.#entitlements.assertCanActivateAgent(trx, tenantId);
      const updated = (await agentRepository.update(trx, agent.id, changes)) as Agent;
      // Instructions can be long and personal; the log says they changed, not what they say.
      const logged = Object.fromEntries(
        Object.entries(changes).map(([key, value]) => [
          key,
          key === "instructions" ? `(${String(value).length} characters)` : value,
        ]),
      );
      await auditLog.recordBy(trx, tenantId, by, "agent.update", name, logged);
      return updated;
    });
  }

  async remove(tenantId: TenantId, name: string, by: Actor): Promise<Agent> {
    return withTenant(this.#db, tenantId, async (trx) => {
      const agent = await agentRepository.findByName(trx, name);
      if (agent === undefined) throw notFound(`agent "${name}"`);
      await agentRepository.remove(trx, agent.id);
      await auditLog.recordBy(trx, tenantId, by, "agent.delete", name);
      return agent;
    });
  }

  async list(tenantId: TenantId): Promise<Agent[]> {
    return withTenant(this.#db, tenantId, (trx) => agentRepository.list(trx));
  }

  async get(tenantId: TenantId, name: string): Promise<Agent> {
    const agent = await withTenant(this.#db, tenantId, (trx) =>
      agentRepository.findByName(trx, name),
    );
    if (agent === undefined) throw notFound(`agent "${name}"`);
    return agent;
  }

  /** Sets (or with `default`, clears) how an agent answers in one room. */
  async setRoomPolicy(
    tenantId: TenantId,
    roomId: string,
    name: string,
    policy: RoomTriggerPolicy | "default",
    by: Actor,
  ): Promise<Agent> {
    return withTenant(this.#db, tenantId, async (trx) => {
      const agent = await agentRepository.findByName(trx, name);
      if (agent === undefined) throw notFound(`agent "${name}"`);
      if (policy === "default") await roomPolicies.clear(trx, roomId, agent.id);
      else await roomPolicies.set(trx, tenantId, roomId, agent.id, policy);
      await auditLog.recordBy(trx, tenantId, by, "room.policy", name, { roomId, policy });
      return agent;
    });
  }

  /** Each agent's effective policy in a room: the room's override or the agent's own. */
  async roomPolicies(
    tenantId: TenantId,
    roomId: string,
  ): Promise<{ agent: Agent; policy: string; overridden: boolean }[]> {
    return withTenant(this.#db, tenantId, async (trx) => {
      const overrides = await roomPolicies.forRoom(trx, roomId);
      return (await agentRepository.list(trx)).map((agent) => {
        const override = overrides.get(agent.id);
        return {
          agent,
          policy: override ?? agent.triggerPolicy,
          overridden: override !== undefined,
        };
      });
    });
  }

  /** Rooms the agent is joined to, as last seen. */
  async rooms(tenantId: TenantId, name: string): Promise<string[]> {
    return withTenant(this.#db, tenantId, async (trx) => {
      const agent = await agentRepository.findByName(trx, name);
      if (agent === undefined) throw notFound(`agent "${name}"`);
      return (await trx("agent_rooms")
        .where({ agent_id: agent.id, membership: "join" })
        .pluck("room_id")) as string[];
    });
  }
}
