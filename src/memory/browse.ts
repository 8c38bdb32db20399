import type { Knex } from "knex";
import { badRequest } from "../shared/errors.ts";
import type { MatrixUserId, PersonId } from "../shared/ids.ts";
import { FACT_COLUMNS, factFromRow, lexemesOf, tsqueryOf, type FactRow } from "./facts.ts";
import type { Fact } from "./types.ts";

/**
 * Read models for people browsing memory (the portal): people with their
 * Matrix IDs and fact counts, a person's facts with the agent that holds
 * them, and a search over facts. Runs inside the caller's tenant
 * transaction. Lists are keyset pages, newest first: a position is the
 * last row's exact creation time and id, so rows added meanwhile neither
 * repeat nor vanish.
 */

/** Positions are "<UTC timestamp with microseconds>|<uuid>". */
const POSITION_PATTERN =
  /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)\|([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
/** SQL for a row's position; microseconds, so no two rows share one by rounding. */
const POSITION_SQL = (table: string): string =>
  `to_char(${table}.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '|' || ${table}.id`;

export interface PersonSummary {
  readonly id: PersonId;
  readonly displayName: string | null;
  readonly userIds: readonly MatrixUserId[];
  /** Current facts about the person (forgotten and superseded ones not counted). */
  readonly factCount: number;
  readonly createdAt: Date;
  /** Where the next page starts after this row. */
  readonly position: string;
}

/** A fact with what a person browsing needs beside it. */
export interface BrowsedFact {
  readonly fact: Fact;
  /** The agent holding it privately; null for shared facts. */
  readonly agentName: string | null;
  /** The person it is about, if it is about a person. */
  readonly personId: PersonId | null;
  readonly position: string;
}

export interface KeysetPage {
  readonly limit: number;
  /** A position from a previous page; the rows after it come next. */
  readonly after?: string | undefined;
}

function afterPosition(
  query: Knex.QueryBuilder,
  table: string,
  after: string | undefined,
): Knex.QueryBuilder {
  if (after === undefined) return query;
  const [, createdAt, id] = POSITION_PATTERN.exec(after) ?? [];
  if (createdAt === undefined || id === undefined)
    throw badRequest("cursor: not a cursor from a previous page");
  return query.whereRaw(`(${table}.created_at, ${table}.id) < (?::timestamptz, ?::uuid)`, [
    createdAt,
    id,
  ]);
}

/** People, newest first, `page.limit + 1` rows at most (the extra one says there is more). */
export async function listPeople(
  trx: Knex.Transaction,
  page: KeysetPage,
): Promise<PersonSummary[]> {
  const query = trx("people as p")
    .select(
      "p.id",
      "p.display_name",
      "p.created_at",
      trx.raw(`${POSITION_SQL("p")} as position`),
      trx.raw(
        `(select coalesce(json_agg(i.user_id order by i.created_at, i.user_id), '[]'::json)
            from person_identities i where i.person_id = p.id) as user_ids`,
      ),
      trx.raw(
        "(select count(*) from facts f where f.subject_person_id = p.id and f.valid_to is null) as fact_count",
      ),
    )
    .orderBy([
      { column: "p.created_at", order: "desc" },
      { column: "p.id", order: "desc" },
    ])
    .limit(page.limit + 1);
  const rows = (await afterPosition(query, "p", page.after)) as {
    id: string;
    display_name: string | null;
    created_at: Date | string;
    position: string;
    user_ids: string[] | string;
    fact_count: number | string;
  }[];
  return rows.map((row) => ({
    id: row.id as PersonId,
    displayName: row.display_name,
    userIds: (typeof row.user_ids === "string"
      ? JSON.parse(row.user_ids)
      : row.user_ids) as MatrixUserId[],
    factCount: Number(row.fact_count),
    createdAt: new Date(row.created_at),
    position: row.position,
  }));
}

/** Current facts about a person, newest first, `page.limit + 1` rows at most. */
export async function factsOfPerson(
  trx: Knex.Transaction,
  personId: PersonId,
  page: KeysetPage,
): Promise<BrowsedFact[]> {
  const query = browsedFacts(trx)
    .where("f.subject_person_id", personId)
    .whereNull("f.valid_to")
    .orderBy([
      { column: "f.created_at", order: "desc" },
      { column: "f.id", order: "desc" },
    ])
    .limit(page.limit + 1);
  return toBrowsed(await afterPosition(query, "f", page.after));
}

/**
 * Current facts containing every word of `text` (English full text: stems,
 * stop words ignored), best match first, at most `limit`. Unlike agents'
 * retrieval this sees every agent's facts: it is for the tenant's admins.
 * Row-level security keeps the text index out of use (see migration 003),
 * so this reads the tenant's current facts; fine for a person searching,
 * not for a hot path.
 */
export async function searchFacts(
  trx: Knex.Transaction,
  text: string,
  limit: number,
): Promise<BrowsedFact[]> {
  const lexemes = await lexemesOf(trx, text);
  if (lexemes.length === 0) return [];
  const query = tsqueryOf(lexemes, "&");
  const rows: unknown = await browsedFacts(trx)
    .whereNull("f.valid_to")
    .whereRaw("f.content_tsv @@ ?::tsquery", [query])
    .orderByRaw("ts_rank(f.content_tsv, ?::tsquery) desc, f.created_at desc, f.id desc", [query])
    .limit(limit);
  return toBrowsed(rows);
}

function browsedFacts(trx: Knex.Transaction): Knex.QueryBuilder {
  return trx("facts as f")
    .leftJoin("agents as a", "a.id", "f.agent_id")
    .select(
      ...FACT_COLUMNS.map((column) => `f.${column}`),
      "a.name as agent_name",
      trx.raw(`${POSITION_SQL("f")} as position`),
    );
}

function toBrowsed(rows: unknown): BrowsedFact[] {
  return (rows as (FactRow & { agent_name: string | null; position: string })[]).map((row) => ({
    fact: factFromRow(row),
    agentName: row.agent_name,
    personId: row.subject_person_id as PersonId | null,
    position: row.position,
  }));
}
