import type { Knex } from "knex";
import { z } from "zod";
import { parseOrThrow } from "../agents/validation.ts";
import { generateToken, sha256Hex } from "../secrets/cipher.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { Mailer } from "./mailer.ts";
import { hashPassword, needsRehash, validateNewPassword, verifyPassword } from "./passwords.ts";
import { accountRepository, type EmailTokenPurpose } from "./repository.ts";
import type { Account, AccountId } from "./types.ts";

const VERIFY_TOKEN_TTL_HOURS = 48;
const RESET_TOKEN_TTL_HOURS = 1;
const HOUR_MS = 3_600_000;

export const EmailSchema = z
  .string()
  .trim()
  .toLowerCase()
  .max(254)
  .pipe(z.email("must be an email address like ada@example.org"));

export const SignupSchema = z.strictObject({
  email: EmailSchema,
  password: z.string().max(256),
  displayName: z.string().trim().max(100).default(""),
});
export type SignupInput = z.input<typeof SignupSchema>;

/** The same wording whether the email is unknown or the password wrong: no account discovery. */
const BAD_CREDENTIALS = "the email or the password is not right";

/**
 * Sign-up, email verification, login and password reset. Emails are sent
 * after the database work commits; every answer that could reveal whether an
 * address has an account is the same either way.
 */
export class AccountService {
  readonly #db: Knex;
  readonly #mailer: Mailer;
  readonly #publicUrl: string;
  readonly #log: Logger;
  /**
   * Verified against when the email is unknown, so both cases take as long.
   * Made on the first login attempt, not at start-up (every CLI command builds this service).
   */
  #decoyHash: Promise<string> | undefined;

  constructor(db: Knex, mailer: Mailer, options: { publicUrl: string; log: Logger }) {
    this.#db = db;
    this.#mailer = mailer;
    this.#publicUrl = options.publicUrl.replace(/\/+$/, "");
    this.#log = options.log.child({ module: "accounts" });
  }

  /**
   * Creates an unverified account and mails a verification link. When the
   * email already has an account, its owner is told by mail instead, and the
   * caller cannot tell the difference.
   */
  async signup(input: unknown): Promise<void> {
    const { email, password, displayName } = parseOrThrow(SignupSchema, input);
    const passwordHash = await hashPassword(validateNewPassword(password));
    const account = await accountRepository.insert(this.#db, {
      email,
      displayName,
      passwordHash,
      isOperator: false,
    });
    if (account === undefined) {
      await this.#mailer.send({
        to: email,
        subject: "Someone tried to sign up with your email",
        text: `Someone (maybe you) tried to create a Switchboard account with this address, which already has one.\n\nTo sign in: ${this.#publicUrl}/login\nForgot your password? ${this.#publicUrl}/reset\n`,
      });
      return;
    }
    this.#log.info({ accountId: account.id }, "account created");
    await this.sendVerification(account);
  }

  async sendVerification(account: Account): Promise<void> {
    if (account.emailVerified) return;
    const token = await this.#issueToken(account.id, "verify", VERIFY_TOKEN_TTL_HOURS);
    await this.#mailer.send({
      to: account.email,
      subject: "Verify your email for Switchboard",
      text: `Welcome to Switchboard.\n\nConfirm your email address by opening this link (valid ${String(VERIFY_TOKEN_TTL_HOURS)} hours):\n${this.#publicUrl}/verify?token=${token}\n`,
    });
  }

  /** Consumes a verification token; the account is verified from then on. */
  async verifyEmail(token: string): Promise<AccountId> {
    const accountId = await accountRepository.consumeEmailToken(
      this.#db,
      sha256Hex(token),
      "verify",
    );
    if (accountId === undefined)
      throw badRequest("this verification link is invalid, used or expired; ask for a new one");
    await accountRepository.markVerified(this.#db, accountId);
    return accountId;
  }

  /** The account for an email and password, or an unauthorized error. */
  async authenticate(emailInput: string, password: string): Promise<Account> {
    const email = EmailSchema.safeParse(emailInput);
    const found = email.success
      ? await accountRepository.findByEmail(this.#db, email.data)
      : undefined;
    const matches = await verifyPassword(
      password.slice(0, 256),
      found?.passwordHash ?? (await (this.#decoyHash ??= hashPassword(generateToken()))),
    );
    if (found === undefined || !matches) throw new AppError("unauthorized", BAD_CREDENTIALS);
    if (needsRehash(found.passwordHash)) {
      await accountRepository.setPasswordHash(
        this.#db,
        found.account.id,
        await hashPassword(password),
      );
    }
    await accountRepository.touchLogin(this.#db, found.account.id);
    return found.account;
  }

  /** Mails a reset link when the email has an account; says nothing either way. */
  async requestPasswordReset(emailInput: string): Promise<void> {
    const email = parseOrThrow(EmailSchema, emailInput);
    const found = await accountRepository.findByEmail(this.#db, email);
    if (found === undefined) return;
    const token = await this.#issueToken(found.account.id, "reset", RESET_TOKEN_TTL_HOURS);
    await this.#mailer.send({
      to: found.account.email,
      subject: "Reset your Switchboard password",
      text: `Open this link to choose a new password (valid ${String(RESET_TOKEN_TTL_HOURS)} hour; ignore this mail if you did not ask):\n${this.#publicUrl}/reset/confirm?token=${token}\n`,
    });
  }

  /**
   * Sets a new password with a reset token. Returns the account so the caller
   * can end its other sessions. Completing a reset also proves the email.
   */
  async resetPassword(token: string, newPassword: string): Promise<AccountId> {
    const passwordHash = await hashPassword(validateNewPassword(newPassword));
    const accountId = await accountRepository.consumeEmailToken(
      this.#db,
      sha256Hex(token),
      "reset",
    );
    if (accountId === undefined)
      throw badRequest("this reset link is invalid, used or expired; ask for a new one");
    await accountRepository.setPasswordHash(this.#db, accountId, passwordHash);
    await accountRepository.markVerified(this.#db, accountId);
    this.#log.info({ accountId }, "password reset");
    return accountId;
  }

  /**
   * Makes an operator (CLI): creates a verified account with the password, or
   * flags an existing account (its password unchanged).
   */
  async makeOperator(emailInput: string, password: string): Promise<Account> {
    const email = parseOrThrow(EmailSchema, emailInput);
    const existing = await accountRepository.findByEmail(this.#db, email);
    if (existing !== undefined) {
      await accountRepository.setOperator(this.#db, existing.account.id, true);
      return { ...existing.account, isOperator: true };
    }
    const account = await accountRepository.insert(this.#db, {
      email,
      displayName: "",
      passwordHash: await hashPassword(validateNewPassword(password)),
      isOperator: true,
    });
    if (account === undefined) throw new AppError("conflict", `${email} was just taken`);
    await accountRepository.markVerified(this.#db, account.id);
    return { ...account, emailVerified: true };
  }

  async #issueToken(accountId: AccountId, purpose: EmailTokenPurpose, ttlHours: number) {
    const token = generateToken();
    await accountRepository.insertEmailToken(this.#db, {
      sha256: sha256Hex(token),
      accountId,
      purpose,
      expiresAt: new Date(Date.now() + ttlHours * HOUR_MS),
    });
    return token;
  }
}
