import type { Knex } from "knex";
import type { AgentId, TenantId } from "../../src/shared/ids.ts";

/**
 * Inserts a bare tenant and agents through the service connection, for
 * integration tests of the layers below the services.
 */
export async function seedTenant(
  knex: Knex,
  slug: string,
  agentNames: readonly string[] = [],
): Promise<{ tenantId: TenantId; agents: AgentId[] }> {
  const [tenant] = (await knex("tenants").insert({ slug, name: slug }).returning("id")) as {
    id: TenantId;
  }[];
  const tenantId = (tenant as { id: TenantId }).id;
  const agents: AgentId[] = [];
  for (const name of agentNames) {
    const [agent] = (await knex("agents")
      .insert({ tenant_id: tenantId, name, display_name: name, provider: "openai", model: "x" })
      .returning("id")) as { id: AgentId }[];
    agents.push((agent as { id: AgentId }).id);
  }
  return { tenantId, agents };
}
