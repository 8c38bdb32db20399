import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withSystemTransaction } from "../../src/db/tenant-transaction.ts";
import { AgentService } from "../../src/agents/service.ts";
import type { Actor } from "../../src/audit/audit-log.ts";
import type { CommandServices } from "../../src/commands/define.ts";
import { agentCommands } from "../../src/commands/definitions/agents.ts";
import { parseCommand } from "../../src/commands/parser.ts";
import type { CommandContext } from "../../src/commands/types.ts";
import { PlanSchema } from "../../src/config/plans.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { isAppError } from "../../src/shared/errors.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { Entitlements } from "../../src/tenants/entitlements.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

const ACTOR: Actor = { id: "@admin:acme.example.test", via: "chat" };
const FREE_AGENTS = "the Free plan allows 1 agent; upgrade to add more";

/** Eta's escaping, to find a message in a page as the browser receives it. */
const html = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");

/** A plan whose tenants must bring their own model key. */
const BYOK_PLAN = PlanSchema.parse({
  name: "Bring Your Own Key",
  agents: 5,
  messagesPerDay: null,
  managedTokensPerMonth: 0,
  storageGb: null,
  requiresOwnKey: true,
});

describe.each(BACKENDS)("plans enforced by the entitlements service (%s)", (backend) => {
  let t: PortalTest;
  let owner: Browser;
  let acme: { id: TenantId; slug: string };
  let chat: ReturnType<typeof agentCommands>;

  const agentNames = async (id: TenantId): Promise<string[]> =>
    (await t.app.database
      .knex("agents")
      .where({ tenant_id: id })
      .orderBy("name")
      .pluck("name")) as string[];
  const auditCount = async (id: TenantId): Promise<number> =>
    Number(
      (
        (await t.app.database
          .knex("audit_log")
          .where({ tenant_id: id })
          .count({ n: "*" })
          .first()) as { n: string | number }
      ).n,
    );
  const setPlan = (id: TenantId, plan: string) =>
    t.app.database.knex("tenants").where({ id }).update({ plan });
  /** What the chat command answers, or the message it is refused with. */
  const chatSays = async (tenantId: TenantId, text: string): Promise<string> => {
    const parsed = parseCommand(text, chat);
    if (parsed.kind !== "command") throw new Error(`not a command: ${text}`);
    const context = { tenant: { id: tenantId }, by: ACTOR } as unknown as CommandContext;
    try {
      return (await parsed.command.run(context, parsed.args)).text;
    } catch (error) {
      if (isAppError(error)) return error.message;
      throw error;
    }
  };

  beforeAll(async () => {
    t = await startPortalTest({ database: backend });
    owner = await t.signedIn("owner@example.org");
    acme = await seedTenant(t, "acme", [{ browser: owner, role: "owner" }]);
    chat = agentCommands({
      agents: t.app.agents,
      agentPrefix: t.config.runtime.agentPrefix,
    } as unknown as CommandServices);
  });
  afterAll(async () => {
    await t.stop();
  });

  it("Free: a second agent is refused, naming the plan, by the service, chat, API and page alike; nothing written", async () => {
    expect(t.config.defaultPlan).toBe("free");
    await t.app.agents.create(acme.id, { name: "ada" }, ACTOR);
    const before = await auditCount(acme.id);

    const refused = await t.app.agents
      .create(acme.id, { name: "bob" }, ACTOR)
      .catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: "limit_reached", message: FREE_AGENTS, httpStatus: 403 });
    expect(await chatSays(acme.id, "agent create bob")).toBe(FREE_AGENTS);
    const api = await owner.request(`/api/v1/tenants/${acme.id}/agents`, { json: { name: "bob" } });
    expect(api.statusCode).toBe(403);
    expect(api.json()).toEqual({
      error: {
        code: "limit_reached",
        message: FREE_AGENTS,
        details: { plan: "free", planName: "Free", limit: "agents", allowed: 1, current: 1 },
      },
    });
    const page = await owner.request("/t/acme/agents/new", { form: { name: "bob" } });
    expect(page.statusCode).toBe(403);
    expect(page.body).toContain(html(FREE_AGENTS));

    expect(await agentNames(acme.id)).toEqual(["ada"]);
    expect(await auditCount(acme.id)).toBe(before);
  });

  it("a paused agent may be made, but re-activating it over the limit is refused until another is paused", async () => {
    await t.app.agents.create(acme.id, { name: "cy", status: "paused" }, ACTOR);
    const message =
      "the Free plan allows 1 active agent; pause another agent or upgrade to activate this one";
    await expect(
      t.app.agents.update(acme.id, "cy", { status: "active" }, ACTOR),
    ).rejects.toMatchObject({ code: "limit_reached", message });
    expect(await chatSays(acme.id, "agent set cy status active")).toBe(message);
    // Other changes to a paused agent are fine.
    await t.app.agents.update(acme.id, "cy", { instructions: "Be brief." }, ACTOR);
    await t.app.agents.update(acme.id, "ada", { status: "paused" }, ACTOR);
    await t.app.agents.update(acme.id, "cy", { status: "active" }, ACTOR);
    expect((await t.app.agents.get(acme.id, "cy")).status).toBe("active");
    await t.app.agents.remove(acme.id, "cy", ACTOR);
    await t.app.agents.update(acme.id, "ada", { status: "active" }, ACTOR);
  });

  it("Pro: ten agents, the eleventh is refused", async () => {
    const pro = await seedTenant(t, "pro-co");
    await setPlan(pro.id, "pro");
    for (let i = 1; i <= 10; i++) await t.app.agents.create(pro.id, { name: `agent${i}` }, ACTOR);
    await expect(t.app.agents.create(pro.id, { name: "agent11" }, ACTOR)).rejects.toMatchObject({
      code: "limit_reached",
      message: "the Professional plan allows 10 agents; upgrade to add more",
    });
    expect(await agentNames(pro.id)).toHaveLength(10);
  });

  it("concurrent creations on Free: exactly one wins", async () => {
    const race = await seedTenant(t, "race");
    const results = await Promise.allSettled(
      ["one", "two", "three"].map((name) => t.app.agents.create(race.id, { name }, ACTOR)),
    );
    expect(results.filter((result) => result.status === "fulfilled")).toHaveLength(1);
    for (const result of results)
      if (result.status === "rejected")
        expect(result.reason).toMatchObject({ code: "limit_reached" });
    expect(await agentNames(race.id)).toHaveLength(1);
  });

  it("a plan that requires the tenant's own key refuses the managed key (create and change)", async () => {
    const plans = {
      free: t.config.plans["free"] as never,
      byok: BYOK_PLAN,
    };
    const entitlements = new Entitlements(t.app.database.knex, plans, "free");
    const agents = new AgentService(t.app.database.knex, t.config.models, entitlements);
    const byok = await seedTenant(t, "byok");
    await setPlan(byok.id, "byok");
    const message =
      'the Bring Your Own Key plan requires your own model key; set the agent\'s key source to "own" and add a provider key';
    await expect(agents.create(byok.id, { name: "ada" }, ACTOR)).rejects.toMatchObject({
      code: "limit_reached",
      message,
    });
    await agents.create(byok.id, { name: "ada", keySource: "own" }, ACTOR);
    await expect(
      agents.update(byok.id, "ada", { keySource: "managed" }, ACTOR),
    ).rejects.toMatchObject({ message });
    expect((await agents.get(byok.id, "ada")).keySource).toBe("own");
  });

  it("says when the managed key may not pay: own-key plans, and a used-up month without overage", async () => {
    const plans = {
      free: t.config.plans["free"] as never,
      byok: BYOK_PLAN,
      metered: PlanSchema.parse({
        name: "Metered",
        agents: 5,
        messagesPerDay: null,
        managedTokensPerMonth: 1_000,
        storageGb: null,
        billsOverage: true,
      }),
    };
    const entitlements = new Entitlements(t.app.database.knex, plans, "free");
    const knex = t.app.database.knex;
    const tenant = await seedTenant(t, "allowance");
    const refusal = () =>
      withSystemTransaction(knex, async (trx) =>
        entitlements.managedKeyRefusal(trx, tenant.id, await entitlements.planIn(trx, tenant.id)),
      );
    expect(await refusal()).toBeNull();
    await knex("usage_daily").insert({
      tenant_id: tenant.id,
      day: knex.raw("(now() at time zone 'utc')::date"),
      managed_tokens: 199_999,
    });
    expect(await refusal()).toBeNull();
    await knex("usage_daily").where({ tenant_id: tenant.id }).update({ managed_tokens: 200_000 });
    expect(await refusal()).toMatch(/used the 200,000 managed-model tokens of the Free plan/);
    // Last month's tokens do not count.
    await knex("usage_daily")
      .where({ tenant_id: tenant.id })
      .update({
        day: knex.raw("(date_trunc('month', now() at time zone 'utc') - interval '1 day')::date"),
      });
    expect(await refusal()).toBeNull();
    await setPlan(tenant.id, "byok");
    expect(await refusal()).toMatch(/^The Bring Your Own Key plan needs your own model key/);
    // A plan that bills overage never refuses for tokens.
    await knex("usage_daily").insert({
      tenant_id: tenant.id,
      day: knex.raw("(now() at time zone 'utc')::date"),
      managed_tokens: 5_000,
    });
    await setPlan(tenant.id, "metered");
    expect(await refusal()).toBeNull();
  });

  it("counts messages atomically: concurrent reservations stop exactly at the daily limit", async () => {
    const busy = await seedTenant(t, "busy");
    await t.app.database.knex("usage_daily").insert({
      tenant_id: busy.id,
      day: t.app.database.knex.raw("(now() at time zone 'utc')::date"),
      messages: 95,
    });
    const reserve = () =>
      withTenant(t.app.database.knex, busy.id, (trx) =>
        t.app.entitlements.reserveMessage(trx, busy.id),
      );
    const results = await Promise.all(Array.from({ length: 10 }, reserve));
    expect(results.filter((result) => result.allowed)).toHaveLength(5);
    const after = await withTenant(t.app.database.knex, busy.id, (trx) =>
      t.app.entitlements.messageAllowance(trx, busy.id),
    );
    expect(after).toMatchObject({ allowed: false, used: 100, limit: 100 });
    // Unlimited plans always count.
    await setPlan(busy.id, "enterprise");
    expect(await reserve()).toMatchObject({ allowed: true, used: 101, limit: null });
  });

  it("bridges: refused on Free, one on Starter, unlimited on Enterprise", async () => {
    const bridged = await seedTenant(t, "bridged");
    const check = (enabled: number) =>
      withTenant(t.app.database.knex, bridged.id, (trx) =>
        t.app.entitlements.assertCanEnableBridge(trx, bridged.id, enabled),
      );
    await expect(check(0)).rejects.toMatchObject({
      code: "limit_reached",
      message:
        "the Free plan does not include bridges; upgrade to connect Slack, Discord or Telegram",
    });
    await setPlan(bridged.id, "starter");
    await check(0);
    await expect(check(1)).rejects.toMatchObject({
      message: "the Starter plan allows 1 bridge; upgrade to add more",
    });
    await setPlan(bridged.id, "enterprise");
    await check(50);
  });

  it("a plan missing from config gets the default plan's limits, not unlimited", async () => {
    const gone = await seedTenant(t, "gone");
    await setPlan(gone.id, "retired");
    expect(await t.app.entitlements.planOf(gone.id)).toMatchObject({
      id: "retired",
      known: false,
      plan: { name: "Free", agents: 1 },
    });
  });
});
