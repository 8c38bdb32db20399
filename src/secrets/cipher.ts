import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  randomBytes,
  timingSafeEqual,
} from "node:crypto";
import { AppError } from "../shared/errors.ts";

const ALGORITHM = "aes-256-gcm";
const IV_BYTES = 12;
/** GCM tag length; shorter tags are refused, since a truncated tag is easier to forge. */
const TAG_BYTES = 16;
const FORMAT_VERSION = "v1";

/**
 * Encrypts secrets at rest (model keys, appservice tokens) with AES-256-GCM.
 * The stored form is `v1:<keyId>:<iv>:<tag>:<ciphertext>` (base64url parts),
 * so old values stay readable after the active key rotates: every configured
 * key decrypts, only the active one encrypts.
 */
export class SecretCipher {
  readonly #keys: ReadonlyMap<string, Buffer>;
  readonly #activeKeyId: string;

  constructor(keys: Readonly<Record<string, string>>, activeKeyId: string) {
    const decoded = new Map<string, Buffer>();
    for (const [id, base64] of Object.entries(keys)) {
      const key = Buffer.from(base64, "base64");
      if (key.length !== 32)
        throw new AppError(
          "bad_request",
          `secrets.masterKeys.${id}: must be 32 bytes, base64-encoded`,
        );
      decoded.set(id, key);
    }
    if (!decoded.has(activeKeyId)) {
      throw new AppError(
        "bad_request",
        `secrets.activeKeyId: no master key with id "${activeKeyId}"`,
      );
    }
    this.#keys = decoded;
    this.#activeKeyId = activeKeyId;
  }

  encrypt(plaintext: string): string {
    const key = this.#keys.get(this.#activeKeyId) as Buffer;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(ALGORITHM, key, iv);
    // The key id is authenticated too, so a value cannot be relabelled.
    cipher.setAAD(Buffer.from(this.#activeKeyId));
    const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return [
      FORMAT_VERSION,
      this.#activeKeyId,
      iv.toString("base64url"),
      cipher.getAuthTag().toString("base64url"),
      ciphertext.toString("base64url"),
    ].join(":");
  }

  decrypt(stored: string): string {
    const parts = stored.split(":");
    const [version, keyId, iv, tag, ciphertext] = parts;
    if (
      parts.length !== 5 ||
      version !== FORMAT_VERSION ||
      keyId === undefined ||
      iv === undefined ||
      tag === undefined ||
      ciphertext === undefined
    ) {
      throw new AppError("internal", "stored secret has an unknown format");
    }
    const key = this.#keys.get(keyId);
    if (key === undefined)
      throw new AppError(
        "internal",
        `stored secret needs master key "${keyId}", which is not configured`,
      );
    try {
      const decipher = createDecipheriv(ALGORITHM, key, Buffer.from(iv, "base64url"), {
        authTagLength: TAG_BYTES,
      });
      decipher.setAAD(Buffer.from(keyId));
      decipher.setAuthTag(Buffer.from(tag, "base64url"));
      return Buffer.concat([
        decipher.update(Buffer.from(ciphertext, "base64url")),
        decipher.final(),
      ]).toString("utf8");
    } catch (error) {
      throw new AppError(
        "internal",
        "stored secret failed authentication (wrong key or tampered value)",
        { cause: error },
      );
    }
  }

  /**
   * A key for one purpose (e.g. "csrf"), derived from the active master key so
   * that no other secret needs configuring and keys for different purposes
   * are unrelated. Rotating the master key changes it.
   */
  deriveKey(purpose: string): Buffer {
    const key = this.#keys.get(this.#activeKeyId) as Buffer;
    return createHmac("sha256", key).update(`switchboard:${purpose}`).digest();
  }

  /** True when the value was encrypted under a key other than the active one. */
  needsRotation(stored: string): boolean {
    return stored.split(":")[1] !== this.#activeKeyId;
  }
}

/** A long random token (appservice tokens, API tokens). */
export function generateToken(bytes = 32): string {
  return randomBytes(bytes).toString("base64url");
}

export function sha256Hex(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}

/** Compares a presented token with a stored SHA-256 without leaking timing. */
export function tokenMatchesHash(presented: string, expectedSha256Hex: string): boolean {
  const actual = Buffer.from(sha256Hex(presented), "hex");
  const expected = Buffer.from(expectedSha256Hex, "hex");
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}
