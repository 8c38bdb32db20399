import type { Knex } from "knex";
import { MIGRATIONS } from "./migrations/index.ts";
import { APP_ROLE } from "./tenant-transaction.ts";

type Migration = (typeof MIGRATIONS)[number];

const source: Knex.MigrationSource<Migration> = {
  getMigrations: () => Promise.resolve([...MIGRATIONS]),
  getMigrationName: (migration) => migration.name,
  getMigration: (migration) =>
    Promise.resolve({
      up: (knex: Knex) => migration.up(knex),
      down: () => Promise.reject(new Error("migrations are forward-only")),
    }),
};

/**
 * Brings the schema up to date. Safe to run concurrently from several
 * processes (knex holds a lock table) and on every start.
 */
export async function migrateToLatest(knex: Knex): Promise<string[]> {
  await ensureAppRole(knex);
  const [, applied] = (await knex.migrate.latest({ migrationSource: source })) as [
    number,
    string[],
  ];
  // Tables grant themselves in enableTenantIsolation; sequences are granted here once for all.
  await knex.raw(`grant usage, select on all sequences in schema public to ${APP_ROLE}`);
  return applied;
}

/**
 * The role that tenant transactions switch to. Roles are cluster-wide, so it
 * may already exist (another database on the same server). The connecting
 * user must be able to SET ROLE to it, hence the grant.
 */
async function ensureAppRole(knex: Knex): Promise<void> {
  await knex.raw(
    `do $$ begin
       if not exists (select from pg_roles where rolname = '${APP_ROLE}') then
         create role ${APP_ROLE} nologin;
       end if;
     end $$`,
  );
  await knex.raw(`grant ${APP_ROLE} to current_user`).catch(() => {
    // Already granted, or the current user is a superuser (who needs no grant).
  });
  await knex.raw(`grant usage on schema public to ${APP_ROLE}`);
}
