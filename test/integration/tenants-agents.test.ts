import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../src/audit/audit-log.ts";
import { AgentService } from "../../src/agents/service.ts";
import { parseConfig } from "../../src/config/load.ts";
import { SecretCipher, sha256Hex } from "../../src/secrets/cipher.ts";
import { AppError, type ErrorCode } from "../../src/shared/errors.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { ProviderKeys } from "../../src/tenants/provider-keys.ts";
import { TenantRepository } from "../../src/tenants/repository.ts";
import { Entitlements } from "../../src/tenants/entitlements.ts";
import { TenantService, type NewTenant } from "../../src/tenants/service.ts";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/database.ts";

const TEST_ACTOR: Actor = { id: "@tester:acme.test", via: "cli" };

const MASTER_KEY = Buffer.alloc(32, 9).toString("base64");

/** Awaits a promise that must reject with an AppError of this code, and returns it. */
async function appError(promise: Promise<unknown>, code: ErrorCode): Promise<AppError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AppError);
  expect((error as AppError).code).toBe(code);
  return error as AppError;
}

function tenantInput(overrides: Partial<NewTenant> = {}): NewTenant {
  return {
    slug: "acme",
    name: "Acme Corp",
    serverName: "acme.test",
    homeserverUrl: "http://127.0.0.1:8008/",
    ...overrides,
  };
}

describe.each(BACKENDS)("tenants, agents and provider keys on %s", (kind) => {
  let database: TestDatabase;
  let cipher: SecretCipher;
  let tenants: TenantService;
  let agents: AgentService;
  let providerKeys: ProviderKeys;
  let acme: TenantId;
  let globex: TenantId;

  async function count(table: string): Promise<number> {
    const [row]: { n: number | string }[] = await database.knex(table).count({ n: "*" });
    return Number(row?.n);
  }

  /** Every column of every row of a table, as one string, to search for leaked secrets. */
  async function tableText(table: string): Promise<string> {
    return JSON.stringify(await database.knex(table).select());
  }

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    // Wired as src/main.ts wires them, with a config parsed the real way.
    const config = parseConfig("", { SWITCHBOARD_MASTER_KEY: `test:${MASTER_KEY}` });
    cipher = new SecretCipher(config.secrets.masterKeys, config.secrets.activeKeyId ?? "test");
    // Enterprise (unlimited): these tests make several agents per tenant; plan limits are tested in entitlements tests.
    tenants = new TenantService(database.knex, new TenantRepository(cipher), "enterprise");
    agents = new AgentService(
      database.knex,
      config.models,
      new Entitlements(database.knex, config.plans, config.defaultPlan),
    );
    providerKeys = new ProviderKeys(database.knex, cipher);
  });

  afterAll(async () => {
    await database.drop();
  });

  describe("tenants", () => {
    it("creates a tenant with its homeserver and fresh tokens", async () => {
      const { tenant, homeserver } = await tenants.create(tenantInput());
      acme = tenant.id;
      expect(tenant).toMatchObject({ slug: "acme", name: "Acme Corp", status: "active" });
      expect(tenant.createdAt).toBeInstanceOf(Date);
      expect(homeserver).toMatchObject({
        tenantId: tenant.id,
        serverName: "acme.test",
        clientUrl: "http://127.0.0.1:8008",
        registrationId: "switchboard-acme",
      });
      expect(homeserver.asToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(homeserver.hsToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(homeserver.asToken).not.toBe(homeserver.hsToken);
      expect(homeserver.hsTokenSha256).toBe(sha256Hex(homeserver.hsToken));

      expect(await tenants.requireBySlug("acme")).toEqual(tenant);
      expect(await tenants.requireHomeserver(tenant)).toEqual(homeserver);

      const second = await tenants.create(
        tenantInput({ slug: "globex", name: "Globex", serverName: "globex.test:8448" }),
      );
      globex = second.tenant.id;
      expect(second.homeserver.asToken).not.toBe(homeserver.asToken);
      expect(second.homeserver.hsToken).not.toBe(homeserver.hsToken);
    });

    it("stores the appservice tokens encrypted, never in the clear", async () => {
      const homeserver = await tenants.requireHomeserver(await tenants.requireBySlug("acme"));
      const stored = await tableText("homeservers");
      expect(stored).not.toContain(homeserver.asToken);
      expect(stored).not.toContain(homeserver.hsToken);
      const [row] = (await database.knex("homeservers").where({ tenant_id: acme })) as {
        as_token_encrypted: string;
        hs_token_encrypted: string;
        hs_token_sha256: string;
      }[];
      expect(row?.as_token_encrypted).toMatch(/^v1:test:/);
      expect(row?.hs_token_encrypted).toMatch(/^v1:test:/);
      expect(cipher.decrypt(row!.as_token_encrypted)).toBe(homeserver.asToken);
      expect(cipher.decrypt(row!.hs_token_encrypted)).toBe(homeserver.hsToken);
      expect(row?.hs_token_sha256).toBe(sha256Hex(homeserver.hsToken));
    });

    it("refuses bad input with a message naming each field, and writes nothing", async () => {
      const before = [await count("tenants"), await count("homeservers")];
      const cases: [Partial<NewTenant>, RegExp][] = [
        [{ slug: "Acme" }, /^slug: must be 1-32 lowercase letters, digits or '-'/],
        [{ slug: "-acme" }, /^slug: must be 1-32 lowercase letters/],
        [{ slug: "a".repeat(33) }, /^slug: must be 1-32 lowercase letters/],
        [{ slug: "" }, /^slug: /],
        [{ name: "   " }, /^name: /],
        [{ name: "n".repeat(101) }, /^name: /],
        [{ serverName: "acme test" }, /^serverName: must be a hostname, optionally with :port$/],
        [{ serverName: "acme.test:http" }, /^serverName: must be a hostname/],
        [{ homeserverUrl: "ftp://acme.test" }, /^homeserverUrl: /],
        [{ homeserverUrl: "not a url" }, /^homeserverUrl: /],
      ];
      for (const [overrides, message] of cases) {
        const error = await appError(
          tenants.create(tenantInput({ slug: "fresh", serverName: "fresh.test", ...overrides })),
          "bad_request",
        );
        expect(error.message).toMatch(message);
        expect(error.details).toHaveProperty("problems");
      }
      const several = await appError(
        tenants.create(tenantInput({ slug: "Bad Slug", serverName: "bad server" })),
        "bad_request",
      );
      expect(several.message).toContain("slug: ");
      expect(several.message).toContain("serverName: ");
      const unknown = await appError(
        tenants.create({ ...tenantInput({ slug: "fresh" }), plan: "gold" } as NewTenant),
        "bad_request",
      );
      expect(unknown.message).toContain('"plan"');
      expect([await count("tenants"), await count("homeservers")]).toEqual(before);
    });

    it("a duplicate slug or server name is a conflict, and writes nothing", async () => {
      const before = [await count("tenants"), await count("homeservers")];
      const slug = await appError(
        tenants.create(tenantInput({ serverName: "another.test" })),
        "conflict",
      );
      expect(slug.message).toBe('a tenant with slug "acme" already exists');
      const server = await appError(tenants.create(tenantInput({ slug: "acme-two" })), "conflict");
      expect(server.message).toBe('server name "acme.test" is already used by another tenant');
      expect([await count("tenants"), await count("homeservers")]).toEqual(before);
    });

    it("an unknown slug is not found", async () => {
      const error = await appError(tenants.requireBySlug("nobody"), "not_found");
      expect(error.message).toBe('tenant "nobody" not found');
    });
  });

  describe("agents", () => {
    it("creates an agent with the defaults", async () => {
      const ada = await agents.create(acme, { name: "ada" }, TEST_ACTOR);
      expect(ada).toEqual({
        id: ada.id,
        tenantId: acme,
        name: "ada",
        displayName: "Ada",
        avatarUrl: null,
        instructions: "",
        provider: "openai",
        model: "gpt-4o-mini",
        baseUrl: null,
        temperature: 0.7,
        maxTokens: 1024,
        keySource: "managed",
        triggerPolicy: "mentions",
        memoryScope: "shared",
        status: "active",
      });
      expect(await agents.get(acme, "ada")).toEqual(ada);
    });

    it("takes the given settings, and the provider's default model when none is given", async () => {
      const claude = await agents.create(
        acme,
        {
          name: "claude",
          displayName: "Claude the Helper",
          provider: "anthropic",
          temperature: 0.2,
          triggerPolicy: "all",
          memoryScope: "private",
          instructions: "Be brief.",
        },
        TEST_ACTOR,
      );
      expect(claude).toMatchObject({
        displayName: "Claude the Helper",
        provider: "anthropic",
        model: "claude-sonnet-4-5",
        temperature: 0.2,
        triggerPolicy: "all",
        memoryScope: "private",
        instructions: "Be brief.",
      });
    });

    it("refuses bad settings with a message naming the field, and writes nothing", async () => {
      const before = await count("agents");
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ name: "Ada!" }, /^name: must be 1-32 characters: lowercase letters, digits/],
        [{ name: "" }, /^name: /],
        [{ name: "x".repeat(33) }, /^name: /],
        [{ name: "tempo", temperature: 5 }, /^temperature: .*2/],
        [
          { name: "policy", triggerPolicy: "sometimes" },
          /^triggerPolicy: .*"mentions"\|"dms"\|"all"/,
        ],
        [{ name: "prov", provider: "mistral" }, /^provider: /],
        [{ name: "url", baseUrl: "javascript:alert(1)" }, /^baseUrl: /],
        [{ name: "tokens", maxTokens: 1.5 }, /^maxTokens: /],
        [
          { name: "avatar", avatarUrl: "https://example.org/a.png" },
          /^avatarUrl: must be an mxc:\/\/ URL$/,
        ],
      ];
      for (const [input, message] of cases) {
        const error = await appError(agents.create(acme, input, TEST_ACTOR), "bad_request");
        expect(error.message).toMatch(message);
      }
      const unknown = await appError(
        agents.create(acme, { name: "x", colour: "red" }, TEST_ACTOR),
        "bad_request",
      );
      expect(unknown.message).toContain('"colour"');
      const notAnObject = await appError(agents.create(acme, "ada", TEST_ACTOR), "bad_request");
      expect(notAnObject.message).toMatch(/^input: /);
      expect(await count("agents")).toBe(before);
    });

    it("a duplicate name in the same tenant is a conflict", async () => {
      const before = await count("agents");
      const error = await appError(agents.create(acme, { name: "ada" }, TEST_ACTOR), "conflict");
      expect(error.message).toBe('an agent named "ada" already exists');
      expect(await count("agents")).toBe(before);
    });

    it("another tenant may use the same name", async () => {
      const theirs = await agents.create(
        globex,
        { name: "ada", displayName: "Globex Ada" },
        TEST_ACTOR,
      );
      expect(theirs.tenantId).toBe(globex);
      expect((await agents.get(acme, "ada")).displayName).toBe("Ada");
      expect((await agents.get(globex, "ada")).displayName).toBe("Globex Ada");
    });

    it("updates an agent's settings", async () => {
      const updated = await agents.update(
        acme,
        "ada",
        {
          temperature: 1.2,
          triggerPolicy: "all",
          status: "paused",
        },
        TEST_ACTOR,
      );
      expect(updated).toMatchObject({
        name: "ada",
        temperature: 1.2,
        triggerPolicy: "all",
        status: "paused",
      });
      expect(await agents.get(acme, "ada")).toEqual(updated);
      // Untouched settings stay.
      expect(updated.model).toBe("gpt-4o-mini");
      expect(updated.displayName).toBe("Ada");
    });

    it("refuses a bad update and leaves the agent as it was", async () => {
      const before = await agents.get(acme, "ada");
      const error = await appError(
        agents.update(acme, "ada", { temperature: -1, memoryScope: "everyone" }, TEST_ACTOR),
        "bad_request",
      );
      expect(error.message).toContain("temperature: ");
      expect(error.message).toContain("memoryScope: ");
      expect(await agents.get(acme, "ada")).toEqual(before);
    });

    it("lists the tenant's agents by name", async () => {
      expect((await agents.list(acme)).map((agent) => agent.name)).toEqual(["ada", "claude"]);
      expect((await agents.list(globex)).map((agent) => agent.name)).toEqual(["ada"]);
    });

    it("another tenant's agent is not found", async () => {
      const error = await appError(agents.get(globex, "claude"), "not_found");
      expect(error.message).toBe('agent "claude" not found');
      await appError(agents.update(globex, "claude", { temperature: 0 }, TEST_ACTOR), "not_found");
      expect((await agents.get(acme, "claude")).temperature).toBe(0.2);
    });
  });

  describe("provider keys", () => {
    const OPENAI_KEY = "sk-proj-abcdefghijklmnop1234";

    it("stores a key encrypted and shows only a hint of its last four characters", async () => {
      const { hint } = await providerKeys.set(acme, "openai", `  ${OPENAI_KEY}\n`, TEST_ACTOR);
      expect(hint).toBe("…1234");
      expect(await providerKeys.list(acme)).toEqual([{ provider: "openai", hint: "…1234" }]);

      const stored = await tableText("provider_keys");
      expect(stored).not.toContain(OPENAI_KEY);
      expect(stored).not.toContain("abcdefghijklmnop");
      const [row] = (await database.knex("provider_keys").where({ tenant_id: acme })) as {
        key_encrypted: string;
        key_hint: string;
      }[];
      expect(row?.key_hint).toBe("…1234");
      expect(cipher.decrypt(row!.key_encrypted)).toBe(OPENAI_KEY);
    });

    it("setting a key again replaces it", async () => {
      const { hint } = await providerKeys.set(
        acme,
        "openai",
        "sk-proj-replacement-9876",
        TEST_ACTOR,
      );
      expect(hint).toBe("…9876");
      const rows = (await database.knex("provider_keys").where({ tenant_id: acme })) as {
        key_encrypted: string;
      }[];
      expect(rows).toHaveLength(1);
      expect(cipher.decrypt(rows[0]!.key_encrypted)).toBe("sk-proj-replacement-9876");
    });

    it("refuses a key that is too short, too long or has spaces, and writes nothing", async () => {
      const before = await tableText("provider_keys");
      for (const bad of ["short", "       ", "sk-with space-inside", "k".repeat(513)]) {
        const error = await appError(
          providerKeys.set(acme, "anthropic", bad, TEST_ACTOR),
          "bad_request",
        );
        expect(error.message).toBe("the anthropic key must be 8-512 characters without spaces");
      }
      expect(await tableText("provider_keys")).toBe(before);
    });

    it("another tenant neither sees nor removes the key", async () => {
      expect(await providerKeys.list(globex)).toEqual([]);
      expect(await providerKeys.remove(globex, "openai", TEST_ACTOR)).toBe(false);
      expect(await providerKeys.list(acme)).toEqual([{ provider: "openai", hint: "…9876" }]);
    });

    it("removes a key, once", async () => {
      expect(await providerKeys.remove(acme, "openai", TEST_ACTOR)).toBe(true);
      expect(await providerKeys.remove(acme, "openai", TEST_ACTOR)).toBe(false);
      expect(await providerKeys.list(acme)).toEqual([]);
      expect(await count("provider_keys")).toBe(0);
    });
  });
});
