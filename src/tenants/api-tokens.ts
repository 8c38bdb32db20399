import type { Knex } from "knex";
import { z } from "zod";
import type { AccountId } from "../accounts/types.ts";
import { parseOrThrow } from "../agents/validation.ts";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { generateToken, sha256Hex } from "../secrets/cipher.ts";
import { isUuid, type TenantId } from "../shared/ids.ts";

/** Every API token starts with this, so leaked tokens are easy to spot and scan for. */
export const API_TOKEN_PREFIX = "sbt_";
const SHOWN_PREFIX_CHARS = 12;
/** last_used_at is written at most this often per token. */
const LAST_USED_RESOLUTION_MS = 60_000;

export interface ApiToken {
  readonly id: string;
  readonly name: string;
  /** The token's first characters, to recognise it. */
  readonly prefix: string;
  readonly createdAt: Date;
  readonly lastUsedAt: Date | null;
  readonly revokedAt: Date | null;
}

export interface AuthenticatedToken {
  readonly tokenId: string;
  readonly tenantId: TenantId;
  readonly name: string;
}

export const NewApiTokenSchema = z.strictObject({
  name: z.string().trim().min(1, "must not be empty").max(64),
});

interface TokenRow {
  id: string;
  tenant_id: string;
  name: string;
  prefix: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const toToken = (row: TokenRow): ApiToken => ({
  id: row.id,
  name: row.name,
  prefix: row.prefix,
  createdAt: new Date(row.created_at),
  lastUsedAt: row.last_used_at === null ? null : new Date(row.last_used_at),
  revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
});

/**
 * API tokens for the JSON API, one tenant each, acting as a tenant admin.
 * The plaintext is returned once at creation; only its SHA-256 is stored.
 * A revoked token stays listed (who made it, when it was last used) but
 * never authenticates again.
 */
export class ApiTokens {
  readonly #db: Knex;

  constructor(db: Knex) {
    this.#db = db;
  }

  async create(
    tenantId: TenantId,
    input: unknown,
    createdBy: AccountId | null,
    by: Actor,
  ): Promise<{ token: ApiToken; plaintext: string }> {
    const { name } = parseOrThrow(NewApiTokenSchema, input);
    const plaintext = `${API_TOKEN_PREFIX}${generateToken()}`;
    const token = await withTenant(this.#db, tenantId, async (trx) => {
      const [row] = (await trx("api_tokens")
        .insert({
          tenant_id: tenantId,
          name,
          token_sha256: sha256Hex(plaintext),
          prefix: plaintext.slice(0, SHOWN_PREFIX_CHARS),
          created_by: createdBy,
        })
        .returning("*")) as TokenRow[];
      const created = toToken(row as TokenRow);
      await auditLog.recordBy(trx, tenantId, by, "token.create", created.id, { name });
      return created;
    });
    return { token, plaintext };
  }

  async list(tenantId: TenantId): Promise<ApiToken[]> {
    const rows = (await withTenant(this.#db, tenantId, (trx) =>
      trx("api_tokens").orderBy("created_at", "desc"),
    )) as TokenRow[];
    return rows.map(toToken);
  }

  /** Revokes a token of the tenant; false when the tenant has no such live token. */
  async revoke(tenantId: TenantId, tokenId: string, by: Actor): Promise<boolean> {
    if (!isUuid(tokenId)) return false;
    return withTenant(this.#db, tenantId, async (trx) => {
      const revoked = await trx("api_tokens")
        .where({ id: tokenId })
        .whereNull("revoked_at")
        .update({ revoked_at: trx.fn.now() }, ["id"]);
      if (revoked.length === 0) return false;
      await auditLog.recordBy(trx, tenantId, by, "token.revoke", tokenId);
      return true;
    });
  }

  /**
   * The live token behind a presented bearer value, or undefined. Looked up
   * by hash on the service connection: the token is what tells us the tenant.
   */
  async authenticate(presented: string): Promise<AuthenticatedToken | undefined> {
    if (!presented.startsWith(API_TOKEN_PREFIX) || presented.length > 128) return undefined;
    const row = (await this.#db("api_tokens")
      .where({ token_sha256: sha256Hex(presented) })
      .whereNull("revoked_at")
      .first()) as TokenRow | undefined;
    if (row === undefined) return undefined;
    const lastUsed = row.last_used_at === null ? 0 : new Date(row.last_used_at).getTime();
    if (Date.now() - lastUsed > LAST_USED_RESOLUTION_MS) {
      await this.#db("api_tokens").where({ id: row.id }).update({ last_used_at: new Date() });
    }
    return { tokenId: row.id, tenantId: row.tenant_id as TenantId, name: row.name };
  }
}
