import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { stringify as toYaml } from "yaml";
import { ENV_OVERRIDES, parseConfig } from "../../src/config/load.ts";
import { isAppError } from "../../src/shared/errors.ts";

const KEY = Buffer.alloc(32, 7).toString("base64");
const TOP_KEYS = [
  "dataDir",
  "log",
  "database",
  "secrets",
  "runtime",
  "portal",
  "plans",
  "defaultPlan",
  "models",
  "billing",
  "bridges",
  "embedded",
  "synapse",
  "provisioning",
  "__proto__",
  "constructor",
];
const INNER_KEYS = [
  "level",
  "url",
  "port",
  "host",
  "publicUrl",
  "masterKeys",
  "activeKeyId",
  "free",
  "stripe",
  "openai",
  "defaultProvider",
  "driver",
  "poolMax",
  "__proto__",
];

const junk = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string({ unit: "binary", maxLength: 80 }));
const section = fc.oneof(fc.dictionary(fc.constantFrom(...INNER_KEYS), junk, { maxKeys: 4 }), junk);
const document = fc.dictionary(fc.constantFrom(...TOP_KEYS), section, { maxKeys: 5 });
const yamlTricks = fc.constantFrom(
  "a: &x [*x]\n",
  "a: &a [1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
  "runtime: !!js/function 'function () {}'\n",
  "<<: {runtime: {port: 1}}\n",
  "? [a]\n: b\n",
  "runtime:\n  port: 9000\n  port: 9001\n",
  "%YAML 9.9\n---\na: 1\n",
  "- a\n- b\n",
  "'just a string'\n",
  "---\na: 1\n---\nb: 2\n",
  "[".repeat(10_000) + "]".repeat(10_000),
  "a:\n" + "  - ".repeat(5_000) + "x\n",
  "secrets: {masterKeys: {__proto__: " + KEY + "}, activeKeyId: __proto__}\n",
);
const text = fc.oneof(
  document.map((value) => JSON.stringify(value)),
  document.map((value) => toYaml(value)),
  yamlTricks,
  fc.string({ unit: "binary", maxLength: 200 }),
);
const envValue = fc.oneof(
  fc.string({ unit: "binary", maxLength: 60 }),
  fc.constantFrom("0", "65536", "99999999999999999999", "-1", "1e3", "9000", "postgres://x/y"),
  fc.constantFrom(`k1:${KEY}`, KEY, ":x", "__proto__:" + KEY, `constructor:${KEY}`),
);
const env = fc.dictionary(
  fc.constantFrom(...Object.keys(ENV_OVERRIDES), "SWITCHBOARD_MASTER_KEY"),
  envValue,
  { maxKeys: 4 },
);

/** A returned config is frozen all the way down: never a half-built object. */
function expectDeepFrozen(value: unknown): void {
  if (typeof value !== "object" || value === null) return;
  expect(Object.isFrozen(value)).toBe(true);
  for (const child of Object.values(value)) expectDeepFrozen(child);
}

/** An error is an AppError("bad_request") whose every line names a key (or says the file is not YAML). */
function expectClearError(error: unknown): void {
  if (!isAppError(error)) throw error;
  expect(error.code).toBe("bad_request");
  const [head, ...lines] = error.message.split("\n");
  if (/is not valid YAML|must be a YAML mapping/.test(head ?? "")) return;
  expect(head).toMatch(/^invalid configuration in test\.yaml:$/);
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) expect(line).toMatch(/^ {2}[^\s:][^\n]*: \S/);
}

// Regression: an unknown tag was only a process warning, and the value was read as a string.
it("refuses an unknown YAML tag instead of warning and reading it as a string", () => {
  expect(() => parseConfig("dataDir: !!js/function 'function () {}'\n", {}, "test.yaml")).toThrow(
    /test\.yaml is not valid YAML: .*tag/,
  );
});

describe("parseConfig on arbitrary documents and environments", () => {
  it("returns a frozen config or throws a bad_request naming each wrong key", () => {
    fc.assert(
      fc.property(text, env, (yamlText, environment) => {
        let config: unknown;
        try {
          config = parseConfig(yamlText, environment, "test.yaml");
        } catch (error) {
          expectClearError(error);
          return;
        }
        expectDeepFrozen(config);
      }),
      { numRuns: 1500 },
    );
  });

  it("names the environment variable a wrong value came from", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(
          "SWITCHBOARD_RUNTIME_PORT",
          "SWITCHBOARD_PORTAL_PORT",
          "SWITCHBOARD_HOMESERVER_PORT",
        ),
        fc.oneof(
          fc.constantFrom("0", "65536", "99999999999999999999", "x"),
          fc.string({ minLength: 1 }),
        ),
        (name, value) => {
          fc.pre(!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 65535);
          try {
            parseConfig("", { [name]: value }, "test.yaml");
          } catch (error) {
            expectClearError(error);
            expect((error as Error).message).toContain(`(from ${name})`);
            return;
          }
          throw new Error(`${name}=${value} was accepted`);
        },
      ),
      { numRuns: 300 },
    );
  });
});
