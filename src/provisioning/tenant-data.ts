import type { Knex } from "knex";
import { scopeToTenant } from "../db/tenant-transaction.ts";
import { AppError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";

/**
 * A tenant's Switchboard data as a file: every tenant table's rows, exported
 * by PostgreSQL itself (json_agg) and imported with json_populate_recordset,
 * so timestamps keep their microseconds, bigints their digits and JSON its
 * shape: a round trip is exact. Encrypted columns are copied as stored
 * (still encrypted under the master keys).
 */
export const TENANT_DATA_FORMAT = "switchboard-tenant-data";
export const TENANT_DATA_VERSION = 1;

/**
 * Tables a restore replaces: what the tenant made and what the agents
 * remember. Every table with a tenant_id must be in exactly one of the two
 * lists (a test checks the schema), so a new table is classified on purpose.
 */
export const RESTORED_TABLES: readonly string[] = [
  "agents",
  "provider_keys",
  "rooms",
  "agent_rooms",
  "room_agent_policies",
  "appservice_users",
  "turns",
  "people",
  "person_identities",
  "messages",
  "facts",
  "user_activity",
  "tenant_admins",
  "audit_log",
  "bot_rooms",
  "command_runs",
  "memberships",
  "invitations",
  "api_tokens",
  "limit_notices",
];

/**
 * Tables that describe the present, not the tenant's content, and that a
 * restore must not roll back: the homeserver's tokens (the running stack uses
 * them), Stripe's mirror and what was already reported to its meter, the
 * daily usage counters (rolling them back would hand out a day's messages
 * and managed tokens again), holds (suspension is decided now),
 * de-duplication of appservice transactions and events (rolling them back
 * could answer an event twice), the bridges (their tokens are the running
 * bridges' registrations; their rooms are what the bridges have now), and
 * the provisioner's and backups' own bookkeeping. None of them has a foreign key to a restored table, so
 * replacing those never cascades into these.
 */
export const KEPT_TABLES: readonly string[] = [
  "usage_daily",
  "homeservers",
  "subscriptions",
  "meter_reports",
  "tenant_holds",
  "appservice_transactions",
  "inbound_events",
  "backups",
  "homeserver_health",
  "provisioning",
  "provisioning_steps",
  "bridges",
  "bridge_rooms",
];

/**
 * Kept tables that are still written into the backup, for the record (an
 * operator reading what the tenant's usage, plan state and homeserver were);
 * a restore does not read them. Encrypted columns stay encrypted.
 */
export const ARCHIVED_TABLES: readonly string[] = [
  "usage_daily",
  "homeservers",
  "subscriptions",
  "meter_reports",
  "tenant_holds",
  "provisioning",
];

/** The parsed data file. */
export interface TenantData {
  readonly format: typeof TENANT_DATA_FORMAT;
  readonly version: number;
  readonly tenantId: string;
  /** Per table: the columns exported, then the rows as objects. */
  readonly tables: Readonly<Record<string, { columns: string[]; rows: unknown[] }>>;
}

/**
 * Reads every restored table's rows for the tenant in one repeatable-read
 * transaction (one snapshot: facts and the people they are about agree) as
 * the tenant (row-level security applies), and returns the data file's text
 * and the row count per table. Built from PostgreSQL's own JSON text, never
 * re-encoded by JavaScript.
 */
export async function exportTenantData(
  db: Knex,
  tenantId: TenantId,
): Promise<{ text: string; rowCounts: Record<string, number> }> {
  return db.transaction(
    async (trx) => {
      await scopeToTenant(trx, tenantId);
      const columns = await insertableColumns(trx);
      const parts: string[] = [];
      const rowCounts: Record<string, number> = {};
      for (const table of [...RESTORED_TABLES, ...ARCHIVED_TABLES]) {
        const cols = columns.get(table);
        if (cols === undefined) throw new AppError("internal", `table ${table} is missing`);
        const list = cols.map(quoteIdent).join(", ");
        const result: unknown = await trx.raw(
          `select count(*)::int as n, coalesce(json_agg(r), '[]'::json)::text as rows
             from (select ${list} from ${quoteIdent(table)} where tenant_id = ?) r`,
          [tenantId],
        );
        const row = firstCount(result);
        rowCounts[table] = Number(row.n);
        parts.push(
          `${JSON.stringify(table)}:{"columns":${JSON.stringify(cols)},"rows":${row.rows}}`,
        );
      }
      const head = `{"format":${JSON.stringify(TENANT_DATA_FORMAT)},"version":${String(TENANT_DATA_VERSION)},"tenantId":${JSON.stringify(tenantId)}`;
      return { text: `${head},"tables":{${parts.join(",")}}}\n`, rowCounts };
    },
    { isolationLevel: "repeatable read" },
  );
}

/**
 * Checks that a data file's text is a tenant data file for this tenant and
 * returns it parsed; throws bad_request naming what is wrong otherwise.
 */
export function parseTenantData(text: string, tenantId: TenantId): TenantData {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AppError("bad_request", "the backup's data file is not valid JSON");
  }
  const data = parsed as Partial<TenantData> | null;
  if (data === null || typeof data !== "object" || data.format !== TENANT_DATA_FORMAT)
    throw new AppError("bad_request", "the backup's data file is not a Switchboard tenant backup");
  if (data.version !== TENANT_DATA_VERSION)
    throw new AppError(
      "bad_request",
      `the backup's data format version ${String(data.version)} is not supported (expected ${String(TENANT_DATA_VERSION)})`,
    );
  if (data.tenantId !== tenantId)
    throw new AppError("bad_request", "the backup's data belongs to another tenant");
  const tables = data.tables;
  if (tables === undefined || typeof tables !== "object")
    throw new AppError("bad_request", "the backup's data file has no tables");
  for (const table of RESTORED_TABLES) {
    const entry = tables[table];
    if (entry === undefined || !Array.isArray(entry.columns) || !Array.isArray(entry.rows))
      throw new AppError("bad_request", `the backup's data file lacks table ${table}`);
  }
  return data as TenantData;
}

/**
 * Replaces the tenant's rows in every restored table with the backup's,
 * inside the caller's transaction (which must be scoped to the tenant, see
 * withTenant: row-level security then refuses any row of another tenant).
 * Children are deleted before parents and parents inserted before children,
 * from the foreign keys PostgreSQL reports. Columns added since the backup
 * take their defaults; columns dropped since are ignored.
 */
export async function replaceTenantData(
  trx: Knex.Transaction,
  tenantId: TenantId,
  data: TenantData,
): Promise<Record<string, number>> {
  const order = await dependencyOrder(trx, RESTORED_TABLES);
  const columns = await insertableColumns(trx);
  for (const table of [...order].reverse())
    await trx.raw(`delete from ${quoteIdent(table)} where tenant_id = ?`, [tenantId]);
  const restored: Record<string, number> = {};
  for (const table of order) {
    // Own property only: a table named like an Object.prototype member is not data.
    const entry = Object.hasOwn(data.tables, table) ? data.tables[table] : undefined;
    if (entry === undefined || entry.rows.length === 0) {
      restored[table] = 0;
      continue;
    }
    const current = new Set(columns.get(table) ?? []);
    const list = entry.columns
      .filter((column) => current.has(column))
      .map(quoteIdent)
      .join(", ");
    // One statement per table whatever its size, so rows that refer to each
    // other (a fact superseding another) are checked together.
    await trx.raw(
      `insert into ${quoteIdent(table)} (${list})
       select ${list} from json_populate_recordset(null::${quoteIdent(table)}, ?::json)`,
      [JSON.stringify(entry.rows)],
    );
    restored[table] = entry.rows.length;
  }
  return restored;
}

/** Non-generated columns of every table the current role can see, in table order. */
async function insertableColumns(trx: Knex.Transaction): Promise<Map<string, string[]>> {
  const result: unknown = await trx.raw(
    `select table_name, column_name from information_schema.columns
      where table_schema = current_schema() and is_generated = 'NEVER'
      order by table_name, ordinal_position`,
  );
  const columns = new Map<string, string[]>();
  for (const row of rowsOf<{ table_name: string; column_name: string }>(result)) {
    const list = columns.get(row.table_name) ?? [];
    list.push(row.column_name);
    columns.set(row.table_name, list);
  }
  return columns;
}

/** `tables` ordered parents first by their foreign keys among each other. */
async function dependencyOrder(
  trx: Knex.Transaction,
  tables: readonly string[],
): Promise<string[]> {
  const result: unknown = await trx.raw(
    `select c.conrelid::regclass::text as child, c.confrelid::regclass::text as parent
       from pg_constraint c
      where c.contype = 'f' and c.conrelid <> c.confrelid`,
  );
  const wanted = new Set(tables);
  const parents = new Map<string, Set<string>>(tables.map((table) => [table, new Set()]));
  for (const { child, parent } of rowsOf<{ child: string; parent: string }>(result))
    if (wanted.has(child) && wanted.has(parent)) parents.get(child)?.add(parent);
  const ordered: string[] = [];
  const placed = new Set<string>();
  while (ordered.length < tables.length) {
    const ready = tables.filter(
      (table) => !placed.has(table) && [...(parents.get(table) ?? [])].every((p) => placed.has(p)),
    );
    if (ready.length === 0)
      throw new AppError("internal", "the tenant tables' foreign keys form a cycle");
    for (const table of ready) {
      ordered.push(table);
      placed.add(table);
    }
  }
  return ordered;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** knex.raw answers { rows } on pg and PGlite alike. */
function rowsOf<T>(result: unknown): T[] {
  return (result as { rows: T[] }).rows;
}

function firstCount(result: unknown): { n: number; rows: string } {
  const row = rowsOf<{ n: number; rows: string }>(result)[0];
  if (row === undefined) throw new AppError("internal", "the query returned no row");
  return row;
}
