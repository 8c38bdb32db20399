import { describe, expect, it } from "vitest";
import {
  hashPassword,
  MAX_PASSWORD_CHARS,
  MIN_PASSWORD_CHARS,
  needsRehash,
  validateNewPassword,
  verifyPassword,
} from "../../src/accounts/passwords.ts";
import { AppError } from "../../src/shared/errors.ts";

const PASSWORD = "correct horse battery staple";

/*
 * Made by the reference implementation (Debian's `argon2` CLI, libargon2):
 *   echo -n "correct horse battery staple" | argon2 saltsaltsaltsalt -id -t 2 -k 19456 -p 1 -l 32 -e
 * so hashes from other argon2 libraries verify here, and ours there.
 */
const REFERENCE_CURRENT =
  "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$QKHrg5tayLGcN+Y0HVPNaBqykOVLUxlMkZycXE1uWRM";
//   ... somesaltsomesalt -id -t 3 -k 65536 -p 4 -l 32 -e
const REFERENCE_STRONGER =
  "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$mtB7vZKFuEQDVzeZe5lTtf3BPC1e5BL1UKy7IW/SpV0";

const PHC_SHAPE = /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/;

describe("hashPassword and verifyPassword", () => {
  it("produces an OWASP-parameter PHC string that verifies", async () => {
    const phc = await hashPassword(PASSWORD);
    expect(phc).toMatch(PHC_SHAPE);
    await expect(verifyPassword(PASSWORD, phc)).resolves.toBe(true);
  });

  it("rejects a wrong password", async () => {
    const phc = await hashPassword(PASSWORD);
    await expect(verifyPassword("correct horse battery stapler", phc)).resolves.toBe(false);
    await expect(verifyPassword("", phc)).resolves.toBe(false);
  });

  it("salts every hash, so the same password hashes differently", async () => {
    const first = await hashPassword(PASSWORD);
    const second = await hashPassword(PASSWORD);
    expect(first).not.toBe(second);
    expect(first.split("$")[4]).not.toBe(second.split("$")[4]);
    await expect(verifyPassword(PASSWORD, second)).resolves.toBe(true);
  });

  it("verifies hashes made by the reference implementation, with their own parameters", async () => {
    await expect(verifyPassword(PASSWORD, REFERENCE_CURRENT)).resolves.toBe(true);
    await expect(verifyPassword(PASSWORD, REFERENCE_STRONGER)).resolves.toBe(true);
    await expect(verifyPassword("Correct horse battery staple", REFERENCE_CURRENT)).resolves.toBe(
      false,
    );
  });

  it("hashes non-ASCII passwords as UTF-8", async () => {
    const password = "pässwörd-🔑-密码";
    const phc = await hashPassword(password);
    await expect(verifyPassword(password, phc)).resolves.toBe(true);
    await expect(verifyPassword(password.normalize("NFD"), phc)).resolves.toBe(false);
  });

  it("treats a tampered tag or salt as a mismatch", async () => {
    const parts = REFERENCE_CURRENT.split("$");
    const tag = Buffer.from(parts[5]!, "base64");
    tag[0] = tag[0]! ^ 0x01;
    const tamperedTag = [...parts.slice(0, 5), tag.toString("base64").replace(/=+$/, "")].join("$");
    await expect(verifyPassword(PASSWORD, tamperedTag)).resolves.toBe(false);
    const tamperedSalt = REFERENCE_CURRENT.replace(
      "c2FsdHNhbHRzYWx0c2FsdA",
      "c2FsdHNhbHRzYWx0c2FsdQ",
    );
    await expect(verifyPassword(PASSWORD, tamperedSalt)).resolves.toBe(false);
  });

  it.each([
    ["empty", ""],
    ["plain text", PASSWORD],
    ["another variant", REFERENCE_CURRENT.replace("argon2id", "argon2i")],
    ["another version", REFERENCE_CURRENT.replace("v=19", "v=16")],
    ["no version", REFERENCE_CURRENT.replace("$v=19", "")],
    ["parameters reordered", REFERENCE_CURRENT.replace("m=19456,t=2,p=1", "t=2,m=19456,p=1")],
    ["zero passes", REFERENCE_CURRENT.replace("t=2", "t=0")],
    ["zero lanes", REFERENCE_CURRENT.replace("p=1", "p=0")],
    ["less than 8 KiB per lane", REFERENCE_CURRENT.replace("m=19456,t=2,p=1", "m=15,t=2,p=2")],
    ["absurd memory", REFERENCE_CURRENT.replace("m=19456", "m=4194304")],
    ["absurd passes", REFERENCE_CURRENT.replace("t=2", "t=1000000")],
    ["padded base64", REFERENCE_CURRENT.replace("c2FsdA$", "c2FsdA==$")],
    ["non-canonical base64", REFERENCE_CURRENT.replace("c2FsdA$", "c2FsdB$")],
    ["url-safe base64", REFERENCE_STRONGER.replace("W/SpV0", "W_SpV0")],
    ["short salt", REFERENCE_CURRENT.replace("c2FsdHNhbHRzYWx0c2FsdA", "c2FsdA")],
    ["truncated tag", REFERENCE_CURRENT.replace(/\$[^$]+$/, "$QKHrg5tayLGcN+Y0")],
    ["missing tag", REFERENCE_CURRENT.replace(/\$[^$]+$/, "")],
    ["trailing field", `${REFERENCE_CURRENT}$extra`],
    ["trailing newline", `${REFERENCE_CURRENT}\n`],
    ["bcrypt", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"],
  ])("returns false, without throwing, for a malformed hash: %s", async (_label, phc) => {
    await expect(verifyPassword(PASSWORD, phc)).resolves.toBe(false);
  });
});

describe("needsRehash", () => {
  it("is false for a hash made with the current parameters", async () => {
    expect(needsRehash(await hashPassword(PASSWORD))).toBe(false);
  });

  it("is true for other parameters, tag or salt sizes, and unreadable hashes", () => {
    expect(needsRehash(REFERENCE_STRONGER)).toBe(true);
    expect(needsRehash(REFERENCE_CURRENT.replace("t=2", "t=3"))).toBe(true);
    expect(needsRehash(REFERENCE_CURRENT.replace("m=19456", "m=12288"))).toBe(true);
    // 16-byte tag; the reference salt is 16 bytes, the tag length is what differs.
    expect(needsRehash(REFERENCE_CURRENT.replace(/\$[^$]+$/, "$QKHrg5tayLGcN+Y0HVPNaA"))).toBe(
      true,
    );
    expect(needsRehash("not a hash")).toBe(true);
  });

  it("is false for the reference hash with exactly the current settings", () => {
    expect(needsRehash(REFERENCE_CURRENT)).toBe(false);
  });
});

describe("validateNewPassword", () => {
  function rejection(password: string): AppError {
    try {
      validateNewPassword(password);
    } catch (error) {
      expect(error).toBeInstanceOf(AppError);
      return error as AppError;
    }
    throw new Error("expected the password to be rejected");
  }

  it("accepts the bounds and returns the password unchanged", () => {
    expect(MIN_PASSWORD_CHARS).toBe(10);
    expect(MAX_PASSWORD_CHARS).toBe(256);
    const shortest = "a".repeat(MIN_PASSWORD_CHARS);
    const longest = "b".repeat(MAX_PASSWORD_CHARS);
    expect(validateNewPassword(shortest)).toBe(shortest);
    expect(validateNewPassword(longest)).toBe(longest);
  });

  it("rejects a password one character too short, without echoing it", () => {
    const password = "sekrit-123";
    const error = rejection(password.slice(0, MIN_PASSWORD_CHARS - 1));
    expect(error.code).toBe("bad_request");
    expect(error.httpStatus).toBe(400);
    expect(error.message).toBe("Password must be at least 10 characters long.");
    expect(error.message).not.toContain("sekrit");
    expect(error.details).toEqual({ field: "password", minChars: MIN_PASSWORD_CHARS });
  });

  it("rejects a password one character too long", () => {
    const error = rejection("x".repeat(MAX_PASSWORD_CHARS + 1));
    expect(error.code).toBe("bad_request");
    expect(error.message).toBe("Password must be at most 256 characters long.");
    expect(error.message).not.toContain("xxx");
  });

  it("counts characters as users see them, not UTF-16 units or code points", () => {
    // Nine keys are eighteen UTF-16 units but nine characters: too short.
    expect(rejection("🔑".repeat(MIN_PASSWORD_CHARS - 1)).code).toBe("bad_request");
    // One family emoji is five code points (three people joined by ZWJ), one character.
    const family = "👩‍👩‍👧";
    expect(Array.from(family)).toHaveLength(5);
    expect(rejection(family.repeat(MIN_PASSWORD_CHARS - 1)).code).toBe("bad_request");
    expect(validateNewPassword(family.repeat(MAX_PASSWORD_CHARS))).toHaveLength(
      family.length * MAX_PASSWORD_CHARS,
    );
    expect(rejection(family.repeat(MAX_PASSWORD_CHARS + 1)).code).toBe("bad_request");
    // "e" plus a combining acute accent is one character.
    expect(rejection("e\u0301".repeat(MIN_PASSWORD_CHARS - 1)).code).toBe("bad_request");
  });

  it("rejects a huge password quickly", () => {
    const error = rejection("y".repeat(10_000_000));
    expect(error.details).toEqual({ field: "password", maxChars: MAX_PASSWORD_CHARS });
  });

  it("rejects the empty password", () => {
    expect(rejection("").code).toBe("bad_request");
  });
});
