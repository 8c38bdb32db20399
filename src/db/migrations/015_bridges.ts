import type { Knex } from "knex";
import { enableTenantIsolation } from "../row-level-security.ts";

/**
 * Bridges (src/bridges): a tenant's mautrix bridge per network, and the
 * bridged rooms its relay account is in.
 *
 * `bridges`: one row per tenant and network while the tenant wants it
 * (desired 'enabled') or until the provisioner has taken it down (desired
 * 'disabled': logged out, container/process and database removed, then the
 * row is deleted). Secrets are encrypted with the service's SecretCipher:
 * the relay login's credentials (JSON, erased on disconnect), the
 * registration tokens (as/hs) and the provisioning API's shared secret,
 * from which the bridge's database password is derived. `credentials_version`
 * counts submissions: the relay login is redone when `login_version` lags it,
 * and a rejected login is not retried until new credentials arrive
 * (`login_failed_version`). `state` is the provisioner's last observation,
 * `last_error` the last secret-free explanation shown to tenant admins.
 *
 * `bridge_rooms`: rooms the bridge made (portals) that the relay account
 * joined; `relay_state` says whether its set-relay command went through.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("bridges", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("network").notNullable();
    t.text("desired").notNullable().defaultTo("enabled");
    t.text("credentials_encrypted");
    t.integer("credentials_version").notNullable().defaultTo(1);
    t.integer("login_version").notNullable().defaultTo(0);
    t.integer("login_failed_version").notNullable().defaultTo(0);
    t.text("as_token_encrypted").notNullable();
    t.text("hs_token_encrypted").notNullable();
    t.text("provisioning_secret_encrypted").notNullable();
    t.text("state").notNullable().defaultTo("pending");
    t.text("relay_login_id");
    t.text("relay_remote_name");
    t.text("last_error");
    t.integer("failures").notNullable().defaultTo(0);
    t.timestamp("next_attempt_at", { useTz: true });
    t.timestamp("connected_at", { useTz: true });
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "network"]);
    t.check("network in ('slack', 'discord', 'telegram')");
    t.check("desired in ('enabled', 'disabled')");
    t.check(
      "state in ('pending', 'starting', 'running', 'logging_in', 'connected', 'login_failed', 'failed', 'stopped', 'removing')",
    );
    t.check("failures >= 0");
  });
  await enableTenantIsolation(knex, "bridges");

  await knex.schema.createTable("bridge_rooms", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    t.text("room_id").notNullable();
    t.text("network").notNullable();
    /** The room's name as the bridge set it (the remote channel's name). */
    t.text("remote_name");
    t.text("relay_state").notNullable().defaultTo("pending");
    t.text("last_error");
    t.timestamp("joined_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "room_id"]);
    t.foreign(["tenant_id", "network"])
      .references(["tenant_id", "network"])
      .inTable("bridges")
      .onDelete("cascade");
    t.check("relay_state in ('pending', 'set', 'failed')");
  });
  await enableTenantIsolation(knex, "bridge_rooms");
}
