import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { badRequest, notFound } from "../shared/errors.ts";
import type { AgentId, EventId, FactId, PersonId, RoomId } from "../shared/ids.ts";
import { normaliseKey } from "./intents.ts";
import type { Fact, FactSource, FactSubject, NewFact } from "./types.ts";

/**
 * The facts repository. Every function runs inside the caller's tenant
 * transaction (withTenant); row-level security scopes every statement to
 * that tenant, and inserts take the tenant from the same setting.
 */

/** Longest fact content kept, in characters; longer content is cut at a word boundary. */
export const MAX_FACT_CONTENT_CHARS = 1_000;
/** Longest key kept, in characters. */
export const MAX_FACT_KEY_CHARS = 100;
/** Default and ceiling of listFacts, in facts. */
const LIST_FACTS_LIMIT = 1_000;

/** SQL for the tenant that withTenant set, for inserts (the row-level-security check needs it). */
export const CURRENT_TENANT_SQL = "nullif(current_setting('app.tenant_id', true), '')::uuid";

export const FACT_COLUMNS = [
  "id",
  "agent_id",
  "subject_kind",
  "subject_person_id",
  "subject_room_id",
  "key",
  "content",
  "source_kind",
  "source_event_id",
  "source_room_id",
  "valid_from",
  "valid_to",
  "superseded_by",
] as const;

export interface FactRow {
  id: string;
  agent_id: string | null;
  subject_kind: "person" | "room" | "tenant";
  subject_person_id: string | null;
  subject_room_id: string | null;
  key: string | null;
  content: string;
  source_kind: FactSource;
  source_event_id: string | null;
  source_room_id: string | null;
  valid_from: Date | string;
  valid_to: Date | string | null;
  superseded_by: string | null;
}

/**
 * Stores a fact and returns it. In the same transaction, a current fact with
 * the same subject, key and visibility (same private agent, or both shared)
 * is superseded (valid_to set, superseded_by pointing at the new fact), and
 * an exact duplicate (same content, case aside) of a current fact is not
 * stored again: the existing fact is returned. Concurrent calls for the same
 * subject and visibility are serialised by a transaction-scoped lock.
 */
export async function rememberFact(trx: Knex.Transaction, fact: NewFact): Promise<Fact> {
  const content = normaliseFactContent(fact.content);
  if (content === "") throw badRequest("a fact needs some content");
  const key = fact.key === undefined || fact.key === null ? null : normaliseFactKey(fact.key);

  // The foreign key alone would accept another tenant's person (key checks bypass row-level security).
  if (fact.subject.kind === "person") {
    const person = await trx("people")
      .first<{ id: string } | undefined>("id")
      .where("id", fact.subject.personId);
    if (person === undefined) throw notFound("person");
  }

  await trx.raw(
    "select pg_advisory_xact_lock(hashtextextended(current_setting('app.tenant_id', true) || ?, 0))",
    [`|facts|${fact.agentId ?? "shared"}|${subjectLockName(fact.subject)}`],
  );

  const duplicate = await inScope(trx("facts"), fact.agentId, fact.subject)
    .whereNull("valid_to")
    .whereRaw("lower(content) = lower(?)", [content])
    .first<FactRow | undefined>(FACT_COLUMNS);
  if (duplicate !== undefined) return factFromRow(duplicate);

  const [inserted] = await trx("facts")
    .insert({
      id: randomUUID(),
      tenant_id: trx.raw(CURRENT_TENANT_SQL),
      agent_id: fact.agentId,
      subject_kind: fact.subject.kind,
      subject_person_id: fact.subject.kind === "person" ? fact.subject.personId : null,
      subject_room_id: fact.subject.kind === "room" ? fact.subject.roomId : null,
      key,
      content,
      source_kind: fact.source,
      source_event_id: fact.sourceEventId ?? null,
      source_room_id: fact.sourceRoomId ?? null,
      // Wall-clock time, not the transaction's start: facts stored in one
      // transaction keep their order, and the old fact ends exactly where the new one begins.
      valid_from: trx.raw("clock_timestamp()"),
      created_at: trx.raw("clock_timestamp()"),
    })
    .returning<FactRow[]>(FACT_COLUMNS);
  if (inserted === undefined) throw new Error("insert into facts returned no row");

  if (key !== null) {
    await inScope(trx("facts"), fact.agentId, fact.subject)
      .whereNull("valid_to")
      .where("key", key)
      .whereNot("id", inserted.id)
      .update({ valid_to: inserted.valid_from, superseded_by: inserted.id });
  }
  return factFromRow(inserted);
}

export interface ForgetRequest {
  /** The agent asking: it can forget shared facts and its own private ones, nothing else. */
  readonly agentId: AgentId;
  readonly personId?: PersonId | undefined;
  readonly factId?: FactId | undefined;
  /** Words the facts must contain (all of them, stemmed), or a literal substring. */
  readonly matching?: string | undefined;
}

/**
 * Ends the validity of the matching current facts (valid_to = now); they
 * stay in the history for export until erased. At least one of personId,
 * factId and matching is required, so a request can never forget everything
 * the agent sees. Returns how many facts were forgotten.
 */
export async function forgetFacts(trx: Knex.Transaction, request: ForgetRequest): Promise<number> {
  const matching =
    request.matching === undefined ? undefined : normaliseFactContent(request.matching);
  if (request.personId === undefined && request.factId === undefined && (matching ?? "") === "") {
    throw badRequest("say which facts to forget: a person, a fact or words to match");
  }
  const query = visibleTo(trx("facts"), request.agentId).whereNull("valid_to");
  if (request.personId !== undefined) query.where("subject_person_id", request.personId);
  if (request.factId !== undefined) query.where("id", request.factId);
  if (matching !== undefined && matching !== "") {
    const lexemes = await lexemesOf(trx, matching);
    query.where((match) => {
      match.whereRaw("content ilike ? escape '\\'", [`%${escapeLike(matching)}%`]);
      if (lexemes.length > 0)
        match.orWhereRaw("content_tsv @@ ?::tsquery", [tsqueryOf(lexemes, "&")]);
    });
  }
  return query.update({ valid_to: trx.raw("clock_timestamp()") });
}

export interface ListFactsFilter {
  readonly personId?: PersonId | undefined;
  /** When set, only what this agent may see (shared and its own private facts). */
  readonly agentId?: AgentId | undefined;
  /** Include superseded and forgotten facts. */
  readonly includeHistory?: boolean | undefined;
  readonly limit?: number | undefined;
}

/** Facts, newest first, at most `limit` (default and ceiling LIST_FACTS_LIMIT). */
export async function listFacts(trx: Knex.Transaction, filter: ListFactsFilter): Promise<Fact[]> {
  const query = trx("facts").select<FactRow[]>(FACT_COLUMNS);
  if (filter.agentId !== undefined) visibleTo(query, filter.agentId);
  if (filter.personId !== undefined) query.where("subject_person_id", filter.personId);
  if (filter.includeHistory !== true) query.whereNull("valid_to");
  const limit = Math.max(1, Math.min(filter.limit ?? LIST_FACTS_LIMIT, LIST_FACTS_LIMIT));
  const rows = await query
    .orderBy([
      { column: "created_at", order: "desc" },
      { column: "id", order: "asc" },
    ])
    .limit(limit);
  return rows.map(factFromRow);
}

/** Every fact about the person, past ones included, newest first, unbounded (for export). */
export async function allFactsAbout(trx: Knex.Transaction, personId: PersonId): Promise<Fact[]> {
  const rows = await trx("facts")
    .select<FactRow[]>(FACT_COLUMNS)
    .where("subject_person_id", personId)
    .orderBy([
      { column: "created_at", order: "desc" },
      { column: "id", order: "asc" },
    ]);
  return rows.map(factFromRow);
}

/** Erasure (GDPR): deletes every fact about the person, past ones too. Returns the count. */
export async function deleteFactsOfPerson(
  trx: Knex.Transaction,
  personId: PersonId,
): Promise<number> {
  // Counted through RETURNING: knex-pglite answers a plain delete with the raw result, not a count.
  const deleted = await trx("facts").where("subject_person_id", personId).delete(["id"]);
  return deleted.length;
}

/**
 * Moves every fact about `from` to `to` (people being merged). Afterwards
 * `to` may hold two current facts for one key or two identical facts, one
 * from each former person: the newest stays current and supersedes the others.
 */
export async function reassignFactsOfPerson(
  trx: Knex.Transaction,
  from: PersonId,
  to: PersonId,
): Promise<number> {
  const moved = await trx("facts")
    .where("subject_person_id", from)
    .update({ subject_person_id: to });
  await supersedeAllButNewest(trx, to, "key", "key is not null");
  await supersedeAllButNewest(trx, to, "lower(content)", "true");
  return moved;
}

/**
 * Among a person's current facts grouped by visibility and `groupBy`, keeps
 * the newest of each group current and supersedes the rest by it.
 * `groupBy` and `condition` are fixed SQL from this file, never input.
 */
async function supersedeAllButNewest(
  trx: Knex.Transaction,
  personId: PersonId,
  groupBy: "key" | "lower(content)",
  condition: "key is not null" | "true",
): Promise<void> {
  await trx.raw(
    `with ranked as (
       select id, first_value(id) over w as newest, row_number() over w as position
         from facts
        where subject_person_id = ? and valid_to is null and ${condition}
       window w as (partition by agent_id, ${groupBy} order by valid_from desc, id)
     )
     update facts set valid_to = clock_timestamp(), superseded_by = ranked.newest
       from ranked
      where facts.id = ranked.id and ranked.position > 1`,
    [personId],
  );
}

/** Distinct English lexemes of a text (stemmed, stop words dropped), as PostgreSQL sees them. */
export async function lexemesOf(trx: Knex.Transaction, text: string): Promise<string[]> {
  const result = await trx.raw<{ rows: { lexemes: string[] }[] }>(
    "select tsvector_to_array(to_tsvector('english', ?)) as lexemes",
    [text],
  );
  return result.rows[0]?.lexemes ?? [];
}

/** A tsquery literal joining lexemes with & or |; each lexeme quoted so punctuation stays inside it. */
export function tsqueryOf(lexemes: readonly string[], operator: "&" | "|"): string {
  return lexemes
    .map((lexeme) => `'${lexeme.replaceAll("\\", "\\\\").replaceAll("'", "''")}'`)
    .join(` ${operator} `);
}

/**
 * Content as stored: control characters become spaces, whitespace runs
 * collapse, surrounding space goes, and anything past
 * MAX_FACT_CONTENT_CHARS is cut at the last word boundary.
 */
export function normaliseFactContent(content: string): string {
  const clean = content
    .normalize("NFC")
    .replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, " ")
    .replace(/\s+/gu, " ")
    .trim();
  const chars = Array.from(clean);
  if (chars.length <= MAX_FACT_CONTENT_CHARS) return clean;
  const cut = chars.slice(0, MAX_FACT_CONTENT_CHARS).join("");
  const boundary = cut.lastIndexOf(" ");
  return (boundary > MAX_FACT_CONTENT_CHARS / 2 ? cut.slice(0, boundary) : cut).trimEnd();
}

function normaliseFactKey(key: string): string | null {
  const normalised = Array.from(normaliseKey(normaliseFactContent(key)))
    .slice(0, MAX_FACT_KEY_CHARS)
    .join("")
    .trim();
  return normalised === "" ? null : normalised;
}

export function factFromRow(row: FactRow): Fact {
  return {
    id: row.id as FactId,
    agentId: row.agent_id as AgentId | null,
    subject: subjectFromRow(row),
    key: row.key,
    content: row.content,
    source: row.source_kind,
    sourceEventId: row.source_event_id as EventId | null,
    sourceRoomId: row.source_room_id as RoomId | null,
    validFrom: new Date(row.valid_from),
    validTo: row.valid_to === null ? null : new Date(row.valid_to),
    supersededBy: row.superseded_by as FactId | null,
  };
}

function subjectFromRow(row: FactRow): FactSubject {
  if (row.subject_kind === "person" && row.subject_person_id !== null) {
    return { kind: "person", personId: row.subject_person_id as PersonId };
  }
  if (row.subject_kind === "room" && row.subject_room_id !== null) {
    return { kind: "room", roomId: row.subject_room_id as RoomId };
  }
  return { kind: "tenant" };
}

/** Restricts to what `agentId` may see: shared facts and its own private ones. */
export function visibleTo<T extends Knex.QueryBuilder>(query: T, agentId: AgentId): T {
  query.where((visible) => {
    visible.whereNull("agent_id").orWhere("agent_id", agentId);
  });
  return query;
}

/** Restricts to facts with exactly this visibility and subject (the supersession scope). */
function inScope(
  query: Knex.QueryBuilder,
  agentId: AgentId | null,
  subject: FactSubject,
): Knex.QueryBuilder {
  if (agentId === null) query.whereNull("agent_id");
  else query.where("agent_id", agentId);
  query.where("subject_kind", subject.kind);
  if (subject.kind === "person") query.where("subject_person_id", subject.personId);
  if (subject.kind === "room") query.where("subject_room_id", subject.roomId);
  return query;
}

function subjectLockName(subject: FactSubject): string {
  if (subject.kind === "person") return `person|${subject.personId}`;
  if (subject.kind === "room") return `room|${subject.roomId}`;
  return "tenant";
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/gu, (char) => `\\${char}`);
}

/**
 * Ends one current fact's validity, whichever agent holds it (an admin's or
 * the subject's own request, not an agent's). With `personId`, only a fact
 * about that person qualifies. Returns whether a fact was forgotten.
 */
export async function forgetFactById(
  trx: Knex.Transaction,
  factId: FactId,
  personId?: PersonId,
): Promise<boolean> {
  const query = trx("facts").where("id", factId).whereNull("valid_to");
  if (personId !== undefined) query.where("subject_person_id", personId);
  return (await query.update({ valid_to: trx.raw("clock_timestamp()") })) > 0;
}
