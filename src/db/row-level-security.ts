import type { Knex } from "knex";
import { APP_ROLE } from "./tenant-transaction.ts";

/**
 * Puts a table under row-level security keyed on the tenant that withTenant
 * sets. The policy binds APP_ROLE, the role every tenant transaction runs as;
 * the service's own connection (the tables' owner) keeps access across
 * tenants for its bookkeeping (finding pending work, routing), which is why
 * all request-driven code goes through withTenant.
 */
export async function enableTenantIsolation(
  knex: Knex,
  table: string,
  column = "tenant_id",
): Promise<void> {
  await knex.raw(`grant select, insert, update, delete on ${table} to ${APP_ROLE}`);
  await knex.raw(`alter table ${table} enable row level security`);
  await knex.raw(
    `create policy tenant_isolation on ${table} to ${APP_ROLE}
       using (${column} = nullif(current_setting('app.tenant_id', true), '')::uuid)
       with check (${column} = nullif(current_setting('app.tenant_id', true), '')::uuid)`,
  );
}
