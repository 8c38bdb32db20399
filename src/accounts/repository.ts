import type { Knex } from "knex";
import type { Account, AccountId } from "./types.ts";

export interface AccountRow {
  id: string;
  email: string;
  display_name: string;
  password_hash: string;
  email_verified_at: Date | null;
  is_operator: boolean;
  created_at: Date;
}

export type EmailTokenPurpose = "verify" | "reset";

export function toAccount(row: AccountRow): Account {
  return {
    id: row.id as AccountId,
    email: row.email,
    displayName: row.display_name,
    emailVerified: row.email_verified_at !== null,
    isOperator: row.is_operator,
    createdAt: new Date(row.created_at),
  };
}

/** Accounts and their one-time email tokens: service-wide records, not tenant data. */
export const accountRepository = {
  /** Inserts an account; undefined when the email is taken. */
  async insert(
    db: Knex,
    account: { email: string; displayName: string; passwordHash: string; isOperator: boolean },
  ): Promise<Account | undefined> {
    const [row] = (await db("accounts")
      .insert({
        email: account.email,
        display_name: account.displayName,
        password_hash: account.passwordHash,
        is_operator: account.isOperator,
      })
      .onConflict("email")
      .ignore()
      .returning("*")) as AccountRow[];
    return row === undefined ? undefined : toAccount(row);
  },

  async findById(db: Knex, id: AccountId): Promise<Account | undefined> {
    const row = (await db("accounts").where({ id }).first()) as AccountRow | undefined;
    return row === undefined ? undefined : toAccount(row);
  },

  async findByIds(db: Knex, ids: readonly AccountId[]): Promise<Account[]> {
    if (ids.length === 0) return [];
    const rows = (await db("accounts").whereIn("id", [...ids])) as AccountRow[];
    return rows.map(toAccount);
  },

  async findByEmail(
    db: Knex,
    email: string,
  ): Promise<{ account: Account; passwordHash: string } | undefined> {
    const row = (await db("accounts").where({ email }).first()) as AccountRow | undefined;
    return row === undefined
      ? undefined
      : { account: toAccount(row), passwordHash: row.password_hash };
  },

  async setPasswordHash(db: Knex, id: AccountId, passwordHash: string): Promise<void> {
    await db("accounts").where({ id }).update({ password_hash: passwordHash });
  },

  async markVerified(db: Knex, id: AccountId): Promise<void> {
    await db("accounts")
      .where({ id })
      .whereNull("email_verified_at")
      .update({ email_verified_at: db.fn.now() });
  },

  async setOperator(db: Knex, id: AccountId, isOperator: boolean): Promise<void> {
    await db("accounts").where({ id }).update({ is_operator: isOperator });
  },

  async touchLogin(db: Knex, id: AccountId): Promise<void> {
    await db("accounts").where({ id }).update({ last_login_at: db.fn.now() });
  },

  async insertEmailToken(
    db: Knex,
    token: { sha256: string; accountId: AccountId; purpose: EmailTokenPurpose; expiresAt: Date },
  ): Promise<void> {
    await db("email_tokens").insert({
      token_sha256: token.sha256,
      account_id: token.accountId,
      purpose: token.purpose,
      expires_at: token.expiresAt,
    });
  },

  /** Marks a live token used and returns its account; undefined when unknown, used or expired. */
  async consumeEmailToken(
    db: Knex,
    sha256: string,
    purpose: EmailTokenPurpose,
  ): Promise<AccountId | undefined> {
    const [row] = (await db("email_tokens")
      .where({ token_sha256: sha256, purpose })
      .whereNull("used_at")
      .where("expires_at", ">", new Date())
      .update({ used_at: db.fn.now() })
      .returning("account_id")) as { account_id: string }[];
    return row === undefined ? undefined : (row.account_id as AccountId);
  },
};
