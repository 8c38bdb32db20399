import { argon2, randomBytes, timingSafeEqual } from "node:crypto";
import { badRequest } from "../shared/errors.ts";

/** Shorter passwords fall to offline guessing too quickly, whatever the hash costs. */
export const MIN_PASSWORD_CHARS = 10;
/** Generous enough for passphrases and password managers; bounds the work one request can cause. */
export const MAX_PASSWORD_CHARS = 256;

/**
 * OWASP's argon2id recommendation (m=19 MiB, t=2, p=1): costly for a GPU farm,
 * yet a few tens of milliseconds per login on one core. Changing these makes
 * `needsRehash` true for every stored hash, which callers use to upgrade on
 * the next successful login.
 */
const CURRENT: Argon2Cost = { memoryKib: 19_456, passes: 2, parallelism: 1 };
const SALT_BYTES = 16;
const TAG_BYTES = 32;

/*
 * Upper bounds for parameters read back from a stored hash: a corrupt or
 * tampered row must not make one login allocate gigabytes or spin for minutes.
 * They leave room for stronger settings than the current ones.
 */
const MAX_MEMORY_KIB = 262_144;
const MAX_PASSES = 16;
const MAX_PARALLELISM = 16;
/* A truncated tag or salt is weaker than what we write; refuse it instead of trusting it. */
const MIN_STORED_TAG_BYTES = 16;
const MIN_STORED_SALT_BYTES = 8;
const MAX_STORED_BYTES = 64;

interface Argon2Cost {
  memoryKib: number;
  passes: number;
  parallelism: number;
}

interface ParsedHash extends Argon2Cost {
  salt: Buffer;
  tag: Buffer;
}

/** Hashes a password for storage, as a PHC string (`$argon2id$v=19$m=…,t=…,p=…$<salt>$<tag>`). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const tag = await derive(password, salt, CURRENT, TAG_BYTES);
  return formatPhc({ ...CURRENT, salt, tag });
}

/**
 * Whether `password` matches a stored PHC string, using the parameters stored
 * in it (so hashes made with older settings still verify). A malformed or
 * unsupported hash is a mismatch, not an error: a login must answer "wrong
 * password", never a 500, whatever is in the row.
 */
export async function verifyPassword(password: string, phc: string): Promise<boolean> {
  const parsed = parsePhc(phc);
  if (parsed === undefined) return false;
  const candidate = await derive(password, parsed.salt, parsed, parsed.tag.length);
  return timingSafeEqual(candidate, parsed.tag);
}

/** True when a stored hash was made with other settings than today's (or cannot be read). */
export function needsRehash(phc: string): boolean {
  const parsed = parsePhc(phc);
  if (parsed === undefined) return true;
  return (
    parsed.memoryKib !== CURRENT.memoryKib ||
    parsed.passes !== CURRENT.passes ||
    parsed.parallelism !== CURRENT.parallelism ||
    parsed.salt.length !== SALT_BYTES ||
    parsed.tag.length !== TAG_BYTES
  );
}

/**
 * Checks a password a user chose and returns it unchanged. The error message
 * is shown to the user, so it states the rule and never echoes the password.
 */
export function validateNewPassword(password: string): string {
  const chars = countCharsUpTo(password, MAX_PASSWORD_CHARS + 1);
  if (chars < MIN_PASSWORD_CHARS) {
    throw badRequest(`Password must be at least ${MIN_PASSWORD_CHARS} characters long.`, {
      field: "password",
      minChars: MIN_PASSWORD_CHARS,
    });
  }
  if (chars > MAX_PASSWORD_CHARS) {
    throw badRequest(`Password must be at most ${MAX_PASSWORD_CHARS} characters long.`, {
      field: "password",
      maxChars: MAX_PASSWORD_CHARS,
    });
  }
  return password;
}

/*
 * Characters as users see them (grapheme clusters), so an emoji or an accented
 * letter typed as two code points counts once. Stops past `cap`, so a huge
 * input costs no more than a valid one.
 */
const GRAPHEMES = new Intl.Segmenter(undefined, { granularity: "grapheme" });

function countCharsUpTo(text: string, cap: number): number {
  const segments = GRAPHEMES.segment(text)[Symbol.iterator]();
  let count = 0;
  while (count < cap && segments.next().done !== true) count += 1;
  return count;
}

function derive(
  password: string,
  salt: Buffer,
  cost: Argon2Cost,
  tagBytes: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // The async form runs on the libuv thread pool, so hashing never blocks the event loop.
    argon2(
      "argon2id",
      {
        message: password,
        nonce: salt,
        memory: cost.memoryKib,
        passes: cost.passes,
        parallelism: cost.parallelism,
        tagLength: tagBytes,
      },
      (error, key) => {
        if (error === null) resolve(key);
        else reject(error);
      },
    );
  });
}

function formatPhc(hash: ParsedHash): string {
  return (
    `$argon2id$v=19$m=${hash.memoryKib},t=${hash.passes},p=${hash.parallelism}` +
    `$${encodeB64(hash.salt)}$${encodeB64(hash.tag)}`
  );
}

// Exactly the layout libargon2 writes; anything else (other variants, versions, extra fields) is refused.
const PHC_PATTERN =
  /^\$argon2id\$v=19\$m=([1-9][0-9]{0,9}),t=([1-9][0-9]{0,9}),p=([1-9][0-9]{0,9})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

function parsePhc(phc: string): ParsedHash | undefined {
  const match = PHC_PATTERN.exec(phc);
  if (match === null) return undefined;
  const [, memory, passes, parallelism, salt, tag] = match;
  const cost: Argon2Cost = {
    memoryKib: Number(memory),
    passes: Number(passes),
    parallelism: Number(parallelism),
  };
  // Argon2 needs at least 8 KiB per lane; node:crypto throws on less.
  if (cost.memoryKib < 8 * cost.parallelism || cost.memoryKib > MAX_MEMORY_KIB) return undefined;
  if (cost.passes > MAX_PASSES || cost.parallelism > MAX_PARALLELISM) return undefined;
  const saltBytes = decodeB64(salt ?? "");
  const tagBytes = decodeB64(tag ?? "");
  if (saltBytes === undefined || tagBytes === undefined) return undefined;
  if (saltBytes.length < MIN_STORED_SALT_BYTES || saltBytes.length > MAX_STORED_BYTES) {
    return undefined;
  }
  if (tagBytes.length < MIN_STORED_TAG_BYTES || tagBytes.length > MAX_STORED_BYTES) {
    return undefined;
  }
  return { ...cost, salt: saltBytes, tag: tagBytes };
}

/** PHC strings use standard base64 without padding. */
function encodeB64(bytes: Buffer): string {
  return bytes.toString("base64").replace(/=+$/, "");
}

/** Strict: Buffer.from silently ignores bad trailing bits, so only canonical encodings pass. */
function decodeB64(text: string): Buffer | undefined {
  const bytes = Buffer.from(text, "base64");
  return encodeB64(bytes) === text ? bytes : undefined;
}
