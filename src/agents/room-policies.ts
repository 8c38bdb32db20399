import type { Knex } from "knex";
import type { AgentId, TenantId } from "../shared/ids.ts";
import type { RoomTriggerPolicy } from "./types.ts";

/** Per-room overrides of when agents answer (see routing.ts). */
export const roomPolicies = {
  async forRoom(trx: Knex.Transaction, roomId: string): Promise<Map<AgentId, RoomTriggerPolicy>> {
    const rows = (await trx("room_agent_policies")
      .where({ room_id: roomId })
      .select("agent_id", "trigger_policy")) as {
      agent_id: AgentId;
      trigger_policy: RoomTriggerPolicy;
    }[];
    return new Map(rows.map((row) => [row.agent_id, row.trigger_policy]));
  },

  async set(
    trx: Knex.Transaction,
    tenantId: TenantId,
    roomId: string,
    agentId: AgentId,
    policy: RoomTriggerPolicy,
  ): Promise<void> {
    await trx("room_agent_policies")
      .insert({ tenant_id: tenantId, room_id: roomId, agent_id: agentId, trigger_policy: policy })
      .onConflict(["tenant_id", "room_id", "agent_id"])
      .merge(["trigger_policy"]);
  },

  async clear(trx: Knex.Transaction, roomId: string, agentId: AgentId): Promise<boolean> {
    return (
      (await trx("room_agent_policies").where({ room_id: roomId, agent_id: agentId }).delete()) > 0
    );
  },
};
