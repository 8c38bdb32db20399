import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createTransport } from "nodemailer";
import { z } from "zod";
import { AppError, describeError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";

export interface OutgoingMail {
  to: string;
  subject: string;
  text: string;
  html?: string;
}

/**
 * Sends one mail. Resolves once the mail is handed over (accepted by the SMTP
 * relay, or written to the outbox); it does not mean the mail was delivered.
 * Rejects with an `upstream_failed` AppError when the relay refuses or cannot
 * be reached; callers decide whether that fails the request. Bodies often
 * carry verification or reset links, so implementations never log them.
 */
export interface Mailer {
  send(mail: OutgoingMail): Promise<void>;
}

/** A mail as written to the outbox, for the operator's (or a test's) eyes. */
export interface OutboxMail {
  id: string;
  to: string;
  from: string;
  subject: string;
  text: string;
  html?: string;
  /** ISO 8601. */
  createdAt: string;
}

export interface MailerOptions {
  /** e.g. `smtps://user:pass@smtp.example.com`; without it mail goes to the outbox. */
  smtpUrl?: string | undefined;
  from: string;
  outboxDir: string;
  log: Logger;
}

/*
 * A hung relay must not hold a signup or reset request for minutes (the
 * nodemailer defaults). Query parameters in the SMTP URL still override these.
 */
const SMTP_CONNECTION_TIMEOUT_MS = 10_000;
const SMTP_GREETING_TIMEOUT_MS = 10_000;
const SMTP_SOCKET_TIMEOUT_MS = 30_000;

const OUTBOX_RANDOM_BYTES = 8;
/**
 * `<ISO time>-<16 hex>`: ids double as file names, so this pattern is what
 * keeps an id from a URL from naming any file outside the outbox.
 */
const OUTBOX_ID_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z-[0-9a-f]{16}$/;
const OUTBOX_SUFFIX = ".json";

const storedMailSchema = z.object({
  id: z.string().regex(OUTBOX_ID_PATTERN),
  to: z.string(),
  from: z.string(),
  subject: z.string(),
  text: z.string(),
  html: z.string().optional(),
  createdAt: z.string(),
});

export function createMailer(options: MailerOptions): Mailer {
  const log = options.log.child({ module: "mailer" });
  return options.smtpUrl === undefined
    ? createOutboxMailer(options.outboxDir, options.from, log)
    : createSmtpMailer(options.smtpUrl, options.from, log);
}

function createSmtpMailer(smtpUrl: string, from: string, log: Logger): Mailer {
  const transport = createTransport({
    url: smtpUrl,
    connectionTimeout: SMTP_CONNECTION_TIMEOUT_MS,
    greetingTimeout: SMTP_GREETING_TIMEOUT_MS,
    socketTimeout: SMTP_SOCKET_TIMEOUT_MS,
  });
  return {
    async send(mail) {
      const fields = { toDomain: recipientDomain(mail.to), subject: mail.subject };
      try {
        const info = await transport.sendMail({
          from,
          to: mail.to,
          subject: mail.subject,
          text: mail.text,
          ...(mail.html === undefined ? {} : { html: mail.html }),
        });
        log.info({ ...fields, messageId: info.messageId }, "mail sent");
      } catch (error) {
        log.warn({ ...fields, error: describeError(error) }, "mail not sent");
        throw new AppError("upstream_failed", "The email could not be sent; try again later.", {
          cause: error,
        });
      }
    },
  };
}

function createOutboxMailer(outboxDir: string, from: string, log: Logger): Mailer {
  // Ids sort by time; a strictly increasing clock keeps two mails from one
  // millisecond in the order they were sent.
  let lastMs = 0;
  return {
    async send(mail) {
      lastMs = Math.max(Date.now(), lastMs + 1);
      const createdAt = new Date(lastMs).toISOString();
      const id = `${createdAt}-${randomBytes(OUTBOX_RANDOM_BYTES).toString("hex")}`;
      const stored: OutboxMail = {
        id,
        to: mail.to,
        from,
        subject: mail.subject,
        text: mail.text,
        ...(mail.html === undefined ? {} : { html: mail.html }),
        createdAt,
      };
      // Bodies hold live links: only this user may read them.
      await mkdir(outboxDir, { recursive: true, mode: 0o700 });
      // Written aside and renamed, so a reader never sees half a file.
      const temporary = join(outboxDir, `.${id}.tmp`);
      await writeFile(temporary, JSON.stringify(stored, null, 2), { mode: 0o600, flag: "wx" });
      await rename(temporary, join(outboxDir, id + OUTBOX_SUFFIX));
      log.info(
        { toDomain: recipientDomain(mail.to), subject: mail.subject, outboxId: id },
        "mail written to outbox",
      );
    },
  };
}

/**
 * The newest `limit` mails in the outbox, newest first. A missing outbox is
 * empty; files that cannot be read or are not outbox mails are skipped.
 */
export async function readOutbox(outboxDir: string, limit: number): Promise<OutboxMail[]> {
  if (!Number.isInteger(limit) || limit <= 0) return [];
  let names: string[];
  try {
    names = await readdir(outboxDir);
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
  const ids = names
    .filter((name) => name.endsWith(OUTBOX_SUFFIX))
    .map((name) => name.slice(0, -OUTBOX_SUFFIX.length))
    .filter((id) => OUTBOX_ID_PATTERN.test(id))
    .sort()
    .reverse();
  const mails: OutboxMail[] = [];
  for (const id of ids) {
    if (mails.length >= limit) break;
    const mail = await readStoredMail(outboxDir, id);
    if (mail !== undefined) mails.push(mail);
  }
  return mails;
}

/** One outbox mail, or undefined when there is none with this id (or the id is not one). */
export async function readOutboxMail(
  outboxDir: string,
  id: string,
): Promise<OutboxMail | undefined> {
  if (!OUTBOX_ID_PATTERN.test(id)) return undefined;
  return readStoredMail(outboxDir, id);
}

async function readStoredMail(outboxDir: string, id: string): Promise<OutboxMail | undefined> {
  let raw: string;
  try {
    raw = await readFile(join(outboxDir, id + OUTBOX_SUFFIX), "utf8");
  } catch {
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const parsed = storedMailSchema.safeParse(json);
  // A file must describe itself, or one mail could pose under another's id.
  if (!parsed.success || parsed.data.id !== id) return undefined;
  const { html, ...rest } = parsed.data;
  return html === undefined ? rest : { ...rest, html };
}

/** Only the domain reaches logs: the full address is personal data. */
function recipientDomain(address: string): string {
  const at = address.lastIndexOf("@");
  if (at === -1) return "(none)";
  return address
    .slice(at + 1)
    .replace(/[>\s].*$/s, "")
    .toLowerCase();
}

function isMissing(error: unknown): boolean {
  return error instanceof Error && "code" in error && error.code === "ENOENT";
}
