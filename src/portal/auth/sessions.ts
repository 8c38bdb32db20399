import type { Knex } from "knex";
import { generateToken, sha256Hex } from "../../secrets/cipher.ts";
import { toAccount, type AccountRow } from "../../accounts/repository.ts";
import type { Account, AccountId } from "../../accounts/types.ts";

const DAY_MS = 86_400_000;
/** A session's expiry moves forward at most this often, so a busy page costs no write per request. */
const TOUCH_INTERVAL_MS = 5 * 60_000;

export interface SessionRecord {
  readonly accountId: AccountId;
  /** SHA-256 of the cookie value: the session's id everywhere but the cookie. */
  readonly idSha256: string;
}

/**
 * Portal sessions: the cookie holds 32 random bytes; the database holds their
 * SHA-256, so a database leak yields no usable session. A session ends after
 * `idleDays` without use, at logout, or when its account's password changes.
 */
export class SessionStore {
  readonly #db: Knex;
  readonly #idleMs: number;

  constructor(db: Knex, idleDays: number) {
    this.#db = db;
    this.#idleMs = idleDays * DAY_MS;
  }

  /** Starts a session; returns the cookie value (shown to nobody else, stored nowhere). */
  async create(accountId: AccountId): Promise<{ cookieValue: string; record: SessionRecord }> {
    const cookieValue = generateToken();
    const idSha256 = sha256Hex(cookieValue);
    await this.#db("sessions").insert({
      id_sha256: idSha256,
      account_id: accountId,
      expires_at: new Date(Date.now() + this.#idleMs),
    });
    return { cookieValue, record: { accountId, idSha256 } };
  }

  /**
   * The live session behind a cookie value and its account, in one query;
   * undefined when unknown or expired (an expired one is deleted).
   */
  async resolve(
    cookieValue: string,
  ): Promise<{ record: SessionRecord; account: Account } | undefined> {
    const idSha256 = sha256Hex(cookieValue);
    const row = (await this.#db("sessions")
      .join("accounts", "accounts.id", "sessions.account_id")
      .where("sessions.id_sha256", idSha256)
      .first(
        "accounts.*",
        "sessions.expires_at as session_expires_at",
        "sessions.last_seen_at as session_last_seen_at",
      )) as (AccountRow & { session_expires_at: Date; session_last_seen_at: Date }) | undefined;
    if (row === undefined) return undefined;
    const now = Date.now();
    if (new Date(row.session_expires_at).getTime() <= now) {
      await this.#db("sessions").where({ id_sha256: idSha256 }).delete(["id_sha256"]);
      return undefined;
    }
    if (now - new Date(row.session_last_seen_at).getTime() > TOUCH_INTERVAL_MS) {
      await this.#db("sessions")
        .where({ id_sha256: idSha256 })
        .update({ last_seen_at: new Date(now), expires_at: new Date(now + this.#idleMs) });
    }
    const account = toAccount(row);
    return { record: { accountId: account.id, idSha256 }, account };
  }

  async revoke(idSha256: string): Promise<void> {
    await this.#db("sessions").where({ id_sha256: idSha256 }).delete(["id_sha256"]);
  }

  /** Ends every session of an account (password reset or change), except one to keep. */
  async revokeAll(accountId: AccountId, keepIdSha256?: string): Promise<void> {
    const query = this.#db("sessions").where({ account_id: accountId });
    if (keepIdSha256 !== undefined) void query.whereNot({ id_sha256: keepIdSha256 });
    await query.delete(["id_sha256"]);
  }

  /** Deletes expired sessions; returns how many. */
  async prune(): Promise<number> {
    return (await this.#db("sessions").where("expires_at", "<=", new Date()).delete(["id_sha256"]))
      .length;
  }
}
