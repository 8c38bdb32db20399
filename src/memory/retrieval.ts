import type { Knex } from "knex";
import type { PersonId } from "../shared/ids.ts";
import { FACT_COLUMNS, factFromRow, type FactRow } from "./facts.ts";
import { estimateTokens } from "./tokens.ts";
import type { Fact, FactQuery } from "./types.ts";

/**
 * Hybrid retrieval of the facts worth putting in an agent's prompt.
 *
 * Candidates (each set small, index-backed and LIMITed, so the cost does not
 * grow with the tenant's million facts; see migration 003 for why the text
 * sets go through memory_fact_text_candidates):
 *   1. per query lexeme (English full text, the 8 longest), a sample of the
 *      facts containing it, plus its match count up to TERM_COUNT_CAP;
 *      facts containing all matched lexemes, and the two rarest together;
 *   2. per query word, facts with a similar word (pg_trgm word similarity:
 *      "favorite" finds "favourite", typos find the right name);
 *   3. facts about the people in the conversation that match any lexeme, and
 *      their most recent facts whatever the text;
 *   4. the most recent facts about the room.
 * Only current facts the agent may see (shared ones and its own private
 * ones) are ever candidates, and row-level security scopes all to the tenant.
 *
 * Ranking (over the candidates only, a few hundred rows at most):
 *   score = TEXT_WEIGHT     · text      (IDF-weighted share of the query's lexemes the fact contains;
 *                                        a lexeme's IDF is ln(1 + TERM_COUNT_CAP / its match count),
 *                                        so "jazz" counts far more than "like")
 *         + TRIGRAM_WEIGHT  · trigram   (mean over query words of their best word similarity, when ≥ 0.6)
 *         + PERSON_BOOST    if the fact is about a person in the conversation
 *         + ROOM_BOOST      if the fact is about this room
 *         + RECENCY_WEIGHT  · 2^(−age / RECENCY_HALF_LIFE_DAYS)
 * A topical match (text near 1) outranks a merely recent fact (at most
 * PERSON_BOOST + RECENCY_WEIGHT). Candidates with too little relevance
 * (below MIN_RELEVANCE) are dropped unless they are about the conversation's
 * people or room. The few most recent facts about the people are always kept
 * (up to a quarter of `limit`). The result, best first, stops at `limit`
 * facts and at `tokenBudget` tokens of content.
 */

const TEXT_WEIGHT = 1;
const TRIGRAM_WEIGHT = 0.4;
const PERSON_BOOST = 0.3;
const ROOM_BOOST = 0.15;
const RECENCY_WEIGHT = 0.15;
const RECENCY_HALF_LIFE_DAYS = 30;
/** Relevance (text and trigram parts of the score) a fact about someone else needs to be returned. */
const MIN_RELEVANCE = 0.15;
/** pg_trgm's default word_similarity_threshold, which the trigram index search uses. */
const MIN_WORD_SIMILARITY = 0.6;

/** Only the start of a long message is searched, in characters. */
const MAX_QUERY_TEXT_CHARS = 2_000;
const MAX_QUERY_LEXEMES = 8;
const MAX_TRIGRAM_WORDS = 4;
/** Shortest word worth a trigram search, in characters (shorter ones have too few trigrams). */
const MIN_TRIGRAM_WORD_CHARS = 4;
const CANDIDATES_PER_TERM = 40;
/** Matches counted per lexeme, at most; beyond it a lexeme is simply "common". */
const TERM_COUNT_CAP = 500;
const PERSON_TEXT_CANDIDATES = 50;
const PERSON_RECENT_CANDIDATES = 10;
const ROOM_RECENT_CANDIDATES = 10;
/** The most recent facts about the people that are returned even without a text match. */
const ALWAYS_INCLUDED_PERSON_FACTS = 3;
/** Tokens a fact costs in a prompt beyond its content (bullet, separators). */
export const FACT_OVERHEAD_TOKENS = 3;

const MS_PER_DAY = 86_400_000;

// Frequent words that pass the length filter but carry no topic.
const STOP_WORDS = new Set(
  (
    "about above after again also been before being below between both could does doing down during each " +
    "from further have having here into just know more most other over same should some such than that " +
    "their theirs them then there these they this those through under until very were what when where " +
    "which while will with would your yours remember tell please thanks thank like want need"
  ).split(" "),
);

interface ScoredRow extends FactRow {
  text_weight: number | string | null;
  text_weight_total: number | string | null;
  trigram: number | string | null;
  recent_rank: number | string | null;
}

interface Scored {
  readonly fact: Fact;
  readonly score: number;
  readonly recentRank: number | null;
  readonly tokens: number;
}

/**
 * The facts most useful for answering `query.text` in a conversation with
 * `query.personIds` in `query.roomId`, best first. Never returns another
 * agent's private facts, and (row-level security) never another tenant's.
 */
export async function retrieveFacts(trx: Knex.Transaction, query: FactQuery): Promise<Fact[]> {
  const limit = Math.floor(query.limit);
  if (limit <= 0 || query.tokenBudget <= 0) return [];
  const text = Array.from(query.text).slice(0, MAX_QUERY_TEXT_CHARS).join("");
  const result = await trx.raw<{ rows: ScoredRow[] }>(RANKING_SQL, {
    queryText: text,
    agent: query.agentId,
    persons: [...new Set(query.personIds)],
    room: query.roomId,
    words: trigramWords(text),
    maxLexemes: MAX_QUERY_LEXEMES,
    perTerm: CANDIDATES_PER_TERM,
    countCap: TERM_COUNT_CAP,
    personText: PERSON_TEXT_CANDIDATES,
    personRecent: PERSON_RECENT_CANDIDATES,
    roomRecent: ROOM_RECENT_CANDIDATES,
    minSimilarity: MIN_WORD_SIMILARITY,
  });
  const people = new Set<PersonId>(query.personIds);
  const now = Date.now();
  const scored = result.rows.flatMap((row) => {
    const candidate = score(row, people, query.roomId, now);
    return candidate === null ? [] : [candidate];
  });
  return select(scored, limit, query.tokenBudget);
}

/** Words for the trigram search: distinct, lower case, long enough, not stop words; longest first. */
export function trigramWords(text: string): string[] {
  const words = new Set(
    (text.toLowerCase().match(/[\p{L}\p{N}][\p{L}\p{N}'’-]*/gu) ?? [])
      .map((word) => word.replace(/['’-]+$/u, ""))
      .filter((word) => Array.from(word).length >= MIN_TRIGRAM_WORD_CHARS && !STOP_WORDS.has(word)),
  );
  return [...words]
    .sort((a, b) => b.length - a.length || (a < b ? -1 : 1))
    .slice(0, MAX_TRIGRAM_WORDS);
}

function score(
  row: ScoredRow,
  people: ReadonlySet<PersonId>,
  roomId: FactQuery["roomId"],
  now: number,
): Scored | null {
  const fact = factFromRow(row);
  const textTotal = Number(row.text_weight_total ?? 0);
  const text = textTotal > 0 ? Number(row.text_weight ?? 0) / textTotal : 0;
  const relevance = TEXT_WEIGHT * text + TRIGRAM_WEIGHT * Number(row.trigram ?? 0);
  const aboutPerson = fact.subject.kind === "person" && people.has(fact.subject.personId);
  const aboutRoom = fact.subject.kind === "room" && fact.subject.roomId === roomId;
  if (relevance < MIN_RELEVANCE && !aboutPerson && !aboutRoom) return null;
  const ageDays = Math.max(0, now - fact.validFrom.getTime()) / MS_PER_DAY;
  const recency = 2 ** (-ageDays / RECENCY_HALF_LIFE_DAYS);
  return {
    fact,
    score:
      relevance +
      (aboutPerson ? PERSON_BOOST : 0) +
      (aboutRoom ? ROOM_BOOST : 0) +
      RECENCY_WEIGHT * recency,
    recentRank: row.recent_rank === null ? null : Number(row.recent_rank),
    tokens: estimateTokens(fact.content) + FACT_OVERHEAD_TOKENS,
  };
}

/** Pinned recent facts first, then the best; within `limit` and the token budget; best first. */
function select(candidates: Scored[], limit: number, tokenBudget: number): Fact[] {
  const byScore = [...candidates].sort(
    (a, b) =>
      b.score - a.score ||
      b.fact.validFrom.getTime() - a.fact.validFrom.getTime() ||
      (a.fact.id < b.fact.id ? -1 : 1),
  );
  const pinnedCount = Math.min(ALWAYS_INCLUDED_PERSON_FACTS, Math.floor(limit / 4));
  const pinned = byScore
    .filter((candidate) => candidate.recentRank !== null && candidate.recentRank <= pinnedCount)
    .sort((a, b) => (a.recentRank ?? 0) - (b.recentRank ?? 0));
  const chosen = new Set<Scored>();
  let budget = tokenBudget;
  for (const candidate of [...pinned, ...byScore]) {
    if (chosen.size >= limit) break;
    if (chosen.has(candidate) || candidate.tokens > budget) continue;
    chosen.add(candidate);
    budget -= candidate.tokens;
  }
  return byScore.filter((candidate) => chosen.has(candidate)).map((candidate) => candidate.fact);
}

/**
 * One statement: derive the query's lexemes, gather the candidate sets,
 * and compute each candidate's text, trigram and recency inputs. The final
 * read of facts goes through row-level security by primary key.
 */
const RANKING_SQL = `
with query as (
  select array(
           select lexeme
             from unnest(tsvector_to_array(to_tsvector('english', :queryText))) lexeme
            order by length(lexeme) desc, lexeme
            limit :maxLexemes
         ) as lexemes
),
any_lexeme as (
  select (select string_agg(quote_literal(lexeme), ' | ') from unnest(query.lexemes) lexeme)::tsquery as tsq
    from query
),
text_hits as materialized (
  select hits.*
    from query,
         memory_fact_text_candidates(:agent, query.lexemes, :words::text[], :perTerm, :countCap) hits
),
term_stats as (
  select distinct term, ln(1 + :countCap::float8 / term_matches) as idf
    from text_hits
   where kind = 'lexeme'
),
about_people as (
  select f.id
    from facts f, any_lexeme
   where f.subject_person_id = any(:persons::uuid[]) and f.valid_to is null
     and (f.agent_id is null or f.agent_id = :agent)
     and f.content_tsv @@ any_lexeme.tsq
   order by f.created_at desc
   limit :personText
),
recent_people as materialized (
  select f.id, row_number() over (order by f.created_at desc, f.id) as recent_rank
    from (select id, created_at
            from facts
           where subject_person_id = any(:persons::uuid[]) and valid_to is null
             and (agent_id is null or agent_id = :agent)
           order by created_at desc
           limit :personRecent) f
),
about_room as (
  select id
    from facts
   where subject_room_id = :room and subject_kind = 'room' and valid_to is null
     and (agent_id is null or agent_id = :agent)
   order by created_at desc
   limit :roomRecent
),
candidates as (
  select fact_id as id from text_hits
  union select id from about_people
  union select id from recent_people
  union select id from about_room
)
select ${FACT_COLUMNS.map((column) => `f.${column}`).join(", ")},
       (select sum(s.idf) from term_stats s
         where f.content_tsv @@ quote_literal(s.term)::tsquery) as text_weight,
       (select sum(s.idf) from term_stats s) as text_weight_total,
       (select avg(case when similarity >= :minSimilarity then similarity else 0 end)
          from (select word_similarity(word, f.content) as similarity
                  from unnest(:words::text[]) word) words) as trigram,
       r.recent_rank
  from facts f
  left join recent_people r on r.id = f.id
 where f.id in (select id from candidates)
   and f.valid_to is null
   and (f.agent_id is null or f.agent_id = :agent)
`;
