import { mkdir } from "node:fs/promises";
import { PGlite } from "@electric-sql/pglite";
import { pg_trgm } from "@electric-sql/pglite/contrib/pg_trgm";
import knexFactory, { type Knex } from "knex";
import ClientPgLite from "knex-pglite";
import pg from "pg";
import { installTransactionGuard } from "./tenant-transaction.ts";
import { reportUnavailableConnections } from "./unavailable.ts";

export type DatabaseKind = "postgres" | "pglite";

export interface Database {
  readonly knex: Knex;
  readonly kind: DatabaseKind;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** postgres:// URL; when absent, PGlite is used. */
  url?: string | undefined;
  /** PGlite data directory; absent means in memory (tests). */
  pgliteDir?: string | undefined;
  poolMax?: number;
}

// int8 (counts, sums, bigserial ids) as numbers: every value we keep in one
// fits well inside 2^53, and PGlite already returns numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10));

/** Opens the database the configuration names. Does not run migrations. */
export async function connectDatabase(options: DatabaseOptions): Promise<Database> {
  const knex =
    options.url === undefined
      ? await openPglite(options.pgliteDir)
      : openPostgres(options.url, options.poolMax ?? 10);
  installTransactionGuard(knex);
  return {
    knex,
    kind: options.url === undefined ? "pglite" : "postgres",
    close: () => knex.destroy(),
  };
}

/** A connect that gets no answer (server or network gone silent) fails after this long. */
const CONNECT_TIMEOUT_MS = 5_000;

function openPostgres(url: string, poolMax: number): Knex {
  const knex = knexFactory({
    client: "pg",
    connection: { connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS },
    pool: { min: 0, max: poolMax },
    // Fail fast rather than queue forever when the server is gone.
    acquireConnectionTimeout: 10_000,
  });
  reportUnavailableConnections(knex);
  return knex;
}

/**
 * knex-pglite reports a delete as command "DEL", which knex does not know, so
 * `delete()` resolved to the raw result instead of the number of rows.
 */
class PgliteClient extends ClientPgLite {
  processResponse(obj: { method?: string }, runner: unknown): unknown {
    const base = ClientPgLite.prototype as unknown as {
      processResponse(obj: unknown, runner: unknown): unknown;
    };
    return base.processResponse.call(
      this,
      obj.method === "del" ? { ...obj, method: "delete" } : obj,
      runner,
    );
  }
}

async function openPglite(dataDir: string | undefined): Promise<Knex> {
  if (dataDir !== undefined) await mkdir(dataDir, { recursive: true });
  const instance = await PGlite.create({
    ...(dataDir === undefined ? {} : { dataDir }),
    extensions: { pg_trgm },
  });
  return knexFactory({
    client: PgliteClient,
    dialect: "postgres",
    connection: () => ({ pglite: instance }) as object,
  } as Knex.Config);
}
