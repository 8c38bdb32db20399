import type { Knex } from "knex";
import type { PersonId } from "../shared/ids.ts";
import { FACT_COLUMNS, factFromRow, type FactRow } from "./facts.ts";
import { estimateTokens } from "./tokens.ts";
import type { Fact, FactQuery } from "./types.ts";

/**
 * Hybrid retrieval of the facts worth putting in an agent's prompt.
 *
 * Candidates: a union of small sets, each read through an index and cut by
 * a LIMIT, so the work does not grow with the tenant's million facts:
 *   1. tenant-wide full text (English, the query's 8 longest lexemes), through
 *      memory_fact_text_candidates (migration 003 says why a function): per
 *      lexeme a sample of the facts containing it and its match count up to
 *      TERM_COUNT_CAP; facts containing all matched lexemes, and the two
 *      rarest together. Lexemes in more than MAX_SCANNED_POSTINGS facts
 *      ("like", in a big tenant "favourite") are too costly to search alone;
 *      they only narrow the conjunction;
 *   2. the people's PERSON_SCAN_FACTS most recent facts (person index) that
 *      match any lexeme, or that contain a word similar (pg_trgm word
 *      similarity ≥ MIN_WORD_SIMILARITY) to a query word no fact contains as a
 *      lexeme: "favorite color" finds "my favourite colour", typos find names;
 *   3. the people's PERSON_RECENT_CANDIDATES most recent facts, whatever the text;
 *   4. the room's ROOM_RECENT_CANDIDATES most recent facts.
 * Only current facts the agent may see (shared ones and its own private
 * ones) are ever candidates, and row-level security scopes all to the tenant.
 *
 * Ranking, over the candidates only (a few hundred rows at most):
 *   score = TEXT_WEIGHT    · text     IDF-weighted share of the query's lexemes the fact contains;
 *                                     IDF = ln(1 + TERM_COUNT_CAP / matches), so "jazz" counts far
 *                                     more than "like"
 *         + TRIGRAM_WEIGHT · trigram  word similarity of the query words no fact contains as a
 *                                     lexeme: (best + mean) / 2, so one typo counts and filler
 *                                     words dilute it only by half (facts about the people or
 *                                     the room only)
 *         + PERSON_BOOST   if the fact is about a person in the conversation
 *         + ROOM_BOOST     if the fact is about this room
 *         + RECENCY_WEIGHT · 2^(−age / RECENCY_HALF_LIFE_DAYS)
 * A topical match (text near 1) outranks a merely recent fact (at most
 * PERSON_BOOST + RECENCY_WEIGHT). A fact whose relevance (text and trigram
 * parts) is below MIN_RELEVANCE is dropped, except the room's facts and the
 * people's most recent facts (up to ALWAYS_INCLUDED_PERSON_FACTS, at most a
 * quarter of `limit`), which are always kept. The result, best first, stops
 * at `limit` facts and at `tokenBudget` tokens of content.
 */

const TEXT_WEIGHT = 1;
const TRIGRAM_WEIGHT = 0.4;
const PERSON_BOOST = 0.3;
const ROOM_BOOST = 0.15;
const RECENCY_WEIGHT = 0.15;
const RECENCY_HALF_LIFE_DAYS = 30;
/** Relevance (text and trigram parts of the score) a fact needs to be returned. */
const MIN_RELEVANCE = 0.15;
/**
 * Word similarity (pg_trgm) at which a query word counts as found in a fact:
 * "favorite" in "my favourite colour" scores 0.58, "color" 0.67, while
 * unrelated words of the same length stay below 0.4.
 */
const MIN_WORD_SIMILARITY = 0.5;

/** Only the start of a long message is searched, in characters. */
const MAX_QUERY_TEXT_CHARS = 2_000;
const MAX_QUERY_LEXEMES = 8;
const MAX_TRIGRAM_WORDS = 4;
/** Shortest word worth a trigram comparison, in characters (shorter ones have too few trigrams). */
const MIN_TRIGRAM_WORD_CHARS = 4;
const CANDIDATES_PER_TERM = 30;
/** Matches counted per lexeme, at most; beyond it a lexeme is simply "common". */
const TERM_COUNT_CAP = 200;
/**
 * Facts (all tenants, by the column statistics) a lexeme may appear in and
 * still be searched on its own: reading a posting list costs about 0.3 ms
 * per thousand entries.
 */
const MAX_SCANNED_POSTINGS = 5_000;
/** Most recent facts of the people searched for text and trigram matches (a word similarity costs ~12 µs). */
const PERSON_SCAN_FACTS = 200;
const PERSON_TEXT_CANDIDATES = 50;
const PERSON_RECENT_CANDIDATES = 10;
const ROOM_RECENT_CANDIDATES = 5;
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
  /** One of the people's most recent facts, kept whatever its score. */
  readonly pinned: boolean;
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
    people: query.onlyThesePeople === true ? [...new Set(query.personIds)] : null,
    room: query.roomId,
    words: trigramWords(text),
    maxLexemes: MAX_QUERY_LEXEMES,
    perTerm: CANDIDATES_PER_TERM,
    countCap: TERM_COUNT_CAP,
    maxPostings: MAX_SCANNED_POSTINGS,
    personScan: PERSON_SCAN_FACTS,
    personText: PERSON_TEXT_CANDIDATES,
    personRecent: PERSON_RECENT_CANDIDATES,
    roomRecent: ROOM_RECENT_CANDIDATES,
    minSimilarity: MIN_WORD_SIMILARITY,
  });
  const people = new Set<PersonId>(query.personIds);
  const pinnedCount = Math.min(ALWAYS_INCLUDED_PERSON_FACTS, Math.floor(limit / 4));
  const now = Date.now();
  const scored = result.rows.flatMap((row) => {
    const candidate = score(row, people, query.roomId, pinnedCount, now);
    return candidate === null ? [] : [candidate];
  });
  return select(scored, limit, query.tokenBudget);
}

/** Words for trigram comparison: distinct, lower case, long enough, not stop words; longest first. */
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
  pinnedCount: number,
  now: number,
): Scored | null {
  const fact = factFromRow(row);
  const textTotal = Number(row.text_weight_total ?? 0);
  const text = textTotal > 0 ? Number(row.text_weight ?? 0) / textTotal : 0;
  const relevance = TEXT_WEIGHT * text + TRIGRAM_WEIGHT * Number(row.trigram ?? 0);
  const aboutPerson = fact.subject.kind === "person" && people.has(fact.subject.personId);
  const aboutRoom = fact.subject.kind === "room" && fact.subject.roomId === roomId;
  const recentRank = row.recent_rank === null ? null : Number(row.recent_rank);
  const pinned = recentRank !== null && recentRank <= pinnedCount;
  if (relevance < MIN_RELEVANCE && !aboutRoom && !pinned) return null;
  const ageDays = Math.max(0, now - fact.validFrom.getTime()) / MS_PER_DAY;
  const recency = 2 ** (-ageDays / RECENCY_HALF_LIFE_DAYS);
  return {
    fact,
    score:
      relevance +
      (aboutPerson ? PERSON_BOOST : 0) +
      (aboutRoom ? ROOM_BOOST : 0) +
      RECENCY_WEIGHT * recency,
    pinned,
    tokens: estimateTokens(fact.content) + FACT_OVERHEAD_TOKENS,
  };
}

/** Pinned facts first, then the best; within `limit` and the token budget; best first. */
function select(candidates: readonly Scored[], limit: number, tokenBudget: number): Fact[] {
  const byScore = [...candidates].sort(
    (a, b) =>
      b.score - a.score ||
      b.fact.validFrom.getTime() - a.fact.validFrom.getTime() ||
      (a.fact.id < b.fact.id ? -1 : 1),
  );
  const chosen = new Set<Scored>();
  let budget = tokenBudget;
  for (const candidate of [...byScore.filter((each) => each.pinned), ...byScore]) {
    if (chosen.size >= limit) break;
    if (chosen.has(candidate) || candidate.tokens > budget) continue;
    chosen.add(candidate);
    budget -= candidate.tokens;
  }
  return byScore.filter((candidate) => chosen.has(candidate)).map((candidate) => candidate.fact);
}

/**
 * One statement: derive the query's lexemes, gather the candidate sets,
 * and compute each candidate's text and trigram inputs. The final read of
 * facts goes through row-level security by primary key: the candidate ids
 * are an array so that the plan is a key lookup per id whatever the row
 * estimates (a join could turn into a scan of the whole tenant).
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
text_hits as materialized (
  select hits.*
    from query,
         memory_fact_text_candidates(:agent, query.lexemes, :people::uuid[], :perTerm, :countCap,
                                     :maxPostings) hits
),
term_stats as materialized (
  select distinct term, ln(1 + :countCap::float8 / greatest(term_matches, 1)) as idf
    from text_hits
   where kind in ('lexeme', 'common')
),
any_lexeme as (
  select (select string_agg(quote_literal(lexeme), ' | ') from unnest(query.lexemes) lexeme)::tsquery as tsq
    from query
),
unmatched_words as (
  select coalesce(array_agg(word), '{}') as words
    from unnest(:words::text[]) word
   where not exists (select 1 from term_stats s
                      where to_tsvector('english', word) @@ quote_literal(s.term)::tsquery)
),
person_facts as materialized (
  select f.id, f.content, f.content_tsv,
         row_number() over (order by f.created_at desc, f.id) as recent_rank
    from facts f
   where f.subject_person_id = any(:persons::uuid[]) and f.valid_to is null
     and (f.agent_id is null or f.agent_id = :agent)
   order by f.created_at desc, f.id
   limit :personScan
),
about_people as (
  select p.id
    from person_facts p, any_lexeme, unmatched_words u
   where p.content_tsv @@ any_lexeme.tsq
      or exists (select 1 from unnest(u.words) word
                  where word_similarity(word, p.content) >= :minSimilarity)
   order by p.recent_rank
   limit :personText
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
  select fact_id as id from text_hits where fact_id is not null
  union select id from about_people
  union select id from person_facts where recent_rank <= :personRecent
  union select id from about_room
)
select ${FACT_COLUMNS.map((column) => `f.${column}`).join(", ")},
       (select sum(s.idf) from term_stats s
         where f.content_tsv @@ quote_literal(s.term)::tsquery) as text_weight,
       (select sum(s.idf) from term_stats s) as text_weight_total,
       case when p.id is not null or f.subject_room_id = :room then
         (select (max(similarity) + avg(similarity)) / 2
            from (select case when similarity >= :minSimilarity then similarity else 0 end as similarity
                    from (select word_similarity(word, f.content) as similarity
                            from unmatched_words u, unnest(u.words) word) raw) words)
       end as trigram,
       p.recent_rank
  from facts f
  left join person_facts p on p.id = f.id
 where f.id = any(array(select id from candidates))
   and f.valid_to is null
   and (f.agent_id is null or f.agent_id = :agent)
   and (:people::uuid[] is null or f.subject_person_id is null or f.subject_person_id = any(:people::uuid[]))
`;
