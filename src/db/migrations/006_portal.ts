import type { Knex } from "knex";
import { enableTenantIsolation } from "../row-level-security.ts";

/**
 * The portal: accounts (people who sign in), their sessions and one-time
 * email tokens (service-wide, not tenant data), and per tenant its members,
 * invitations and API tokens (tenant data, under row-level security).
 * Tenants gain a plan, a `provisioning` status, and a scheduled deletion.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw("alter table tenants drop constraint tenants_status_check");
  await knex.raw(
    "alter table tenants add constraint tenants_status_check check (status in ('provisioning', 'active', 'suspended'))",
  );
  await knex.schema.alterTable("tenants", (t) => {
    t.text("plan").notNullable().defaultTo("free");
    /** When set, the tenant's data is erased after this time (a retention period after deletion). */
    t.timestamp("delete_after", { useTz: true });
    /** Bumped to ask the provisioner for a fresh pass. */
    t.timestamp("provision_requested_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable("accounts", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    /** Lowercased; the login name. */
    t.text("email").notNullable().unique();
    t.text("display_name").notNullable().defaultTo("");
    /** argon2id PHC string. */
    t.text("password_hash").notNullable();
    t.timestamp("email_verified_at", { useTz: true });
    t.boolean("is_operator").notNullable().defaultTo(false);
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("last_login_at", { useTz: true });
  });

  await knex.schema.createTable("sessions", (t) => {
    /** SHA-256 of the cookie value; the value itself is never stored. */
    t.text("id_sha256").primary();
    t.uuid("account_id").notNullable().references("accounts.id").onDelete("cascade");
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("last_seen_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("expires_at", { useTz: true }).notNullable();
    t.index(["account_id"]);
  });

  await knex.schema.createTable("email_tokens", (t) => {
    t.text("token_sha256").primary();
    t.uuid("account_id").notNullable().references("accounts.id").onDelete("cascade");
    t.text("purpose").notNullable();
    t.timestamp("expires_at", { useTz: true }).notNullable();
    t.timestamp("used_at", { useTz: true });
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.check("purpose in ('verify', 'reset')");
    t.index(["account_id"]);
  });

  await knex.schema.createTable("memberships", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.uuid("account_id").notNullable().references("accounts.id").onDelete("cascade");
    t.text("role").notNullable();
    /** The member's Matrix ID; for owners and admins it makes them tenant admins in chat too. */
    t.text("matrix_user_id");
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "account_id"]);
    t.check("role in ('owner', 'admin', 'member')");
    t.index(["account_id"]);
  });

  await knex.schema.createTable("invitations", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("email").notNullable();
    t.text("role").notNullable();
    t.text("token_sha256").notNullable().unique();
    t.uuid("invited_by").references("accounts.id").onDelete("set null");
    t.timestamp("expires_at", { useTz: true }).notNullable();
    t.timestamp("accepted_at", { useTz: true });
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.check("role in ('admin', 'member')");
  });

  await knex.schema.createTable("api_tokens", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("name").notNullable();
    t.text("token_sha256").notNullable().unique();
    /** The first characters of the token, to recognise it in a list. */
    t.text("prefix").notNullable();
    t.uuid("created_by").references("accounts.id").onDelete("set null");
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("last_used_at", { useTz: true });
    t.timestamp("revoked_at", { useTz: true });
  });

  for (const table of ["memberships", "invitations", "api_tokens"]) {
    await enableTenantIsolation(knex, table);
  }
}
