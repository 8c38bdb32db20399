import type { Knex } from "knex";
import type { Config } from "../config/schema.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { conflict, notFound } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import { agentRepository } from "./repository.ts";
import type { Agent } from "./types.ts";
import { AgentChangesSchema, NewAgentSchema, parseOrThrow, type AgentSettings } from "./validation.ts";

/**
 * Creating and changing agents, with one set of rules for every surface
 * (CLI, chat commands, portal, API): input is validated here, not there.
 */
export class AgentService {
  readonly #db: Knex;
  readonly #models: Config["models"];

  constructor(db: Knex, models: Config["models"]) {
    this.#db = db;
    this.#models = models;
  }

  /** Settings a new agent gets unless the input says otherwise. */
  defaults(name: string): AgentSettings {
    const provider = this.#models.defaultProvider ?? (this.#models.anthropic.apiKey !== undefined && this.#models.openai.apiKey === undefined ? "anthropic" : "openai");
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

  async create(tenantId: TenantId, input: unknown): Promise<Agent> {
    const { name, ...given } = parseOrThrow(NewAgentSchema, input);
    const settings = { ...this.defaults(name), ...Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined)) };
    if (given.provider !== undefined && given.model === undefined) settings.model = this.#models[given.provider].defaultModel;
    return withTenant(this.#db, tenantId, async (trx) => {
      if ((await agentRepository.findByName(trx, name)) !== undefined) throw conflict(`an agent named "${name}" already exists`);
      return agentRepository.insert(trx, tenantId, name, settings);
    });
  }

  async update(tenantId: TenantId, name: string, input: unknown): Promise<Agent> {
    const changes = parseOrThrow(AgentChangesSchema, input);
    return withTenant(this.#db, tenantId, async (trx) => {
      const agent = await agentRepository.findByName(trx, name);
      if (agent === undefined) throw notFound(`agent "${name}"`);
      return (await agentRepository.update(trx, agent.id, changes)) as Agent;
    });
  }

  async list(tenantId: TenantId): Promise<Agent[]> {
    return withTenant(this.#db, tenantId, (trx) => agentRepository.list(trx));
  }

  async get(tenantId: TenantId, name: string): Promise<Agent> {
    const agent = await withTenant(this.#db, tenantId, (trx) => agentRepository.findByName(trx, name));
    if (agent === undefined) throw notFound(`agent "${name}"`);
    return agent;
  }
}
