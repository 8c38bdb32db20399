import fc from "fast-check";
import type { Knex } from "knex";

/** The part of JSON Schema the portal's OpenAPI document uses (zod's output). */
export interface JsonSchema {
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
}

/** Values of the wrong shape for anything: nulls, arrays, nesting, huge and odd strings. */
export const junkValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(null, [], {}, "", " ", 0, -1, 1e308, true, "null", "\u0000", "\ud800"),
  fc.constantFrom("x".repeat(100_000), "ä".repeat(5_000), "<script>alert(1)</script>"),
  fc.string({ unit: "binary", maxLength: 80 }),
);

/** A value for a field of `schema`: often plausible, sometimes of the wrong kind. */
function fieldValue(schema: JsonSchema): fc.Arbitrary<unknown> {
  const types = [schema.type ?? []].flat();
  const plausible: fc.Arbitrary<unknown>[] = [];
  if (schema.enum !== undefined && schema.enum.length > 0)
    plausible.push(fc.constantFrom(...schema.enum));
  if (types.includes("string"))
    plausible.push(
      fc.stringMatching(/^[a-z][a-z0-9-]{1,20}$/),
      fc.string({ maxLength: (schema.maxLength ?? 40) + 5 }),
      fc.constantFrom("a@example.org", "openai", "admin", "member", "sk-aaaaaaaaaaaaaaaa"),
      // PostgreSQL cannot store a NUL: it must be refused before the database.
      fc.stringMatching(/^[a-z]{1,8}$/).map((text) => `${text}\u0000`),
      // A lone surrogate: JSON.stringify keeps it as an escape that jsonb refuses.
      fc.stringMatching(/^[a-z]{3,8}$/).map((text) => `${text}\ud800`),
      fc.stringMatching(/^[a-z]{3,8}$/).map((text) => `\udc00${text}`),
    );
  if (types.includes("integer") || types.includes("number"))
    plausible.push(fc.integer({ min: -5, max: 2000 }), fc.double());
  if (types.includes("boolean")) plausible.push(fc.boolean());
  if (types.includes("array") && schema.items !== undefined)
    plausible.push(fc.array(fieldValue(schema.items), { maxLength: 3 }));
  for (const option of [...(schema.anyOf ?? []), ...(schema.oneOf ?? [])])
    plausible.push(fieldValue(option));
  return plausible.length === 0 ? junkValue : fc.oneof(...plausible, junkValue);
}

/** Raw JSON texts that break parsers: deep, huge, prototype-polluting, not JSON at all. */
const NASTY_TEXTS = [
  "[".repeat(10_000) + "]".repeat(10_000),
  '{"a":'.repeat(10_000) + "1" + "}".repeat(10_000),
  `{"name":"${"a".repeat(1_000_000)}"}`,
  '{"__proto__":{"isAdmin":true},"constructor":{"prototype":{"isAdmin":true}}}',
  '{"name":"x","__proto__":{"role":"owner"}}',
  '"\\ud800"',
  "null",
  "[]",
  "",
  "{",
  '{"name":1}{"name":2}',
  "\u0000",
];

/**
 * JSON text for a request body meant for `schema`: arbitrary JSON, objects
 * with the schema's keys holding plausible or wrong values (and extra or
 * prototype keys), or nasty raw texts.
 */
export function hostileJsonText(schema: JsonSchema): fc.Arbitrary<string> {
  const properties = schema.properties ?? {};
  const keys = Object.keys(properties);
  const shaped =
    keys.length === 0
      ? fc.dictionary(fc.string({ maxLength: 10 }), junkValue, { maxKeys: 3 })
      : fc
          .tuple(
            fc.record(
              Object.fromEntries(keys.map((key) => [key, fieldValue(properties[key] ?? {})])),
              { requiredKeys: [] },
            ),
            fc.dictionary(fc.constantFrom("extra", "__proto__", "constructor", "id"), junkValue, {
              maxKeys: 2,
            }),
          )
          .map(([known, extra]) => ({ ...extra, ...known }));
  return fc.oneof(
    { weight: 5, arbitrary: shaped.map((value) => JSON.stringify(value)) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)) },
    { weight: 1, arbitrary: fc.constantFrom(...NASTY_TEXTS) },
  );
}

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

/** Whether `value` satisfies `schema` (the keywords listed in JsonSchema; formats are not checked). */
export function conformsTo(schema: JsonSchema | undefined, value: unknown): boolean {
  if (schema === undefined) return true;
  if (schema.anyOf !== undefined && !schema.anyOf.some((s) => conformsTo(s, value))) return false;
  if (schema.oneOf !== undefined && !schema.oneOf.some((s) => conformsTo(s, value))) return false;
  if (schema.const !== undefined && value !== schema.const) return false;
  if (schema.enum !== undefined && !schema.enum.includes(value)) return false;
  const types = [schema.type ?? []].flat();
  const actual = typeOf(value);
  if (
    types.length > 0 &&
    !types.includes(actual) &&
    !(actual === "integer" && types.includes("number"))
  )
    return false;
  if (typeof value === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) return false;
    if (schema.maxLength !== undefined && value.length > schema.maxLength) return false;
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, "u").test(value)) return false;
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) return false;
    if (schema.maximum !== undefined && value > schema.maximum) return false;
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) return false;
    if (schema.maxItems !== undefined && value.length > schema.maxItems) return false;
    if (!value.every((item) => conformsTo(schema.items, item))) return false;
  }
  if (actual === "object") {
    const object = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!Object.hasOwn(object, key)) return false;
    for (const [key, child] of Object.entries(object)) {
      const declared = schema.properties?.[key];
      if (declared !== undefined) {
        if (!conformsTo(declared, child)) return false;
      } else if (schema.additionalProperties === false) return false;
    }
  }
  return true;
}

/** Columns every read may touch (a token's last use): not data a refused request wrote. */
const VOLATILE_COLUMNS = ["last_used_at", "last_seen_at"];
const UNWATCHED_TABLES = ["knex_migrations", "knex_migrations_lock", "sessions"];

/**
 * A digest per table of every row (volatile columns left out), in one query:
 * equal snapshots before and after a refused request mean it wrote nothing.
 */
export async function tenantSnapshot(knex: Knex): Promise<Record<string, string>> {
  const tables = (await knex("information_schema.tables")
    .where({ table_schema: "public", table_type: "BASE TABLE" })
    .whereNotIn("table_name", UNWATCHED_TABLES)
    .orderBy("table_name")
    .pluck("table_name")) as string[];
  const minus = VOLATILE_COLUMNS.map((column) => ` - '${column}'`).join("");
  const sql = tables
    .map(
      (table) =>
        `select '${table}' as name, md5(coalesce(string_agg(x::text, ',' order by x::text), '')) as digest from (select to_jsonb(r)${minus} as x from "${table}" r) s`,
    )
    .join(" union all ");
  const result = (await knex.raw(sql)) as { rows: { name: string; digest: string }[] };
  return Object.fromEntries(result.rows.map((row) => [row.name, row.digest]));
}
