import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TenantId } from "../../src/shared/ids.ts";
import {
  startBillingTest,
  subscribe,
  subscriptionRow,
  type BillingTest,
} from "../support/billing.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import type { Browser } from "../support/portal.ts";

describe.each(BACKENDS)("metering managed-key tokens (%s)", (backend) => {
  let b: BillingTest;
  let owner: Browser;

  /** An answered turn today by the tenant's agent, paid by the managed key unless said otherwise. */
  const turn = async (
    tenantId: TenantId,
    agentId: string,
    tokens: number,
    keySource: "managed" | "own" = "managed",
  ): Promise<void> => {
    await b.t.database.knex("turns").insert({
      tenant_id: tenantId,
      event_id: `$${randomBytes(8).toString("hex")}`,
      agent_id: agentId,
      room_id: "!room:example.test",
      status: "answered",
      key_source: keySource,
      input_tokens: tokens - 10,
      output_tokens: 10,
      finished_at: new Date(),
    });
  };
  const customerOf = async (tenantId: TenantId): Promise<string> =>
    String((await subscriptionRow(b.t, tenantId))?.stripe_customer_id);
  const metering = () => {
    const found = b.t.app.billing.metering;
    if (found === null) throw new Error("billing is off");
    return found;
  };

  beforeAll(async () => {
    b = await startBillingTest(backend);
    owner = await b.t.signedIn("owner@example.org");
  });
  afterAll(async () => {
    await b.stop();
  });

  it("reports each day's new tokens once per increment, and never twice after a lost answer", async () => {
    const { id } = await seedTenant(b.t, "metered", [{ browser: owner, role: "owner" }]);
    await subscribe(b, owner, id, "starter");
    const agent = await b.t.app.agents.create(id, { name: "ada" }, { id: "test", via: "cli" });
    const customer = await customerOf(id);
    await turn(id, agent.id, 1_000);
    await turn(id, agent.id, 500);

    expect(await metering().reportAll()).toBe(1_500);
    expect(b.fake.meterTotal(customer)).toBe(1_500);
    expect(await metering().reportAll()).toBe(0);
    expect(b.fake.meterEvents.filter((e) => e.identifier === `${id}:${today()}:1`)).toHaveLength(1);

    // Stripe records the next increment but every answer is lost: the run fails...
    await turn(id, agent.id, 200);
    b.fake.loseNextResponses(100);
    await expect(metering().reportTenant(id, customer)).rejects.toThrow();
    b.fake.loseNextResponses(0);
    expect(b.fake.meterTotal(customer)).toBe(1_700);
    // ...and the retry sends the same increment, which Stripe counts once.
    await turn(id, agent.id, 100);
    expect(await metering().reportAll()).toBe(200);
    expect(b.fake.meterTotal(customer)).toBe(1_700);
    expect(await metering().reportAll()).toBe(100);
    expect(b.fake.meterTotal(customer)).toBe(1_800);

    // Long after (idempotency keys expired), a lost answer is retried: Stripe refuses the duplicate identifier.
    await turn(id, agent.id, 50);
    b.fake.loseNextResponses(100);
    await expect(metering().reportTenant(id, customer)).rejects.toThrow();
    b.fake.loseNextResponses(0);
    b.fake.forgetIdempotencyKeys();
    expect(await metering().reportAll()).toBe(50);
    expect(b.fake.meterTotal(customer)).toBe(1_850);
    const [report] = (await b.t.database.knex("meter_reports").where({ tenant_id: id })) as {
      tokens_reported: string | number;
      increments: number;
      pending_tokens: unknown;
    }[];
    expect(Number(report?.tokens_reported)).toBe(1_850);
    expect(report?.increments).toBe(4);
    expect(report?.pending_tokens).toBeNull();
  });

  it("reports nothing for plans that do not bill overage, or for tokens on the tenant's own key", async () => {
    const { id } = await seedTenant(b.t, "freeby", [{ browser: owner, role: "owner" }]);
    const agent = await b.t.app.agents.create(id, { name: "bo" }, { id: "test", via: "cli" });
    await turn(id, agent.id, 999);
    // A customer exists (an abandoned checkout) but the plan is Free.
    expect(
      (await owner.request(`/api/v1/tenants/${id}/billing/checkout`, { json: { plan: "pro" } }))
        .statusCode,
    ).toBe(200);
    const customer = await customerOf(id);
    expect(await metering().reportTenant(id, customer)).toBe(0);

    const own = await seedTenant(b.t, "ownkey", [{ browser: owner, role: "owner" }]);
    await subscribe(b, owner, own.id, "starter");
    const ownAgent = await b.t.app.agents.create(
      own.id,
      { name: "cy" },
      { id: "test", via: "cli" },
    );
    await turn(own.id, ownAgent.id, 777, "own");
    expect(await metering().reportTenant(own.id, await customerOf(own.id))).toBe(0);
    expect(b.fake.meterTotal(customer)).toBe(0);
  });
});

function today(): string {
  return new Date().toISOString().slice(0, 10);
}
