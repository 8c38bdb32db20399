import type { Knex } from "knex";
import { enableTenantIsolation } from "../row-level-security.ts";

/**
 * Tenants, their homeservers, agents, model keys, the appservice inbox and
 * the turn ledger. Every table is under row-level security by tenant.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw("create extension if not exists pg_trgm");

  await knex.schema.createTable("tenants", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.text("slug").notNullable().unique();
    t.text("name").notNullable();
    t.text("status").notNullable().defaultTo("active");
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.check("status in ('active', 'suspended')");
  });

  await knex.schema.createTable("homeservers", (t) => {
    t.uuid("tenant_id").primary().references("tenants.id").onDelete("cascade");
    t.text("server_name").notNullable().unique();
    /** Client-server API base URL the runtime uses to reach this homeserver. */
    t.text("client_url").notNullable();
    /** The registration's `id`. */
    t.text("registration_id").notNullable();
    t.text("as_token_encrypted").notNullable();
    t.text("hs_token_encrypted").notNullable();
    /** SHA-256 of hs_token, compared in constant time on every transaction. */
    t.text("hs_token_sha256").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable("agents", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("name").notNullable();
    t.text("display_name").notNullable();
    t.text("avatar_url");
    t.text("instructions").notNullable().defaultTo("");
    t.text("provider").notNullable();
    t.text("model").notNullable();
    t.text("base_url");
    t.double("temperature").notNullable().defaultTo(0.7);
    t.integer("max_tokens").notNullable().defaultTo(1024);
    t.text("key_source").notNullable().defaultTo("managed");
    t.text("trigger_policy").notNullable().defaultTo("mentions");
    t.text("memory_scope").notNullable().defaultTo("shared");
    t.text("status").notNullable().defaultTo("active");
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(["tenant_id", "name"]);
    t.check("provider in ('openai', 'anthropic')");
    t.check("key_source in ('managed', 'own')");
    t.check("trigger_policy in ('mentions', 'all')");
    t.check("memory_scope in ('private', 'shared')");
    t.check("status in ('active', 'paused')");
  });

  await knex.schema.createTable("provider_keys", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("provider").notNullable();
    t.text("key_encrypted").notNullable();
    /** Last four characters, to recognise a key without revealing it. */
    t.text("key_hint").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "provider"]);
  });

  await knex.schema.createTable("rooms", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("room_id").notNullable();
    t.boolean("is_direct").notNullable().defaultTo(false);
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "room_id"]);
  });

  await knex.schema.createTable("agent_rooms", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.uuid("agent_id").notNullable().references("agents.id").onDelete("cascade");
    t.text("room_id").notNullable();
    t.text("membership").notNullable();
    t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "agent_id", "room_id"]);
    t.check("membership in ('invite', 'join', 'leave')");
  });

  /** Users our appservice has registered on a homeserver (matrix-bot-sdk storage). */
  await knex.schema.createTable("appservice_users", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("user_id").notNullable();
    t.primary(["tenant_id", "user_id"]);
  });

  await knex.schema.createTable("appservice_transactions", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("txn_id").notNullable();
    t.timestamp("received_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "txn_id"]);
  });

  /**
   * The durable inbox: every event is stored before the transaction is
   * acknowledged and stays pending until handled, so a crash loses nothing
   * and a retry answers nothing twice.
   */
  await knex.schema.createTable("inbound_events", (t) => {
    t.bigIncrements("seq");
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("event_id").notNullable();
    t.text("room_id").notNullable();
    t.jsonb("event").notNullable();
    t.text("status").notNullable().defaultTo("pending");
    t.integer("attempts").notNullable().defaultTo(0);
    t.text("error");
    t.timestamp("received_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("handled_at", { useTz: true });
    t.unique(["tenant_id", "event_id"]);
    t.check("status in ('pending', 'done', 'failed')");
  });
  await knex.raw(
    "create index inbound_events_pending on inbound_events (tenant_id, seq) where status = 'pending'",
  );

  /** One row per (triggering event, agent): the exactly-once ledger of answers. */
  await knex.schema.createTable("turns", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("event_id").notNullable();
    t.uuid("agent_id").notNullable().references("agents.id").onDelete("cascade");
    t.text("room_id").notNullable();
    t.text("status").notNullable();
    t.text("reply_event_id");
    t.text("error");
    t.text("provider");
    t.text("model");
    t.integer("input_tokens").notNullable().defaultTo(0);
    t.integer("output_tokens").notNullable().defaultTo(0);
    t.timestamp("started_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("finished_at", { useTz: true });
    t.primary(["tenant_id", "event_id", "agent_id"]);
    t.check("status in ('started', 'answered', 'failed')");
  });

  await knex.schema.createTable("usage_daily", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.date("day").notNullable();
    t.integer("messages").notNullable().defaultTo(0);
    t.bigInteger("input_tokens").notNullable().defaultTo(0);
    t.bigInteger("output_tokens").notNullable().defaultTo(0);
    t.primary(["tenant_id", "day"]);
  });

  await enableTenantIsolation(knex, "tenants", "id");
  for (const table of [
    "homeservers",
    "agents",
    "provider_keys",
    "rooms",
    "agent_rooms",
    "appservice_users",
    "appservice_transactions",
    "inbound_events",
    "turns",
    "usage_daily",
  ]) {
    await enableTenantIsolation(knex, table);
  }
}
