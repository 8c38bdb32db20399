import type { Knex } from "knex";
import { APP_ROLE } from "../tenant-transaction.ts";

/**
 * Indexes and one search function that keep memory retrieval fast at a
 * million facts per tenant (see src/memory/retrieval.ts).
 *
 * Why a function: under row-level security PostgreSQL refuses to use an
 * index for a condition whose operator is not LEAKPROOF, because the
 * condition would run before the tenant policy. The full-text (`@@`) and
 * trigram (`%>`) operators are not leakproof, so inside withTenant every
 * text search became a scan of the tenant's whole table (measured: 136 ms at
 * 200k rows instead of 0.1 ms). Marking built-in operators leakproof needs a
 * superuser; instead memory_fact_text_candidates runs as the tables' owner
 * (SECURITY DEFINER), applies the same tenant condition as the policy
 * itself, and returns only fact ids. Callers then read the facts through
 * row-level security as usual, so isolation never depends on this function
 * alone.
 */
export async function up(knex: Knex): Promise<void> {
  // Text search only ever looks at current facts: index just those, so
  // superseded and forgotten facts cost nothing however many accumulate.
  await knex.raw("drop index if exists facts_tsv");
  await knex.raw("drop index if exists facts_trgm");
  await knex.raw(
    "create index facts_current_tsv on facts using gin (content_tsv) where valid_to is null",
  );
  await knex.raw(
    "create index facts_current_trgm on facts using gin (content gin_trgm_ops) where valid_to is null",
  );
  await knex.raw(
    `create index facts_current_by_room on facts (tenant_id, subject_room_id, created_at desc)
       where valid_to is null and subject_room_id is not null`,
  );
  // Supersession looks up the current fact with a key; person facts use facts_current_by_person.
  await knex.raw(
    "create index facts_current_by_key on facts (tenant_id, key) where valid_to is null and key is not null",
  );
  // Merging, erasing and exporting a person touch all of their facts, past ones too.
  await knex.raw(
    "create index facts_by_person on facts (tenant_id, subject_person_id) where subject_person_id is not null",
  );

  await knex.raw(
    `create index messages_thread_recent on messages (tenant_id, room_id, thread_root_id, sent_at desc)
       where thread_root_id is not null`,
  );
  await knex.raw(
    "create index messages_by_person on messages (tenant_id, person_id, sent_at) where person_id is not null",
  );

  await knex.raw(CANDIDATES_FUNCTION);
  await knex.raw(
    "revoke all on function memory_fact_text_candidates(uuid, text[], text[], integer, integer) from public",
  );
  await knex.raw(
    `grant execute on function memory_fact_text_candidates(uuid, text[], text[], integer, integer) to ${APP_ROLE}`,
  );
}

/**
 * memory_fact_text_candidates(agent, lexemes, words, per_term, count_cap)
 * returns (fact_id, kind, term, term_matches) rows for the current tenant's
 * current facts visible to `agent` (shared, or private to it):
 * - kind 'lexeme': up to per_term facts containing each full-text lexeme;
 *   term_matches counts its matches up to count_cap (a rarity measure);
 * - kind 'all': facts containing every lexeme that matched anything, and
 *   kind 'rare': facts containing the two rarest of them (when 3 or more);
 * - kind 'trigram': up to per_term facts with a word similar to each word
 *   (pg_trgm word similarity, catches spelling variants and typos).
 * Every set is fetched through a GIN index and cut by LIMIT, so the cost is
 * bounded whatever the table size. Statements are EXECUTEd so each gets a
 * plan for its actual values (a generic plan could scan the tenant).
 */
const CANDIDATES_FUNCTION = `
create or replace function memory_fact_text_candidates(
  p_agent_id uuid, p_lexemes text[], p_words text[], p_per_term integer, p_count_cap integer
) returns table (fact_id uuid, kind text, term text, term_matches integer)
language plpgsql stable security definer
set search_path = pg_catalog, public
as $fn$
declare
  v_tenant uuid := nullif(current_setting('app.tenant_id', true), '')::uuid;
  v_visible constant text :=
    'f.tenant_id = $1 and f.valid_to is null and (f.agent_id is null or f.agent_id = $2)';
  v_term text;
  v_ids uuid[];
  v_matched text[] := '{}';
  v_counts integer[] := '{}';
  v_query tsquery;
begin
  if v_tenant is null then
    return;
  end if;

  foreach v_term in array coalesce(p_lexemes, '{}') loop
    execute 'select array(select f.id from facts f where ' || v_visible
      || ' and f.content_tsv @@ $3 limit $4)'
      into v_ids using v_tenant, p_agent_id, quote_literal(v_term)::tsquery, p_count_cap;
    if cardinality(v_ids) > 0 then
      v_matched := v_matched || v_term;
      v_counts := v_counts || cardinality(v_ids);
      return query select unnest(v_ids[1:p_per_term]), 'lexeme'::text, v_term, cardinality(v_ids);
    end if;
  end loop;

  if cardinality(v_matched) >= 2 then
    v_query := (select string_agg(quote_literal(t), ' & ') from unnest(v_matched) t)::tsquery;
    return query execute 'select f.id, ''all''::text, null::text, null::integer from facts f where '
      || v_visible || ' and f.content_tsv @@ $3 limit $4'
      using v_tenant, p_agent_id, v_query, p_per_term;
  end if;
  if cardinality(v_matched) >= 3 then
    v_query := (select string_agg(quote_literal(u.t), ' & ')
                from (select t from unnest(v_matched, v_counts) as x(t, n) order by n, t limit 2) u)::tsquery;
    return query execute 'select f.id, ''rare''::text, null::text, null::integer from facts f where '
      || v_visible || ' and f.content_tsv @@ $3 limit $4'
      using v_tenant, p_agent_id, v_query, p_per_term;
  end if;

  foreach v_term in array coalesce(p_words, '{}') loop
    return query execute 'select f.id, ''trigram''::text, $3, null::integer from facts f where '
      || v_visible || ' and f.content %> $3 limit $4'
      using v_tenant, p_agent_id, v_term, p_per_term;
  end loop;
end
$fn$`;
