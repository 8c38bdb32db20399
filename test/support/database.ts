import { randomBytes } from "node:crypto";
import knexFactory from "knex";
import { connectDatabase, type Database, type DatabaseKind } from "../../src/db/connect.ts";
import { migrateToLatest } from "../../src/db/migrate.ts";

/**
 * The PostgreSQL server tests use. CI and the development machines have one on
 * 127.0.0.1:5432 with trust auth; TEST_DATABASE_URL points elsewhere.
 */
export const TEST_POSTGRES_URL =
  process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** Backends every database test runs against. */
export const BACKENDS: readonly DatabaseKind[] = ["pglite", "postgres"];

export interface TestDatabase extends Database {
  /** Drops the per-test PostgreSQL database (no-op for in-memory PGlite). */
  drop(): Promise<void>;
  readonly url: string | undefined;
}

/**
 * A fresh, migrated database of the given kind: PGlite in memory, or a new
 * database on the test PostgreSQL server, so test files never share state.
 */
export async function createTestDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  if (kind === "pglite") {
    const database = await connectDatabase({});
    await migrateToLatest(database.knex);
    return { ...database, url: undefined, drop: () => database.close() };
  }
  const name = `sb_test_${randomBytes(6).toString("hex")}`;
  const admin = knexFactory({
    client: "pg",
    connection: TEST_POSTGRES_URL,
    pool: { min: 0, max: 1 },
  });
  try {
    await admin.raw(`create database ${name}`);
  } finally {
    await admin.destroy();
  }
  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${name}`;
  const database = await connectDatabase({ url: url.toString(), poolMax: 5 });
  await migrateToLatest(database.knex);
  return {
    ...database,
    url: url.toString(),
    drop: async () => {
      await database.close();
      const cleanup = knexFactory({
        client: "pg",
        connection: TEST_POSTGRES_URL,
        pool: { min: 0, max: 1 },
      });
      try {
        await cleanup.raw(`drop database if exists ${name} with (force)`);
      } finally {
        await cleanup.destroy();
      }
    },
  };
}
