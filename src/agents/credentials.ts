import type { Knex } from "knex";
import type { Config } from "../config/schema.ts";
import type { ModelCredentials } from "../models/types.ts";
import type { SecretCipher } from "../secrets/cipher.ts";
import type { Agent } from "./types.ts";

/**
 * OpenAI-compatible servers such as Ollama or llama.cpp accept any key; the
 * SDK insists on one, so a configured base URL without a key uses this.
 */
const KEYLESS_PLACEHOLDER = "no-key-required";

export type CredentialsResult =
  | { readonly ok: true; readonly credentials: ModelCredentials }
  | { readonly ok: false; readonly reason: string };

/**
 * The key that pays for an agent's model: the tenant's own key (stored
 * encrypted) or the operator's managed key from config. A missing key is
 * not an error but an explanation to post in the room.
 */
export async function resolveCredentials(
  trx: Knex.Transaction,
  agent: Agent,
  models: Config["models"],
  cipher: SecretCipher,
): Promise<CredentialsResult> {
  const managed = models[agent.provider];
  const baseUrl = agent.baseUrl ?? managed.baseUrl;
  if (agent.keySource === "own") {
    const row = (await trx("provider_keys").where({ provider: agent.provider }).first()) as
      { key_encrypted: string } | undefined;
    if (row === undefined) {
      return {
        ok: false,
        reason: `${agent.displayName} is set to use your own ${agent.provider} key, but none is stored. A tenant admin can add one.`,
      };
    }
    return { ok: true, credentials: { apiKey: cipher.decrypt(row.key_encrypted), baseUrl } };
  }
  if (managed.apiKey !== undefined)
    return { ok: true, credentials: { apiKey: managed.apiKey, baseUrl } };
  if (
    agent.provider === "openai" &&
    (agent.baseUrl !== null || models.openai.baseUrl !== "https://api.openai.com/v1")
  ) {
    return { ok: true, credentials: { apiKey: KEYLESS_PLACEHOLDER, baseUrl } };
  }
  return {
    ok: false,
    reason:
      `No model is configured for ${agent.displayName} yet. The operator can start Switchboard with ` +
      "OPENAI_API_KEY (and optionally OPENAI_BASE_URL for any OpenAI-compatible server such as Ollama) " +
      "or ANTHROPIC_API_KEY set, and the agent will answer.",
  };
}
