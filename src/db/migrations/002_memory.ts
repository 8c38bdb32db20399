import type { Knex } from "knex";
import { enableTenantIsolation } from "../row-level-security.ts";

/**
 * People (one human, several Matrix IDs), conversation history, and facts
 * with scope, provenance and validity. Facts carry a full-text vector and a
 * trigram index for hybrid retrieval.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("people", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("display_name");
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable("person_identities", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("user_id").notNullable();
    t.uuid("person_id").notNullable().references("people.id").onDelete("cascade");
    t.text("platform").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "user_id"]);
    t.index(["tenant_id", "person_id"]);
    t.check("platform in ('matrix', 'slack', 'discord', 'telegram')");
  });

  await knex.schema.createTable("messages", (t) => {
    t.bigIncrements("id");
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("room_id").notNullable();
    t.text("thread_root_id");
    t.text("event_id").notNullable();
    t.text("sender").notNullable();
    t.uuid("person_id").references("people.id").onDelete("set null");
    t.uuid("agent_id").references("agents.id").onDelete("set null");
    t.text("platform").notNullable();
    t.text("body").notNullable();
    t.timestamp("sent_at", { useTz: true }).notNullable();
    t.unique(["tenant_id", "event_id"]);
  });
  await knex.raw(
    "create index messages_room_recent on messages (tenant_id, room_id, sent_at desc)",
  );

  await knex.schema.createTable("facts", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    /** Set for an agent's private fact; null when shared by the tenant's agents. */
    t.uuid("agent_id").references("agents.id").onDelete("cascade");
    t.text("subject_kind").notNullable();
    t.uuid("subject_person_id").references("people.id").onDelete("cascade");
    t.text("subject_room_id");
    /** Normalised attribute ("favourite colour"); a newer fact with the same key supersedes. */
    t.text("key");
    t.text("content").notNullable();
    t.text("source_kind").notNullable();
    t.text("source_event_id");
    t.text("source_room_id");
    t.timestamp("valid_from", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("valid_to", { useTz: true });
    t.uuid("superseded_by");
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.check("subject_kind in ('person', 'room', 'tenant')");
    t.check("source_kind in ('explicit', 'tool', 'extraction', 'admin')");
    t.check("(subject_kind = 'person') = (subject_person_id is not null)");
  });
  await knex.raw(
    "alter table facts add column content_tsv tsvector generated always as (to_tsvector('english', content)) stored",
  );
  await knex.raw("create index facts_tsv on facts using gin (content_tsv)");
  await knex.raw("create index facts_trgm on facts using gin (content gin_trgm_ops)");
  await knex.raw(
    "create index facts_current_by_person on facts (tenant_id, subject_person_id, created_at desc) where valid_to is null",
  );

  for (const table of ["people", "person_identities", "messages", "facts"]) {
    await enableTenantIsolation(knex, table);
  }
}
