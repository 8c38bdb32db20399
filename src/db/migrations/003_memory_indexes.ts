import type { Knex } from "knex";
import { APP_ROLE } from "../tenant-transaction.ts";

/**
 * Indexes and one search function that keep memory retrieval fast at a
 * million facts per tenant (see src/memory/retrieval.ts).
 *
 * Why a function: under row-level security PostgreSQL refuses to use an
 * index for a condition whose operator is not LEAKPROOF, because the
 * condition would run before the tenant policy. The full-text operator
 * (`@@`) is not leakproof, so inside withTenant every text search became a
 * scan of the tenant's whole table (measured: 136 ms at 200k rows instead
 * of 0.1 ms). Marking built-in operators leakproof needs a superuser;
 * instead memory_fact_text_candidates runs as the tables' owner (SECURITY
 * DEFINER), applies the same tenant condition as the policy itself, and
 * returns only fact ids. Callers then read the facts through row-level
 * security as usual, so isolation never depends on this function alone.
 *
 * The trigram index over all facts goes: a word-similarity search through
 * it reads the posting lists of every trigram of the word, and common
 * trigrams ("our", "ing") list a good part of the table (measured at 1M
 * facts: 7 to 55 ms per word, growing with the table). Trigram similarity
 * is computed on the few hundred candidates instead (see retrieval.ts).
 */
export async function up(knex: Knex): Promise<void> {
  // Text search only ever looks at current facts: index just those, so
  // superseded and forgotten facts cost nothing however many accumulate.
  // (The 002 trigram index goes for good: see above.)
  await knex.raw("drop index if exists facts_tsv");
  await knex.raw("drop index if exists facts_trgm");
  await knex.raw(
    "create index facts_current_tsv on facts using gin (content_tsv) where valid_to is null",
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
    "revoke all on function memory_fact_text_candidates(uuid, text[], uuid[], integer, integer, integer) from public",
  );
  await knex.raw(
    `grant execute on function memory_fact_text_candidates(uuid, text[], uuid[], integer, integer, integer) to ${APP_ROLE}`,
  );
}

/**
 * memory_fact_text_candidates(agent, lexemes, people, per_term, count_cap, max_postings)
 * returns (fact_id, kind, term, term_matches) rows for the current tenant's
 * current facts visible to `agent` (shared, or private to it) and, when
 * `people` is not null, not about anyone else than those people:
 * - kind 'lexeme': up to per_term facts containing the full-text lexeme
 *   `term`; term_matches counts its matches up to count_cap (its rarity);
 * - kind 'common' (fact_id null): the lexeme is in more than max_postings
 *   facts by the column statistics (all tenants), so it is not searched
 *   alone; term_matches is that estimate;
 * - kind 'all': facts containing every searched lexeme that matched and
 *   every common one; kind 'rare': facts containing the two rarest
 *   searched lexemes (when 3 or more matched).
 *
 * Each set comes from the GIN index and stops at its LIMIT, and the cost of
 * a GIN search grows with its rarest lexeme's posting list (a lexeme in 5%
 * of 1M facts takes 20 ms to read), which max_postings bounds. The
 * function's settings keep the plans on that index: plans are generic and
 * cached per session, sequential and plain index scans are off (so a
 * generic plan cannot pick a scan of the whole tenant), and the tenant
 * condition is written so that no index serves it (a generic plan could
 * otherwise AND the GIN bitmap with a bitmap of all of a big tenant's rows).
 * Without statistics (before the first ANALYZE) every lexeme is searched.
 */
const CANDIDATES_FUNCTION = `
create or replace function memory_fact_text_candidates(
  p_agent_id uuid, p_lexemes text[], p_people uuid[],
  p_per_term integer, p_count_cap integer, p_max_postings integer
) returns table (fact_id uuid, kind text, term text, term_matches integer)
language plpgsql stable security definer
set search_path = pg_catalog, public
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
set enable_indexscan = off
as $fn$
#variable_conflict use_column
declare
  v_tenant uuid := nullif(current_setting('app.tenant_id', true), '')::uuid;
  v_elements text[];
  v_frequencies real[];
  v_rows real;
  v_estimate real;
  v_term text;
  v_ids uuid[];
  v_matched text[] := '{}';
  v_counts integer[] := '{}';
  v_common text[] := '{}';
  v_query tsquery;
begin
  if v_tenant is null or coalesce(cardinality(p_lexemes), 0) = 0 then
    return;
  end if;
  select s.most_common_elems::text::text[], s.most_common_elem_freqs
    into v_elements, v_frequencies
    from pg_stats s
   where s.schemaname = 'public' and s.tablename = 'facts' and s.attname = 'content_tsv';
  select c.reltuples into v_rows from pg_class c where c.oid = 'public.facts'::regclass;

  foreach v_term in array coalesce(p_lexemes, '{}') loop
    v_estimate := v_frequencies[array_position(v_elements, v_term)] * greatest(v_rows, 0);
    if v_estimate > p_max_postings then
      v_common := v_common || v_term;
      return query select null::uuid, 'common'::text, v_term, v_estimate::integer;
      continue;
    end if;
    v_query := quote_literal(v_term)::tsquery;
    v_ids := array(
      select f.id from facts f
       where f.content_tsv @@ v_query and f.valid_to is null
         and coalesce(f.tenant_id = v_tenant, false)
         and (f.agent_id is null or f.agent_id = p_agent_id)
         and (p_people is null or f.subject_person_id is null or f.subject_person_id = any(p_people))
       limit p_count_cap);
    if cardinality(v_ids) > 0 then
      v_matched := v_matched || v_term;
      v_counts := v_counts || cardinality(v_ids);
      return query select unnest(v_ids[1:p_per_term]), 'lexeme'::text, v_term, cardinality(v_ids);
    end if;
  end loop;

  -- A conjunction is as cheap as its rarest lexeme, so it needs a searched one.
  if cardinality(v_matched) >= 1 and cardinality(v_matched) + cardinality(v_common) >= 2 then
    v_query := (select string_agg(quote_literal(t), ' & ') from unnest(v_matched || v_common) t)::tsquery;
    return query
      select f.id, 'all'::text, null::text, null::integer from facts f
       where f.content_tsv @@ v_query and f.valid_to is null
         and coalesce(f.tenant_id = v_tenant, false)
         and (f.agent_id is null or f.agent_id = p_agent_id)
         and (p_people is null or f.subject_person_id is null or f.subject_person_id = any(p_people))
       limit p_per_term;
  end if;
  if cardinality(v_matched) >= 3 then
    v_query := (select string_agg(quote_literal(u.t), ' & ')
                  from (select t from unnest(v_matched, v_counts) as x(t, n) order by n, t limit 2) u
               )::tsquery;
    return query
      select f.id, 'rare'::text, null::text, null::integer from facts f
       where f.content_tsv @@ v_query and f.valid_to is null
         and coalesce(f.tenant_id = v_tenant, false)
         and (f.agent_id is null or f.agent_id = p_agent_id)
         and (p_people is null or f.subject_person_id is null or f.subject_person_id = any(p_people))
       limit p_per_term;
  end if;
end
$fn$`;
