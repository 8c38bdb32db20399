/**
 * Retrieval latency at scale: fills one tenant of a fresh database with N
 * realistic-looking facts (generated in SQL), then times retrieveFacts over
 * a few hundred varied chat-like queries, inside real tenant transactions
 * (row-level security on, as in production).
 *
 *   node_modules/.bin/node bench/memory-retrieval.ts [--sizes 10000,100000,1000000]
 *     [--backend postgres|pglite|both] [--queries 300]
 */
import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import type { Knex } from "knex";
import type { DatabaseKind } from "../src/db/connect.ts";
import { withTenant } from "../src/db/tenant-transaction.ts";
import { retrieveFacts } from "../src/memory/retrieval.ts";
import type { AgentId, PersonId, RoomId, TenantId } from "../src/shared/ids.ts";
import { createTestDatabase } from "../test/support/database.ts";
import { writeLatest } from "./results.ts";

const FACTS_PER_PERSON = 20;
const ROOMS = 50;
const WARMUP_QUERIES = 20;
/** The neighbour tenant holds this share of the measured tenant's facts, so row-level security has work to do. */
const NEIGHBOUR_SHARE = 0.1;

const FIRST_NAMES = words(
  "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil Trent Uma Victor Walter " +
    "Xena Yusuf Zoe Amir Beatriz Chen Dmitri Esther Farah Goran Hana Ines Jonas Kenji Leila Mateo Nadia Oskar Priya Quentin " +
    "Rosa Samir Tamsin Ulrich Valeria Wen Ximena Yara Zaid Anouk Bram Chiara Dario Elif Femi Greta Hugo Ilse Jasper",
);
const DRINKS = words(
  "tea coffee espresso matcha cocoa lemonade kombucha cider lager stout juice smoothies water seltzer chai latte mocha rooibos kefir ginger-ale",
);
const FOODS = words(
  "peanuts shellfish gluten dairy eggs soy sesame strawberries kiwi mustard celery lupin walnuts almonds cashews pistachios " +
    "tomatoes mushrooms garlic onions avocado bananas chocolate cheese olives anchovies coriander spinach lentils chickpeas " +
    "sushi ramen tacos curry pizza pasta dumplings risotto paella falafel",
);
const CITIES = words(
  "Berlin Paris London Madrid Lisbon Rome Vienna Prague Warsaw Budapest Dublin Oslo Stockholm Helsinki Copenhagen Amsterdam " +
    "Brussels Zurich Geneva Munich Hamburg Milan Naples Barcelona Seville Porto Athens Istanbul Cairo Nairobi Lagos Accra " +
    "Toronto Montreal Vancouver Boston Chicago Denver Seattle Austin Portland Atlanta Miami Lima Bogota Santiago Quito " +
    "Tokyo Osaka Seoul Taipei Manila Jakarta Singapore Bangkok Hanoi Mumbai Delhi Sydney Melbourne Auckland",
);
const COUNTRIES = words(
  "Japan Peru Iceland Norway Chile Kenya Morocco Vietnam Portugal Greece Mexico Canada Argentina Nepal Scotland Ireland Brazil Egypt Jordan Georgia",
);
const INSTRUMENTS = words(
  "guitar piano violin cello trumpet saxophone drums flute clarinet bass ukulele harp banjo accordion trombone oboe mandolin harmonica",
);
const GENRES = words(
  "jazz rock blues folk punk metal funk soul reggae techno classical bluegrass swing indie",
);
const SPORTS = words(
  "running cycling swimming climbing tennis football basketball volleyball rowing skiing snowboarding surfing yoga pilates " +
    "boxing fencing golf badminton squash hiking sailing skating chess",
);
const HOBBIES = words(
  "astronomy gardening woodworking photography pottery knitting baking birdwatching calligraphy origami beekeeping " +
    "genealogy archaeology typography cartography robotics sourdough fermentation bouldering kayaking",
);
const LANGUAGES = words(
  "Spanish French German Italian Portuguese Japanese Korean Mandarin Arabic Hindi Swahili Dutch Polish Turkish Greek " +
    "Rust Python TypeScript Haskell Elixir Kotlin Swift Go Clojure OCaml",
);
const ROLES = words(
  "designer engineer accountant nurse teacher lawyer architect chef pharmacist analyst manager recruiter researcher " +
    "consultant translator editor photographer electrician plumber pilot librarian",
);
const COLOURS = words(
  "red orange yellow green blue purple teal navy maroon olive silver black white pink turquoise",
);
const PETS = words("dog cat parrot rabbit hamster tortoise goldfish ferret gecko canary");
const CARS = words("Volvo Toyota Fiat Tesla Skoda Honda Mazda Renault Peugeot Subaru");
const MONTHS = words(
  "January February March April May June July August September October November December",
);
const WEEKDAYS = words("Monday Tuesday Wednesday Thursday Friday Saturday Sunday");
const SYLLABLES = words(
  "ka lo mi ra ven tor sel dan qui bro zel fin gar mon pel rix sto tha ul vor wen xan yor zu bel cor dri eph fal gil hen ist jor kel lum mar nor osk pra rend",
);

/** Picks with a skew towards the head of the list, as real vocabularies are (a few words are everywhere). */
const FILL_FUNCTIONS = [
  `create or replace function bench_pick(items text[]) returns text language sql volatile as
   $$ select items[1 + floor(power(random(), 1.6) * array_length(items, 1))::int] $$`,
  `create or replace function bench_pseudo(syllables text[]) returns text language sql volatile as
   $$ select initcap(bench_pick(syllables) || bench_pick(syllables) ||
                     case when random() < 0.6 then bench_pick(syllables) else '' end) $$`,
];

// One of twenty shapes of fact, about person `p` (whose first name is names[p % n]).
const CONTENT_SQL = `
  case shape
    when 0 then first_name || ' prefers ' || bench_pick(:drinks) || ' over ' || bench_pick(:drinks)
    when 1 then first_name || ' works at ' || bench_pseudo(:syllables) || ' as a ' || bench_pick(:roles)
    when 2 then 'lives in ' || bench_pick(:cities)
    when 3 then 'my favourite colour is ' || bench_pick(:colours)
    when 4 then first_name || ' is allergic to ' || bench_pick(:foods)
    when 5 then 'has a ' || bench_pick(:pets) || ' named ' || bench_pseudo(:syllables)
    when 6 then 'plays the ' || bench_pick(:instruments) || ' in a ' || bench_pick(:genres) || ' band'
    when 7 then 'is learning ' || bench_pick(:languages)
    when 8 then 'visited ' || bench_pick(:cities) || ' in ' || bench_pick(:months)
    when 9 then first_name || '''s birthday is on ' || bench_pick(:months) || ' ' || (1 + g % 28)
    when 10 then 'enjoys ' || bench_pick(:sports) || ' on ' || bench_pick(:weekdays) || 's'
    when 11 then 'is working on project ' || bench_pseudo(:syllables) || ' with ' || bench_pick(:names)
    when 12 then 'cooks ' || bench_pick(:foods) || ' for friends on ' || bench_pick(:weekdays) || 's'
    when 13 then first_name || ' reads books about ' || bench_pick(:hobbies)
    when 14 then 'moved from ' || bench_pick(:cities) || ' to ' || bench_pick(:cities) || ' in ' || (2000 + g % 26)
    when 15 then 'my manager is ' || bench_pick(:names) || ' from the ' || bench_pseudo(:syllables) || ' team'
    when 16 then 'drives a ' || bench_pick(:colours) || ' ' || bench_pick(:cars)
    when 17 then first_name || ' speaks ' || bench_pick(:languages) || ' and ' || bench_pick(:languages)
    when 18 then 'does not eat ' || bench_pick(:foods) || ' since a trip to ' || bench_pick(:countries)
    else 'wants to visit ' || bench_pick(:countries) || ' to try ' || bench_pick(:hobbies)
  end`;

interface Run {
  backend: DatabaseKind;
  facts: number;
  fillSeconds: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  meanResults: number;
}

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "10000,100000,1000000" },
    backend: { type: "string", default: "postgres" },
    queries: { type: "string", default: "300" },
  },
});
const sizes = values.sizes.split(",").map((size) => Number.parseInt(size, 10));
const BACKEND_CHOICES: Readonly<Record<string, readonly DatabaseKind[]>> = {
  postgres: ["postgres"],
  pglite: ["pglite"],
  both: ["postgres", "pglite"],
};
const backends = BACKEND_CHOICES[values.backend];
const queryCount = Number.parseInt(values.queries, 10);
if (backends === undefined) throw new Error("--backend is postgres, pglite or both");
if (sizes.some((size) => !Number.isFinite(size) || size <= 0) || !(queryCount > 0)) {
  throw new Error(
    "--sizes takes positive integers (10000,100000) and --queries a positive integer",
  );
}

const runs: Run[] = [];
for (const backend of backends) {
  for (const size of sizes) {
    const run = await measure(backend, size);
    runs.push(run);
    console.log(JSON.stringify(run));
  }
}
console.log(
  `\nretrieveFacts latency (${queryCount} queries; ${new Date().toISOString().slice(0, 10)})`,
);
console.log("backend   facts       fill s   p50 ms   p95 ms   p99 ms   max ms   facts/query");
for (const run of runs) {
  console.log(
    [
      run.backend.padEnd(9),
      String(run.facts).padEnd(11),
      run.fillSeconds.toFixed(1).padStart(6),
      run.p50.toFixed(2).padStart(8),
      run.p95.toFixed(2).padStart(8),
      run.p99.toFixed(2).padStart(8),
      run.max.toFixed(2).padStart(8),
      run.meanResults.toFixed(1).padStart(13),
    ].join(" "),
  );
}

console.log(
  `figures: ${writeLatest(
    "memory",
    runs.flatMap((run) => {
      const key = `${run.backend}.facts=${String(run.facts)}`;
      return [
        { key: `${key}.fill`, value: run.fillSeconds, unit: "s", better: "lower" } as const,
        { key: `${key}.p50`, value: run.p50, unit: "ms", better: "lower" } as const,
        { key: `${key}.p99`, value: run.p99, unit: "ms", better: "lower" } as const,
      ];
    }),
  )}`,
);

async function measure(backend: DatabaseKind, size: number): Promise<Run> {
  const database = await createTestDatabase(backend);
  try {
    const knex = database.knex;
    const tenant = await insertTenant(knex, "bench");
    const agents = await insertAgents(knex, tenant);
    const neighbour = await insertTenant(knex, "neighbour");
    const neighbourAgents = await insertAgents(knex, neighbour);
    const people = Math.max(1, Math.round(size / FACTS_PER_PERSON));

    const started = performance.now();
    await fill(knex, [
      { tenant, agents, people, count: size, prefix: "p" },
      {
        tenant: neighbour,
        agents: neighbourAgents,
        people,
        count: Math.round(size * NEIGHBOUR_SHARE),
        prefix: "n",
      },
    ]);
    const fillSeconds = (performance.now() - started) / 1000;

    const random = seededRandom(42);
    const queries = Array.from({ length: WARMUP_QUERIES + queryCount }, () => ({
      agentId: agents[random() < 0.5 ? 0 : 1]!,
      personIds: [personUuid("p", 1 + Math.floor(random() * people)) as PersonId],
      roomId: `!room${Math.floor(random() * ROOMS)}:bench.test` as RoomId,
      text: chatMessage(random),
      limit: 20,
      tokenBudget: 600,
    }));
    const timings: number[] = [];
    let results = 0;
    for (const [index, query] of queries.entries()) {
      const elapsed = await withTenant(knex, tenant, async (trx) => {
        const start = performance.now();
        const facts = await retrieveFacts(trx, query);
        if (index >= WARMUP_QUERIES) results += facts.length;
        return performance.now() - start;
      });
      if (index >= WARMUP_QUERIES) timings.push(elapsed);
    }
    timings.sort((a, b) => a - b);
    return {
      backend,
      facts: size,
      fillSeconds,
      p50: percentile(timings, 0.5),
      p95: percentile(timings, 0.95),
      p99: percentile(timings, 0.99),
      max: timings[timings.length - 1] ?? 0,
      meanResults: results / timings.length,
    };
  } finally {
    await database.drop();
  }
}

interface Fill {
  readonly tenant: TenantId;
  readonly agents: readonly AgentId[];
  readonly people: number;
  readonly count: number;
  /** Person ids are md5(prefix || n)::uuid, so queries can name them. */
  readonly prefix: string;
}

/**
 * Inserts each tenant's people and facts, one statement each, with the
 * facts table's secondary indexes dropped during the inserts and rebuilt
 * afterwards (much faster than maintaining GIN indexes row by row).
 * Mix: 80% shared, 20% private to one of two agents; 90% about a person,
 * 6% about a room, 4% about the tenant; 10% already superseded.
 */
async function fill(knex: Knex, fills: readonly Fill[]): Promise<void> {
  await knex.transaction(async (trx) => {
    await trx.raw("set local maintenance_work_mem = '512MB'");
    await trx.raw("select setseed(0.42)");
    for (const sql of FILL_FUNCTIONS) await trx.raw(sql);
    const indexes = await trx.raw<{ rows: { name: string; definition: string }[] }>(
      `select indexname as name, indexdef as definition from pg_indexes
        where tablename = 'facts' and indexname <> 'facts_pkey'`,
    );
    for (const index of indexes.rows) await trx.raw(`drop index ${index.name}`);
    for (const each of fills) await fillTenant(trx, each);
    for (const index of indexes.rows) await trx.raw(index.definition);
  });
  await knex.raw("analyze facts");
  await knex.raw("analyze people");
}

async function fillTenant(trx: Knex.Transaction, fill: Fill): Promise<void> {
  const { tenant, agents, people, count, prefix } = fill;
  await trx.raw(
    `insert into people (id, tenant_id, display_name)
     select md5(? || g)::uuid, ?, 'Person ' || g from generate_series(1, ?) g`,
    [prefix, tenant, people],
  );
  await trx.raw(
    `insert into facts (tenant_id, agent_id, subject_kind, subject_person_id, subject_room_id,
                          content, source_kind, valid_from, valid_to, created_at)
       select :tenant::uuid,
              case agent_pick when 3 then :agentA::uuid when 7 then :agentB::uuid end,
              case when subject_pick < 45 then 'person' when subject_pick < 48 then 'room' else 'tenant' end,
              case when subject_pick < 45 then md5(:prefix || person)::uuid end,
              case when subject_pick between 45 and 47 then '!room' || room || ':bench.test' end,
              content, 'extraction', moment,
              case when g % 10 = 5 then moment + interval '1 day' end,
              moment
         from (select g, agent_pick, subject_pick, person, room,
                      now() - random() * interval '730 days' as moment,
                      ${CONTENT_SQL} as content
                 from (select g,
                              -- Independent choices per row, from differently salted hashes of g.
                              1 + (hashint4(g)::bigint & 2147483647) % :people as person,
                              (hashint4(g # 1431655765)::bigint & 2147483647) % 20 as shape,
                              (hashint4(g # 715827882)::bigint & 2147483647) % 50 as subject_pick,
                              (hashint4(g # 357913941)::bigint & 2147483647) % 10 as agent_pick,
                              (hashint4(g # 178956970)::bigint & 2147483647) % ${ROOMS} as room,
                              (:names::text[])[1 + (hashint4(g)::bigint & 2147483647) % :people % ${FIRST_NAMES.length}]
                                as first_name
                         from generate_series(1, :count) g) numbered) generated`,
    {
      tenant,
      agentA: agents[0]!,
      agentB: agents[1]!,
      prefix,
      people,
      count,
      names: FIRST_NAMES,
      drinks: DRINKS,
      foods: FOODS,
      cities: CITIES,
      countries: COUNTRIES,
      instruments: INSTRUMENTS,
      genres: GENRES,
      sports: SPORTS,
      hobbies: HOBBIES,
      languages: LANGUAGES,
      roles: ROLES,
      colours: COLOURS,
      pets: PETS,
      cars: CARS,
      months: MONTHS,
      weekdays: WEEKDAYS,
      syllables: SYLLABLES,
    },
  );
}

/** A chat message of the kind people send agents; some with typos, some about nothing stored. */
function chatMessage(random: () => number): string {
  const pick = (items: readonly string[]) => items[Math.floor(random() ** 1.6 * items.length)]!;
  const pseudo = () =>
    capitalise(pick(SYLLABLES) + pick(SYLLABLES) + (random() < 0.6 ? pick(SYLLABLES) : ""));
  const shapes = [
    () => `what's my favourite colour again?`,
    () => `does anyone here play the ${pick(INSTRUMENTS)}?`,
    () => `I'm flying to ${pick(CITIES)} next month, any tips for food?`,
    () => `what was the name of my ${pick(PETS)}?`,
    () => `who is working on project ${pseudo()} these days?`,
    () => `can you suggest a ${pick(DRINKS)} place near the office`,
    () => `is ${pick(FIRST_NAMES)} allergic to ${pick(FOODS)}? planning a dinner`,
    () => `remind me when ${pick(FIRST_NAMES)}'s birthday is`,
    () => `I want to get better at ${pick(SPORTS)}, how should I train on ${pick(WEEKDAYS)}s?`,
    () => `any good books on ${pick(HOBBIES)}?`,
    () => `help me write an email to my manager about the ${pseudo()} release`,
    () => `translate "good morning" into ${pick(LANGUAGES)}`,
    () => `what car do I drive?`,
    () => `thanks!`,
    () => `ok`,
    () => `summarise the discussion above please`,
    () => `where did I move from and when?`,
    () => `which ${pick(GENRES)} bands do people here play in`,
    () => `I'm thinking of visiting ${pick(COUNTRIES)} to try ${pick(HOBBIES)}, who else wants to?`,
    () => `does ${pick(FIRST_NAMES)} speak ${pick(LANGUAGES)}?`,
  ];
  const message = shapes[Math.floor(random() * shapes.length)]!();
  return random() < 0.2 ? withTypo(message, random) : message;
}

function withTypo(message: string, random: () => number): string {
  const parts = message.split(" ");
  const candidates = parts.flatMap((word, index) => (word.length >= 5 ? [index] : []));
  if (candidates.length === 0) return message;
  const index = candidates[Math.floor(random() * candidates.length)]!;
  const word = parts[index]!;
  const at = 1 + Math.floor(random() * (word.length - 2));
  parts[index] = word.slice(0, at) + word.slice(at + 1);
  return parts.join(" ");
}

async function insertTenant(knex: Knex, slug: string): Promise<TenantId> {
  const [row] = await knex("tenants").insert({ slug, name: slug }).returning("id");
  return (row as { id: TenantId }).id;
}

async function insertAgents(knex: Knex, tenant: TenantId): Promise<AgentId[]> {
  const rows = await knex("agents")
    .insert(
      ["ada", "bert"].map((name) => ({
        tenant_id: tenant,
        name,
        display_name: name,
        provider: "openai",
        model: "x",
      })),
    )
    .returning("id");
  return (rows as { id: AgentId }[]).map((row) => row.id);
}

/** The uuid PostgreSQL's md5(prefix || n)::uuid gives. */
function personUuid(prefix: string, n: number): string {
  const hex = createHash("md5").update(`${prefix}${n}`).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function percentile(sorted: readonly number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? 0;
}

function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function words(text: string): string[] {
  return text.split(" ");
}

function capitalise(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
