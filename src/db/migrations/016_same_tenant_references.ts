import type { Knex } from "knex";

/**
 * References between tenant rows stay within one tenant. The foreign keys
 * of 001-005 name only the referenced id, and key checks bypass row-level
 * security, so a tenant transaction could point its row at another tenant's
 * agent or person; deleting that one would then cascade into the first
 * tenant's data. These keys pair the id with `tenant_id`, with the same
 * action as the key they shadow (so the order in which the two act does
 * not matter). NOT VALID: they hold for every row written from now on
 * without scanning existing ones.
 */
const REFERENCES: readonly {
  table: string;
  column: string;
  parent: "agents" | "people";
  onDelete: string;
}[] = [
  { table: "agent_rooms", column: "agent_id", parent: "agents", onDelete: "cascade" },
  { table: "turns", column: "agent_id", parent: "agents", onDelete: "cascade" },
  { table: "room_agent_policies", column: "agent_id", parent: "agents", onDelete: "cascade" },
  { table: "facts", column: "agent_id", parent: "agents", onDelete: "cascade" },
  { table: "facts", column: "subject_person_id", parent: "people", onDelete: "cascade" },
  { table: "person_identities", column: "person_id", parent: "people", onDelete: "cascade" },
  { table: "messages", column: "agent_id", parent: "agents", onDelete: "set null (agent_id)" },
  { table: "messages", column: "person_id", parent: "people", onDelete: "set null (person_id)" },
];

export async function up(knex: Knex): Promise<void> {
  for (const parent of ["agents", "people"])
    await knex.raw(
      `alter table ${parent} add constraint ${parent}_tenant_id_id_unique unique (tenant_id, id)`,
    );
  for (const { table, column, parent, onDelete } of REFERENCES)
    await knex.raw(
      `alter table ${table} add constraint ${table}_${column}_same_tenant
         foreign key (tenant_id, ${column}) references ${parent} (tenant_id, id)
         on delete ${onDelete} not valid`,
    );
}
