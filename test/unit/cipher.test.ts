import { describe, expect, it } from "vitest";
import {
  generateToken,
  SecretCipher,
  sha256Hex,
  tokenMatchesHash,
} from "../../src/secrets/cipher.ts";
import { AppError } from "../../src/shared/errors.ts";

const KEY_A = Buffer.alloc(32, 0xa1).toString("base64");
const KEY_B = Buffer.alloc(32, 0xb2).toString("base64");

/** The parts of the stored form `v1:<keyId>:<iv>:<tag>:<ciphertext>`. */
function parts(stored: string): [string, string, string, string, string] {
  const split = stored.split(":");
  expect(split).toHaveLength(5);
  return split as [string, string, string, string, string];
}

/** Changes the first byte of a base64url part, so the decoded bytes surely differ. */
function flipFirstByte(part: string): string {
  const bytes = Buffer.from(part, "base64url");
  bytes[0] = (bytes[0] ?? 0) ^ 0xff;
  return bytes.toString("base64url");
}

function expectAppError(run: () => unknown, code: string, message: string | RegExp): void {
  let thrown: unknown;
  try {
    run();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(AppError);
  expect((thrown as AppError).code).toBe(code);
  if (typeof message === "string") expect((thrown as AppError).message).toBe(message);
  else expect((thrown as AppError).message).toMatch(message);
}

const TAMPERED = "stored secret failed authentication (wrong key or tampered value)";

describe("SecretCipher", () => {
  const cipher = new SecretCipher({ a: KEY_A }, "a");

  it("round-trips text, including empty and non-ASCII text", () => {
    for (const plaintext of [
      "sk-live-1234567890",
      "",
      "ключ 🔑 with: colons",
      "x".repeat(10_000),
    ]) {
      expect(cipher.decrypt(cipher.encrypt(plaintext))).toBe(plaintext);
    }
  });

  it("stores the documented format without the plaintext", () => {
    const stored = cipher.encrypt("sk-live-1234567890");
    const [version, keyId, iv, tag] = parts(stored);
    expect(version).toBe("v1");
    expect(keyId).toBe("a");
    expect(Buffer.from(iv, "base64url")).toHaveLength(12);
    expect(Buffer.from(tag, "base64url")).toHaveLength(16);
    expect(stored).not.toContain("sk-live");
  });

  it("gives a different ciphertext each time (fresh IV)", () => {
    const first = cipher.encrypt("same secret");
    const second = cipher.encrypt("same secret");
    expect(first).not.toBe(second);
    expect(parts(first)[2]).not.toBe(parts(second)[2]);
    expect(parts(first)[4]).not.toBe(parts(second)[4]);
    expect(cipher.decrypt(first)).toBe("same secret");
    expect(cipher.decrypt(second)).toBe("same secret");
  });

  describe("refuses tampered values with a clear error", () => {
    const stored = cipher.encrypt("the secret");

    it("a changed ciphertext", () => {
      const [version, keyId, iv, tag, ciphertext] = parts(stored);
      const tampered = [version, keyId, iv, tag, flipFirstByte(ciphertext)].join(":");
      expectAppError(() => cipher.decrypt(tampered), "internal", TAMPERED);
    });

    it("a changed tag", () => {
      const [version, keyId, iv, tag, ciphertext] = parts(stored);
      const tampered = [version, keyId, iv, flipFirstByte(tag), ciphertext].join(":");
      expectAppError(() => cipher.decrypt(tampered), "internal", TAMPERED);
    });

    it("a truncated tag (short GCM tags are easier to forge)", () => {
      const [version, keyId, iv, tag, ciphertext] = parts(stored);
      for (const bytes of [12, 8, 4]) {
        const short = Buffer.from(tag, "base64url").subarray(0, bytes).toString("base64url");
        const tampered = [version, keyId, iv, short, ciphertext].join(":");
        expectAppError(() => cipher.decrypt(tampered), "internal", TAMPERED);
      }
    });

    it("a changed IV", () => {
      const [version, keyId, iv, tag, ciphertext] = parts(stored);
      const tampered = [version, keyId, flipFirstByte(iv), tag, ciphertext].join(":");
      expectAppError(() => cipher.decrypt(tampered), "internal", TAMPERED);
    });

    it("a relabelled key id (the id is authenticated)", () => {
      // Both keys are the same bytes, so only the authenticated key id tells them apart.
      const twins = new SecretCipher({ a: KEY_A, b: KEY_A }, "a");
      const [version, , iv, tag, ciphertext] = parts(twins.encrypt("the secret"));
      const relabelled = [version, "b", iv, tag, ciphertext].join(":");
      expectAppError(() => twins.decrypt(relabelled), "internal", TAMPERED);
    });

    it("an unknown format", () => {
      const [, keyId, iv, tag, ciphertext] = parts(stored);
      for (const bad of [
        "",
        "not a secret",
        `v2:${keyId}:${iv}:${tag}:${ciphertext}`,
        `v1:${keyId}:${iv}:${tag}`,
        `${stored}:extra`,
      ]) {
        expectAppError(
          () => cipher.decrypt(bad),
          "internal",
          "stored secret has an unknown format",
        );
      }
    });
  });

  it("names the missing key when a value needs a key that is not configured", () => {
    const other = new SecretCipher({ z: KEY_B }, "z");
    expectAppError(
      () => cipher.decrypt(other.encrypt("x")),
      "internal",
      'stored secret needs master key "z", which is not configured',
    );
  });

  it("a value encrypted under another key with the same id fails authentication", () => {
    const impostor = new SecretCipher({ a: KEY_B }, "a");
    expectAppError(() => cipher.decrypt(impostor.encrypt("x")), "internal", TAMPERED);
  });

  describe("rotation", () => {
    it("keeps old values readable and reports that they need rotation", () => {
      const before = new SecretCipher({ a: KEY_A }, "a");
      const old = before.encrypt("rotate me");
      expect(before.needsRotation(old)).toBe(false);

      const after = new SecretCipher({ a: KEY_A, b: KEY_B }, "b");
      expect(after.decrypt(old)).toBe("rotate me");
      expect(after.needsRotation(old)).toBe(true);

      const fresh = after.encrypt("rotate me");
      expect(parts(fresh)[1]).toBe("b");
      expect(after.needsRotation(fresh)).toBe(false);
      expect(after.decrypt(fresh)).toBe("rotate me");
      // The old cipher cannot read values written under the new key.
      expectAppError(
        () => before.decrypt(fresh),
        "internal",
        'stored secret needs master key "b", which is not configured',
      );
    });
  });

  describe("construction", () => {
    it("refuses an active key id that has no key, naming the config key", () => {
      expectAppError(
        () => new SecretCipher({ a: KEY_A }, "b"),
        "bad_request",
        'secrets.activeKeyId: no master key with id "b"',
      );
      expectAppError(
        () => new SecretCipher({}, "a"),
        "bad_request",
        'secrets.activeKeyId: no master key with id "a"',
      );
    });

    it("refuses a key of the wrong length, naming it", () => {
      expectAppError(
        () => new SecretCipher({ a: KEY_A, x: Buffer.alloc(16).toString("base64") }, "a"),
        "bad_request",
        "secrets.masterKeys.x: must be 32 bytes, base64-encoded",
      );
    });
  });
});

describe("tokens", () => {
  it("generateToken gives long, distinct, URL-safe tokens", () => {
    const tokens = new Set(Array.from({ length: 50 }, () => generateToken()));
    expect(tokens.size).toBe(50);
    for (const token of tokens) {
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    }
    expect(generateToken(16)).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it("tokenMatchesHash accepts the token whose hash is stored", () => {
    const token = generateToken();
    const hash = sha256Hex(token);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenMatchesHash(token, hash)).toBe(true);
  });

  it("tokenMatchesHash refuses other tokens and malformed hashes without throwing", () => {
    const token = generateToken();
    const hash = sha256Hex(token);
    expect(tokenMatchesHash(`${token}x`, hash)).toBe(false);
    expect(tokenMatchesHash("", hash)).toBe(false);
    expect(tokenMatchesHash(token, hash.slice(0, 62))).toBe(false);
    expect(tokenMatchesHash(token, "")).toBe(false);
    expect(tokenMatchesHash(token, "not hex at all")).toBe(false);
    expect(tokenMatchesHash(token, sha256Hex("other"))).toBe(false);
  });
});
