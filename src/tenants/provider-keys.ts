import type { Knex } from "knex";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import type { ModelProviderName } from "../config/schema.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import type { SecretCipher } from "../secrets/cipher.ts";
import { badRequest } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";

const MIN_KEY_CHARS = 8;
const MAX_KEY_CHARS = 512;

/** Checks a key's shape without revealing it in the error. */
export function validateProviderKey(provider: ModelProviderName, key: string): string {
  const trimmed = key.trim();
  if (trimmed.length < MIN_KEY_CHARS || trimmed.length > MAX_KEY_CHARS || /\s/.test(trimmed)) {
    throw badRequest(
      `the ${provider} key must be ${String(MIN_KEY_CHARS)}-${String(MAX_KEY_CHARS)} characters without spaces`,
    );
  }
  // Keys travel in an HTTP header, so printable ASCII only; anything else (control
  // characters, a surrogate pair the hint would cut in half) is a paste gone wrong.
  if (!/^[\x21-\x7e]+$/.test(trimmed))
    throw badRequest(
      `the ${provider} key must be printable ASCII (no control or other characters)`,
    );
  return trimmed;
}

/** A tenant's own model keys (BYOK): stored encrypted, shown only as a hint, never returned. */
export class ProviderKeys {
  readonly #db: Knex;
  readonly #cipher: SecretCipher;

  constructor(db: Knex, cipher: SecretCipher) {
    this.#db = db;
    this.#cipher = cipher;
  }

  async set(
    tenantId: TenantId,
    provider: ModelProviderName,
    key: string,
    by: Actor,
  ): Promise<{ hint: string }> {
    const trimmed = validateProviderKey(provider, key);
    const hint = `…${trimmed.slice(-4)}`;
    const encrypted = this.#cipher.encrypt(trimmed);
    await withTenant(this.#db, tenantId, async (trx) => {
      await trx("provider_keys")
        .insert({ tenant_id: tenantId, provider, key_encrypted: encrypted, key_hint: hint })
        .onConflict(["tenant_id", "provider"])
        .merge({ key_encrypted: encrypted, key_hint: hint, created_at: trx.fn.now() });
      await auditLog.recordBy(trx, tenantId, by, "key.set", provider, { hint });
    });
    return { hint };
  }

  async remove(tenantId: TenantId, provider: ModelProviderName, by: Actor): Promise<boolean> {
    return withTenant(this.#db, tenantId, async (trx) => {
      const removed =
        (await trx("provider_keys").where({ provider }).delete(["provider"])).length > 0;
      if (removed) await auditLog.recordBy(trx, tenantId, by, "key.remove", provider);
      return removed;
    });
  }

  async list(tenantId: TenantId): Promise<{ provider: ModelProviderName; hint: string }[]> {
    const rows = (await withTenant(this.#db, tenantId, (trx) =>
      trx("provider_keys").orderBy("provider").select("provider", "key_hint"),
    )) as {
      provider: ModelProviderName;
      key_hint: string;
    }[];
    return rows.map((row) => ({ provider: row.provider, hint: row.key_hint }));
  }

  /** The stored key in plaintext, for a model call only. */
  async reveal(tenantId: TenantId, provider: ModelProviderName): Promise<string | undefined> {
    const row = (await withTenant(this.#db, tenantId, (trx) =>
      trx("provider_keys").where({ provider }).first("key_encrypted"),
    )) as { key_encrypted: string } | undefined;
    return row === undefined ? undefined : this.#cipher.decrypt(row.key_encrypted);
  }
}
