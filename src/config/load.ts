import { readFile } from "node:fs/promises";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { AppError } from "../shared/errors.ts";
import { ConfigSchema, type Config } from "./schema.ts";

/**
 * Environment variables that override config keys, and the key each sets.
 * The environment wins over the file so that containers and CI can adjust a
 * packaged config without editing it.
 */
export const ENV_OVERRIDES: Readonly<
  Record<string, { path: readonly string[]; type: "string" | "number" }>
> = {
  DATABASE_URL: { path: ["database", "url"], type: "string" },
  SWITCHBOARD_DATA_DIR: { path: ["dataDir"], type: "string" },
  LOG_LEVEL: { path: ["log", "level"], type: "string" },
  SWITCHBOARD_RUNTIME_HOST: { path: ["runtime", "host"], type: "string" },
  SWITCHBOARD_RUNTIME_PORT: { path: ["runtime", "port"], type: "number" },
  SWITCHBOARD_RUNTIME_URL: { path: ["runtime", "publicUrl"], type: "string" },
  SWITCHBOARD_SYNAPSE_DIR: { path: ["synapse", "chrootDir"], type: "string" },
  SWITCHBOARD_HOMESERVER_PORT: { path: ["embedded", "port"], type: "number" },
  SWITCHBOARD_PROVISIONING_DRIVER: { path: ["provisioning", "driver"], type: "string" },
  SWITCHBOARD_PORTAL_HOST: { path: ["portal", "host"], type: "string" },
  SWITCHBOARD_PORTAL_PORT: { path: ["portal", "port"], type: "number" },
  SWITCHBOARD_PORTAL_URL: { path: ["portal", "publicUrl"], type: "string" },
  SWITCHBOARD_BASE_DOMAIN: { path: ["portal", "baseDomain"], type: "string" },
  SWITCHBOARD_BRIDGES_PUBLIC_MEDIA_URL: { path: ["bridges", "publicMediaUrl"], type: "string" },
  SMTP_URL: { path: ["portal", "mail", "smtpUrl"], type: "string" },
  STRIPE_SECRET_KEY: { path: ["billing", "stripe", "secretKey"], type: "string" },
  STRIPE_WEBHOOK_SECRET: { path: ["billing", "stripe", "webhookSecret"], type: "string" },
  STRIPE_API_URL: { path: ["billing", "stripe", "apiUrl"], type: "string" },
  OPENAI_BASE_URL: { path: ["models", "openai", "baseUrl"], type: "string" },
  OPENAI_API_KEY: { path: ["models", "openai", "apiKey"], type: "string" },
  OPENAI_MODEL: { path: ["models", "openai", "defaultModel"], type: "string" },
  ANTHROPIC_BASE_URL: { path: ["models", "anthropic", "baseUrl"], type: "string" },
  ANTHROPIC_API_KEY: { path: ["models", "anthropic", "apiKey"], type: "string" },
  ANTHROPIC_MODEL: { path: ["models", "anthropic", "defaultModel"], type: "string" },
};

/** `SWITCHBOARD_MASTER_KEY` is `keyid:base64` (or just base64, id "env"). */
const MASTER_KEY_ENV = "SWITCHBOARD_MASTER_KEY";

type Json = Record<string, unknown>;

function setPath(target: Json, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const child = node[key];
    if (typeof child !== "object" || child === null || Array.isArray(child)) node[key] = {};
    node = node[key] as Json;
  }
  node[path[path.length - 1] as string] = value;
}

function applyEnv(raw: Json, env: NodeJS.ProcessEnv, origins: Map<string, string>): void {
  for (const [name, { path, type }] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    setPath(raw, path, type === "number" && /^\d+$/.test(value) ? Number(value) : value);
    origins.set(path.join("."), name);
  }
  const masterKey = env[MASTER_KEY_ENV];
  if (masterKey !== undefined && masterKey !== "") {
    const separator = masterKey.indexOf(":");
    const [id, key] =
      separator > 0
        ? [masterKey.slice(0, separator), masterKey.slice(separator + 1)]
        : ["env", masterKey];
    setPath(raw, ["secrets", "masterKeys"], {
      ...((raw.secrets as Json | undefined)?.masterKeys as Json | undefined),
      [id]: key,
    });
    setPath(raw, ["secrets", "activeKeyId"], id);
    origins.set(`secrets.masterKeys.${id}`, MASTER_KEY_ENV);
  }
  // The provider follows the key that is present, unless the file chose one.
  const models = raw.models as Json | undefined;
  if (models?.defaultProvider === undefined) {
    if (env.ANTHROPIC_API_KEY && !env.OPENAI_API_KEY && !env.OPENAI_BASE_URL) {
      setPath(raw, ["models", "defaultProvider"], "anthropic");
    }
  }
}

function formatIssues(
  issues: readonly z.core.$ZodIssue[],
  origins: Map<string, string>,
  source: string,
): string {
  const lines = issues.map((issue) => {
    const key = issue.path.map(String).join(".") || "(root)";
    const origin = origins.get(key);
    const where = origin === undefined ? key : `${key} (from ${origin})`;
    if (issue.code === "unrecognized_keys") {
      const prefix = issue.path.length > 0 ? `${key}.` : "";
      return `  ${issue.keys.map((k) => prefix + k).join(", ")}: unknown key`;
    }
    return `  ${where}: ${issue.message}`;
  });
  return `invalid configuration in ${source}:\n${lines.join("\n")}`;
}

/**
 * YAML to plain values; what the yaml library only warns about (an unknown
 * tag such as !!js/function, read as a plain string) is an error here.
 */
function parseStrictYaml(text: string): unknown {
  const document = parseDocument(text);
  const [problem] = [...document.errors, ...document.warnings];
  if (problem !== undefined) throw problem;
  return document.toJS();
}

/**
 * Parses configuration from a YAML text (may be empty) plus the environment.
 * Throws an AppError("bad_request") whose message names each wrong key.
 */
export function parseConfig(
  yamlText: string,
  env: NodeJS.ProcessEnv,
  source = "config",
): Readonly<Config> {
  let raw: unknown;
  try {
    raw = yamlText.trim() === "" ? {} : parseStrictYaml(yamlText);
  } catch (error) {
    throw new AppError("bad_request", `${source} is not valid YAML: ${(error as Error).message}`);
  }
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new AppError("bad_request", `${source} must be a YAML mapping at the top level`);
  }
  const origins = new Map<string, string>();
  applyEnv(raw as Json, env, origins);
  const result = ConfigSchema.safeParse(raw);
  if (!result.success)
    throw new AppError("bad_request", formatIssues(result.error.issues, origins, source));
  return deepFreeze(result.data);
}

/** Reads and parses a config file; `undefined` means defaults plus environment. */
export async function loadConfig(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Readonly<Config>> {
  if (file === undefined) return parseConfig("", env, "environment");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new AppError(
      "bad_request",
      `cannot read config file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  return parseConfig(text, env, file);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
