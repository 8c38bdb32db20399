import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfig, parseConfig } from "../../src/config/load.ts";
import { AppError } from "../../src/shared/errors.ts";

const KEY_A = Buffer.alloc(32, 1).toString("base64");
const KEY_B = Buffer.alloc(32, 2).toString("base64");
const SHORT_KEY = Buffer.alloc(16, 3).toString("base64");

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NODE_24 = join(REPO_ROOT, "node_modules/.bin/node");
const CLI = join(REPO_ROOT, "src/cli/main.ts");

/** Runs parseConfig and returns the AppError it throws (fails the test if it does not throw one). */
function configError(
  yamlText: string,
  env: NodeJS.ProcessEnv = {},
  source = "test.yaml",
): AppError {
  try {
    parseConfig(yamlText, env, source);
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("bad_request");
    return error as AppError;
  }
  throw new Error("expected parseConfig to throw");
}

describe("parseConfig defaults", () => {
  it("gives the embedded defaults for an empty file and an empty environment", () => {
    const config = parseConfig("", {});
    expect(config.dataDir).toBe("data");
    expect(config.log).toEqual({ level: "info", pretty: false });
    expect(config.database.url).toBeUndefined();
    expect(config.database.poolMax).toBe(10);
    expect(config.secrets.masterKeys).toEqual({});
    expect(config.secrets.activeKeyId).toBeUndefined();
    expect(config.runtime).toMatchObject({
      host: "127.0.0.1",
      port: 9000,
      agentPrefix: "ai_",
      botLocalpart: "switchboard",
      editThrottleMs: 700,
      maxInputChars: 16_000,
    });
    expect(config.models.defaultProvider).toBeUndefined();
    expect(config.models.openai.baseUrl).toBe("https://api.openai.com/v1");
    expect(config.models.openai.defaultModel).toBe("gpt-4o-mini");
    expect(config.embedded).toEqual({
      serverName: "localhost",
      port: 8008,
      adminLocalpart: "admin",
      demoAgentName: "ada",
      adminEmail: "admin@switchboard.localhost",
    });
    expect(config.portal.port).toBe(8080);
    expect(config.defaultPlan).toBe("free");
    expect(config.plans.free?.messagesPerDay).toBe(100);
  });

  it("refuses a default plan that is not among the plans, naming the key", () => {
    expect(() => parseConfig("defaultPlan: gold\n", {}, "c.yaml")).toThrow(
      /defaultPlan: must name one of plans/,
    );
  });

  it("treats a file of only comments or a YAML null as empty", () => {
    expect(parseConfig("# nothing here\n", {}).runtime.port).toBe(9000);
    expect(parseConfig("~\n", {}).runtime.port).toBe(9000);
  });

  it("loadConfig without a file uses defaults plus the environment", async () => {
    const config = await loadConfig(undefined, { SWITCHBOARD_RUNTIME_PORT: "9555" });
    expect(config.runtime.port).toBe(9555);
    expect(config.runtime.host).toBe("127.0.0.1");
  });
});

describe("loadConfig from a file", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "sb-config-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads the file's values and keeps defaults for the rest", async () => {
    const file = join(dir, "switchboard.yaml");
    await writeFile(
      file,
      [
        "dataDir: /var/lib/switchboard",
        "log:",
        "  level: debug",
        "database:",
        "  url: postgres://db.internal/switchboard",
        "runtime:",
        "  port: 9100",
        "  publicUrl: https://runtime.example.org",
        "models:",
        "  defaultProvider: anthropic",
        "  anthropic:",
        "    defaultModel: claude-test",
        "secrets:",
        "  masterKeys:",
        `    a: ${KEY_A}`,
        "  activeKeyId: a",
        "",
      ].join("\n"),
    );
    const config = await loadConfig(file, {});
    expect(config.dataDir).toBe("/var/lib/switchboard");
    expect(config.log.level).toBe("debug");
    expect(config.database.url).toBe("postgres://db.internal/switchboard");
    expect(config.runtime.port).toBe(9100);
    expect(config.runtime.publicUrl).toBe("https://runtime.example.org");
    expect(config.runtime.host).toBe("127.0.0.1");
    expect(config.models.defaultProvider).toBe("anthropic");
    expect(config.models.anthropic.defaultModel).toBe("claude-test");
    expect(config.secrets).toEqual({ masterKeys: { a: KEY_A }, activeKeyId: "a" });
  });

  it("names the file and the key when a value is wrong", async () => {
    const file = join(dir, "bad.yaml");
    await writeFile(file, "runtime:\n  port: 70000\n");
    await expect(loadConfig(file, {})).rejects.toThrow(
      new RegExp(
        `invalid configuration in ${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:\\n  runtime\\.port: `,
      ),
    );
  });

  it("reports a file that cannot be read", async () => {
    const missing = join(dir, "missing.yaml");
    const error = await loadConfig(missing, {}).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).message).toBe(`cannot read config file ${missing}: ENOENT`);
  });
});

describe("environment overrides", () => {
  const FILE = [
    "database:",
    "  url: postgres://file-host/db",
    "runtime:",
    "  port: 9100",
    "models:",
    "  openai:",
    "    baseUrl: https://file.example/v1",
    "secrets:",
    "  masterKeys:",
    `    a: ${KEY_A}`,
    "  activeKeyId: a",
    "",
  ].join("\n");

  it("wins over the file", () => {
    const config = parseConfig(FILE, {
      DATABASE_URL: "postgresql://env-host/db",
      OPENAI_BASE_URL: "http://127.0.0.1:11434/v1",
      SWITCHBOARD_RUNTIME_PORT: "9200",
    });
    expect(config.database.url).toBe("postgresql://env-host/db");
    expect(config.models.openai.baseUrl).toBe("http://127.0.0.1:11434/v1");
    expect(config.runtime.port).toBe(9200);
    expect(typeof config.runtime.port).toBe("number");
  });

  it("ignores empty variables", () => {
    const config = parseConfig(FILE, { DATABASE_URL: "", SWITCHBOARD_RUNTIME_PORT: "" });
    expect(config.database.url).toBe("postgres://file-host/db");
    expect(config.runtime.port).toBe(9100);
  });

  it("SWITCHBOARD_MASTER_KEY with an id adds that key and makes it active, keeping the file's keys", () => {
    const config = parseConfig(FILE, { SWITCHBOARD_MASTER_KEY: `b:${KEY_B}` });
    expect(config.secrets.masterKeys).toEqual({ a: KEY_A, b: KEY_B });
    expect(config.secrets.activeKeyId).toBe("b");
  });

  it('SWITCHBOARD_MASTER_KEY without an id is stored under "env"', () => {
    const config = parseConfig("", { SWITCHBOARD_MASTER_KEY: KEY_B });
    expect(config.secrets.masterKeys).toEqual({ env: KEY_B });
    expect(config.secrets.activeKeyId).toBe("env");
  });

  it("an Anthropic key alone makes Anthropic the default provider, unless the file chose one", () => {
    expect(parseConfig("", { ANTHROPIC_API_KEY: "sk-ant-x" }).models.defaultProvider).toBe(
      "anthropic",
    );
    expect(
      parseConfig("", { ANTHROPIC_API_KEY: "sk-ant-x", OPENAI_API_KEY: "sk-x" }).models
        .defaultProvider,
    ).toBeUndefined();
    expect(
      parseConfig("models:\n  defaultProvider: openai\n", { ANTHROPIC_API_KEY: "sk-ant-x" }).models
        .defaultProvider,
    ).toBe("openai");
  });

  it("a bad port from the environment names the variable", () => {
    const notANumber = configError("", { SWITCHBOARD_RUNTIME_PORT: "abc" }).message;
    expect(notANumber).toMatch(/^ {2}runtime\.port \(from SWITCHBOARD_RUNTIME_PORT\): /m);
    const tooBig = configError("", { SWITCHBOARD_RUNTIME_PORT: "99999" }).message;
    expect(tooBig).toMatch(/^ {2}runtime\.port \(from SWITCHBOARD_RUNTIME_PORT\): .*65535/m);
  });

  it("a bad database URL from the environment names the variable", () => {
    const message = configError("", { DATABASE_URL: "mysql://db/x" }).message;
    expect(message).toMatch(
      /^ {2}database\.url \(from DATABASE_URL\): must be a postgres:\/\/ URL$/m,
    );
  });

  it("a short master key from the environment names the key and the variable", () => {
    const message = configError("", { SWITCHBOARD_MASTER_KEY: `k1:${SHORT_KEY}` }).message;
    expect(message).toMatch(
      /^ {2}secrets\.masterKeys\.k1 \(from SWITCHBOARD_MASTER_KEY\): must be 32 bytes, base64-encoded$/m,
    );
  });

  it("a key id the schema refuses is reported, not silently accepted", () => {
    const message = configError("", { SWITCHBOARD_MASTER_KEY: `bad id:${KEY_A}` }).message;
    expect(message).toContain("secrets.masterKeys.bad id");
    expect(message).toContain("secrets.activeKeyId: must be 1-32 letters, digits, _ or -");
  });
});

describe("configuration errors name the exact key", () => {
  it("a port out of range", () => {
    const message = configError("runtime:\n  port: 70000\n").message;
    expect(message).toMatch(/^invalid configuration in test\.yaml:\n {2}runtime\.port: /);
    expect(message).not.toContain("(from");
  });

  it("a port of the wrong type", () => {
    expect(configError('runtime:\n  port: "9000"\n').message).toMatch(
      /^ {2}runtime\.port: .*number/m,
    );
  });

  it("an unknown top-level key (a typo never falls back to a default)", () => {
    expect(configError("runtme:\n  port: 9100\n").message).toMatch(/^ {2}runtme: unknown key$/m);
  });

  it("an unknown nested key, with its full path", () => {
    expect(configError("runtime:\n  prot: 9100\n").message).toMatch(
      /^ {2}runtime\.prot: unknown key$/m,
    );
  });

  it("every wrong key at once", () => {
    const message = configError("runtme: 1\nlog:\n  level: loud\nruntime:\n  port: 0\n").message;
    expect(message).toMatch(/^ {2}runtme: unknown key$/m);
    expect(message).toMatch(/^ {2}log\.level: /m);
    expect(message).toMatch(/^ {2}runtime\.port: /m);
  });

  it("a master key of the wrong length", () => {
    const message = configError(`secrets:\n  masterKeys:\n    x: ${SHORT_KEY}\n`).message;
    expect(message).toMatch(/^ {2}secrets\.masterKeys\.x: must be 32 bytes, base64-encoded$/m);
  });

  it("an active key id that names no configured key", () => {
    const message = configError(
      `secrets:\n  masterKeys:\n    a: ${KEY_A}\n  activeKeyId: b\n`,
    ).message;
    expect(message).toMatch(/^ {2}secrets\.activeKeyId: /m);
  });

  it("a URL that is not http(s)", () => {
    expect(configError("models:\n  openai:\n    baseUrl: ftp://example.org\n").message).toMatch(
      /^ {2}models\.openai\.baseUrl: /m,
    );
  });
});

describe("malformed files", () => {
  it("invalid YAML gives a clear error naming the source", () => {
    const error = configError("runtime: [unclosed\n", {}, "broken.yaml");
    expect(error.message).toMatch(/^broken\.yaml is not valid YAML: /);
  });

  it("a top level that is not a mapping is refused", () => {
    expect(configError("- a\n- b\n", {}, "list.yaml").message).toBe(
      "list.yaml must be a YAML mapping at the top level",
    );
    expect(configError("42\n", {}, "scalar.yaml").message).toBe(
      "scalar.yaml must be a YAML mapping at the top level",
    );
    expect(configError('"just a string"\n', {}, "string.yaml").message).toBe(
      "string.yaml must be a YAML mapping at the top level",
    );
  });
});

describe("the parsed configuration", () => {
  it("is deeply frozen", () => {
    const config = parseConfig(`secrets:\n  masterKeys:\n    a: ${KEY_A}\n`, {});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.runtime)).toBe(true);
    expect(Object.isFrozen(config.models.openai)).toBe(true);
    expect(Object.isFrozen(config.secrets.masterKeys)).toBe(true);
    expect(() => {
      config.runtime.port = 1;
    }).toThrow(TypeError);
    expect(() => {
      config.secrets.masterKeys.b = KEY_B;
    }).toThrow(TypeError);
    expect(config.runtime.port).toBe(9000);
    expect(config.secrets.masterKeys).toEqual({ a: KEY_A });
  });
});

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the real CLI under Node 24 with a controlled environment (no inherited overrides). */
function runCli(args: readonly string[], cwd: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE_24, [CLI, ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? "", HOME: cwd },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => {
      resolve({ code, stdout, stderr });
    });
  });
}

describe("switchboard config check", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "sb-config-cli-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("exits 0 for a valid file and starts nothing", async () => {
    const file = join(dir, "good.yaml");
    // A data directory that would be created by anything that starts (PGlite, master keys).
    await writeFile(
      file,
      `dataDir: ${join(dir, "data")}\nruntime:\n  port: 9100\nsecrets:\n  masterKeys:\n    a: ${KEY_A}\n`,
    );
    const result = await runCli(["config", "check", file], dir);
    expect(result.stderr).not.toContain("switchboard:");
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${file}: valid\n`);
    expect((await readdir(dir)).sort()).toEqual(["good.yaml"]);
  });

  it("exits non-zero and names the key on stderr for a bad file", async () => {
    const file = join(dir, "bad.yaml");
    await writeFile(file, `dataDir: ${join(dir, "data")}\nruntime:\n  port: 70000\nruntme: {}\n`);
    const result = await runCli(["config", "check", file], dir);
    expect(result.code).not.toBe(0);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(`switchboard: invalid configuration in ${file}:`);
    expect(result.stderr).toMatch(/^ {2}runtime\.port: /m);
    expect(result.stderr).toMatch(/^ {2}runtme: unknown key$/m);
    expect((await readdir(dir)).sort()).toEqual(["bad.yaml"]);
  });

  it("exits non-zero for invalid YAML and for a missing file", async () => {
    const file = join(dir, "broken.yaml");
    await writeFile(file, "runtime: [unclosed\n");
    const [broken, missing] = await Promise.all([
      runCli(["config", "check", file], dir),
      runCli(["config", "check", join(dir, "nope.yaml")], dir),
    ]);
    expect(broken.code).not.toBe(0);
    expect(broken.stderr).toContain(`${file} is not valid YAML`);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain("cannot read config file");
    expect(missing.stderr).toContain("ENOENT");
  });
});
