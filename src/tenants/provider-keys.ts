import type { Knex } from "knex";
import type { ModelProviderName } from "../config/schema.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import type { SecretCipher } from "../secrets/cipher.ts";
import { badRequest } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";

const MAX_KEY_CHARS = 512;

/** A tenant's own model keys (BYOK): stored encrypted, shown only as a hint, never returned. */
export class ProviderKeys {
  readonly #db: Knex;
  readonly #cipher: SecretCipher;

  constructor(db: Knex, cipher: SecretCipher) {
    this.#db = db;
    this.#cipher = cipher;
  }

  async set(tenantId: TenantId, provider: ModelProviderName, key: string): Promise<{ hint: string }> {
    const trimmed = key.trim();
    if (trimmed.length < 8 || trimmed.length > MAX_KEY_CHARS || /\s/.test(trimmed)) {
      throw badRequest(`the ${provider} key must be 8-${MAX_KEY_CHARS} characters without spaces`);
    }
    const hint = `…${trimmed.slice(-4)}`;
    await withTenant(this.#db, tenantId, (trx) =>
      trx("provider_keys")
        .insert({ tenant_id: tenantId, provider, key_encrypted: this.#cipher.encrypt(trimmed), key_hint: hint })
        .onConflict(["tenant_id", "provider"])
        .merge({ key_encrypted: this.#cipher.encrypt(trimmed), key_hint: hint, created_at: trx.fn.now() }),
    );
    return { hint };
  }

  async remove(tenantId: TenantId, provider: ModelProviderName): Promise<boolean> {
    return (await withTenant(this.#db, tenantId, (trx) => trx("provider_keys").where({ provider }).delete())) > 0;
  }

  async list(tenantId: TenantId): Promise<{ provider: ModelProviderName; hint: string }[]> {
    const rows = (await withTenant(this.#db, tenantId, (trx) => trx("provider_keys").select("provider", "key_hint"))) as { provider: ModelProviderName; key_hint: string }[];
    return rows.map((row) => ({ provider: row.provider, hint: row.key_hint }));
  }
}
