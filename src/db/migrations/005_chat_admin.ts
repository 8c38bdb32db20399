import type { Knex } from "knex";
import { enableTenantIsolation } from "../row-level-security.ts";

/**
 * Chat administration: who the tenant's admins are in Matrix, the audit log
 * of admin actions, per-room agent policies, the bot's rooms, and a ledger
 * so a command is carried out once even if its event is handled twice.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("tenant_admins", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("user_id").notNullable();
    /** bootstrap (the tenant's first account), operator (CLI/config), member (a portal member's linked ID). */
    t.text("source").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "user_id"]);
    t.check("source in ('bootstrap', 'operator', 'member')");
  });

  await knex.schema.createTable("audit_log", (t) => {
    t.bigIncrements("id");
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    /** A Matrix ID for chat actions; the portal adds member ids later. */
    t.text("actor").notNullable();
    t.text("action").notNullable();
    t.text("target");
    t.text("room_id");
    t.text("via").notNullable();
    t.jsonb("details").notNullable().defaultTo("{}");
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw("create index audit_log_recent on audit_log (tenant_id, created_at desc)");

  await knex.schema.createTable("room_agent_policies", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("room_id").notNullable();
    t.uuid("agent_id").notNullable().references("agents.id").onDelete("cascade");
    t.text("trigger_policy").notNullable();
    t.primary(["tenant_id", "room_id", "agent_id"]);
    t.check("trigger_policy in ('mentions', 'all', 'off')");
  });

  await knex.schema.createTable("bot_rooms", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("room_id").notNullable();
    t.boolean("is_direct").notNullable().defaultTo(false);
    t.text("membership").notNullable();
    t.primary(["tenant_id", "room_id"]);
    t.check("membership in ('join', 'leave')");
  });

  await knex.schema.createTable("command_runs", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("event_id").notNullable();
    t.text("status").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "event_id"]);
    t.check("status in ('started', 'done')");
  });

  // Agents may now answer in direct chats only.
  await knex.raw("alter table agents drop constraint agents_trigger_policy_check");
  await knex.raw(
    "alter table agents add constraint agents_trigger_policy_check check (trigger_policy in ('mentions', 'dms', 'all'))",
  );

  for (const table of [
    "tenant_admins",
    "audit_log",
    "room_agent_policies",
    "bot_rooms",
    "command_runs",
  ]) {
    await enableTenantIsolation(knex, table);
  }
}
