import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI_RUN_TIMEOUT_MS, runCli } from "../support/cli.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectDatabase } from "../../src/db/connect.ts";
import { verifyPassword } from "../../src/accounts/passwords.ts";

describe("switchboard operator create", () => {
  let dir: string;
  let config: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "switchboard-cli-"));
    config = join(dir, "config.yaml");
    await writeFile(config, `dataDir: ${JSON.stringify(dir)}\nlog:\n  level: error\n`);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function account(email: string) {
    const database = await connectDatabase({ pgliteDir: join(dir, "pglite") });
    try {
      return (await database.knex("accounts").where({ email }).first()) as
        { password_hash: string; is_operator: boolean; email_verified_at: Date | null } | undefined;
    } finally {
      await database.close();
    }
  }

  it(
    "creates a verified operator with the password from standard input",
    async () => {
      const run = await runCli(
        ["-c", config, "operator", "create", "--email", "Ops@Example.org"],
        "a long enough operator password\n",
      );
      expect(run.stderr).not.toContain("switchboard:");
      expect(run.code).toBe(0);
      expect(run.stdout).toContain("created operator ops@example.org");
      expect(run.stdout).not.toContain("password (shown only now)");
      const row = await account("ops@example.org");
      expect(row?.is_operator).toBe(true);
      expect(row?.email_verified_at).not.toBeNull();
      expect(
        await verifyPassword("a long enough operator password", row?.password_hash ?? ""),
      ).toBe(true);
    },
    2 * CLI_RUN_TIMEOUT_MS,
  );

  it(
    "generates and prints a password once when standard input is empty",
    async () => {
      const run = await runCli(
        ["-c", config, "operator", "create", "--email", "second@example.org"],
        "",
      );
      expect(run.code).toBe(0);
      const password = /password \(shown only now\): (\S+)/.exec(run.stdout)?.[1];
      expect(password?.length).toBeGreaterThanOrEqual(20);
      const row = await account("second@example.org");
      expect(await verifyPassword(password ?? "", row?.password_hash ?? "")).toBe(true);
    },
    2 * CLI_RUN_TIMEOUT_MS,
  );

  it(
    "makes an existing account an operator without touching its password",
    async () => {
      const before = await account("ops@example.org");
      const run = await runCli(
        ["-c", config, "operator", "create", "--email", "ops@example.org"],
        "another password entirely\n",
      );
      expect(run.code).toBe(0);
      expect(run.stdout).toContain("is now an operator (its password is unchanged)");
      expect((await account("ops@example.org"))?.password_hash).toBe(before?.password_hash);
    },
    2 * CLI_RUN_TIMEOUT_MS,
  );

  it(
    "refuses a bad email or a short password with a clear message and creates nothing",
    async () => {
      const bad = await runCli(
        ["-c", config, "operator", "create", "--email", "not-an-email"],
        "x",
      );
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain("email");
      const short = await runCli(
        ["-c", config, "operator", "create", "--email", "short@example.org"],
        "short\n",
      );
      expect(short.code).toBe(1);
      expect(short.stderr).toContain("Password must be at least");
      expect(await account("short@example.org")).toBeUndefined();
    },
    4 * CLI_RUN_TIMEOUT_MS,
  );

  it("documents where the password comes from in --help", async () => {
    const help = await runCli(["operator", "create", "--help"], "");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("read from standard input");
    expect(help.stdout).toContain("generated and");
  });
});
