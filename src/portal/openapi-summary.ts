/** A JSON Schema node as it appears in the OpenAPI document (loosely typed on purpose). */
type Schema = Readonly<Record<string, unknown>>;

export interface OperationSummary {
  readonly method: string;
  readonly path: string;
  readonly summary: string;
  readonly parameters: readonly {
    readonly name: string;
    readonly in: string;
    readonly required: boolean;
    readonly type: string;
    readonly description: string;
  }[];
  /** The request body's shape in one line, or null when it takes none. */
  readonly requestBody: string | null;
  readonly responses: readonly { readonly status: string; readonly type: string }[];
}

export interface TagSummary {
  readonly tag: string;
  readonly operations: readonly OperationSummary[];
}

const MAX_DEPTH = 3;
const MAX_CHARS = 600;
const METHODS = ["get", "post", "put", "patch", "delete"] as const;

function isSchema(value: unknown): value is Schema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A JSON Schema as one readable line: `{ email: string, name?: string }`,
 * `string[]`, `"a" | "b"`, `integer | null`. Deep or long shapes are cut
 * (`{…}`), since the page is a summary and openapi.json has the rest.
 */
export function schemaSummary(schema: unknown, components: Schema = {}, depth = 0): string {
  const text = summarise(schema, components, depth);
  return text.length > MAX_CHARS ? `${text.slice(0, MAX_CHARS - 1)}…` : text;
}

function summarise(schema: unknown, components: Schema, depth: number): string {
  if (!isSchema(schema)) return "any";
  const ref = schema.$ref;
  if (typeof ref === "string") {
    const name = ref.split("/").pop() ?? ref;
    const target = components[name];
    return depth >= MAX_DEPTH || target === undefined ? name : summarise(target, components, depth);
  }
  if ("const" in schema) return JSON.stringify(schema.const);
  if (Array.isArray(schema.enum))
    return schema.enum.map((value) => JSON.stringify(value)).join(" | ");
  for (const key of ["anyOf", "oneOf"] as const) {
    const options = schema[key];
    if (Array.isArray(options))
      return [...new Set(options.map((option) => summarise(option, components, depth)))].join(
        " | ",
      );
  }
  if (Array.isArray(schema.allOf))
    return schema.allOf.map((part) => summarise(part, components, depth)).join(" & ");
  const type = schema.type;
  if (Array.isArray(type))
    return type
      .map((one: unknown) => summarise({ ...schema, type: one }, components, depth))
      .join(" | ");
  if (type === "array") return `${wrap(summarise(schema.items, components, depth + 1))}[]`;
  if (type === "object" || isSchema(schema.properties)) {
    const properties = isSchema(schema.properties) ? schema.properties : {};
    const names = Object.keys(properties);
    if (names.length === 0)
      return isSchema(schema.additionalProperties)
        ? `{ [key]: ${summarise(schema.additionalProperties, components, depth + 1)} }`
        : "object";
    if (depth >= MAX_DEPTH) return "{…}";
    const required = new Set(Array.isArray(schema.required) ? schema.required : []);
    const fields = names.map(
      (name) =>
        `${name}${required.has(name) ? "" : "?"}: ${summarise(properties[name], components, depth + 1)}`,
    );
    return `{ ${fields.join(", ")} }`;
  }
  if (typeof type === "string") {
    const format = typeof schema.format === "string" ? `(${schema.format})` : "";
    return `${type}${format}`;
  }
  return "any";
}

function wrap(text: string): string {
  return text.includes(" | ") ? `(${text})` : text;
}

/** The operations of an OpenAPI document grouped by their first tag, tags and paths sorted. */
export function summariseOpenApi(document: unknown): TagSummary[] {
  const doc = isSchema(document) ? document : {};
  const paths = isSchema(doc.paths) ? doc.paths : {};
  const components =
    isSchema(doc.components) && isSchema(doc.components.schemas) ? doc.components.schemas : {};
  const byTag = new Map<string, OperationSummary[]>();
  for (const path of Object.keys(paths).sort()) {
    const item = paths[path];
    if (!isSchema(item)) continue;
    for (const method of METHODS) {
      const operation = item[method];
      if (!isSchema(operation)) continue;
      const tags = Array.isArray(operation.tags) ? operation.tags : [];
      const tag = typeof tags[0] === "string" ? tags[0] : "other";
      const parameters = (Array.isArray(operation.parameters) ? operation.parameters : [])
        .filter(isSchema)
        .map((parameter) => ({
          name: String(parameter.name),
          in: String(parameter.in),
          required: parameter.required === true,
          type: schemaSummary(parameter.schema, components),
          description: typeof parameter.description === "string" ? parameter.description : "",
        }));
      const body = isSchema(operation.requestBody) ? operation.requestBody.content : undefined;
      const bodySchema = isSchema(body) ? Object.values(body).find(isSchema)?.schema : undefined;
      const responses = isSchema(operation.responses) ? operation.responses : {};
      const list = byTag.get(tag) ?? [];
      list.push({
        method: method.toUpperCase(),
        path,
        summary: typeof operation.summary === "string" ? operation.summary : "",
        parameters,
        requestBody: bodySchema === undefined ? null : schemaSummary(bodySchema, components),
        responses: Object.entries(responses).map(([status, response]) => {
          const content = isSchema(response) ? response.content : undefined;
          const schema = isSchema(content)
            ? Object.values(content).find(isSchema)?.schema
            : undefined;
          return {
            status,
            type:
              schema === undefined
                ? isSchema(response) && typeof response.description === "string"
                  ? response.description
                  : "no body"
                : schemaSummary(schema, components),
          };
        }),
      });
      byTag.set(tag, list);
    }
  }
  return [...byTag.keys()].sort().map((tag) => ({ tag, operations: byTag.get(tag) ?? [] }));
}
