import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withSystemTransaction } from "../../src/db/tenant-transaction.ts";
import { tenantHolds } from "../../src/tenants/holds.ts";
import { messageFrom, type MatrixTestUser } from "../support/matrix-user.ts";
import { startStack, TEST_MODEL_KEY, type StackTenant, type TestStack } from "../support/stack.ts";

const LIMIT_NOTICE =
  "This tenant has used its 100 messages for today on the Free plan; agents answer again tomorrow (UTC) or after an upgrade.";
const HANDLED_TIMEOUT_MS = 20_000;

describe("plan limits and suspension in real rooms", () => {
  let stack: TestStack;

  /** Waits until the runtime has handled the event (so anything it would post is posted). */
  const handled = async (eventId: string): Promise<void> => {
    await expect
      .poll(
        async () =>
          (
            (await stack.database
              .knex("inbound_events")
              .where({ event_id: eventId })
              .first("status")) as { status: string } | undefined
          )?.status,
        { timeout: HANDLED_TIMEOUT_MS },
      )
      .toBe("done");
  };
  /** The agent's messages in the room as the user sees them now (after catching up). */
  const said = async (user: MatrixTestUser, roomId: string, agent: string) => {
    await user.sync(0);
    return (user.timeline.get(roomId) ?? []).filter(messageFrom(agent));
  };

  beforeAll(async () => {
    stack = await startStack({ defaultPlan: "free" });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  describe("Free, with today's 100 messages used", () => {
    let acme: StackTenant;

    beforeAll(async () => {
      acme = await stack.addTenant("acme");
      await acme.createAgent({ name: "ada" });
      // Messages 1..100 already counted, rather than sent.
      await stack.database.knex("usage_daily").insert({
        tenant_id: acme.tenant.id,
        day: stack.database.knex.raw("(now() at time zone 'utc')::date"),
        messages: 100,
      });
    });

    it("the 101st message gets the notice, not an answer; once per room per day", async () => {
      const alice = await acme.user("alice");
      const ada = acme.agentUserId("ada");
      const requestsBefore = stack.model.requests.length;

      const roomId = await alice.openDm(ada);
      await alice.sendText(roomId, "message 101");
      const notice = await alice.waitForEvent(roomId, messageFrom(ada));
      expect(notice.content).toMatchObject({ msgtype: "m.notice", body: LIMIT_NOTICE });

      const second = await alice.sendText(roomId, "message 102");
      await handled(second);
      expect(await said(alice, roomId, ada)).toHaveLength(1);

      // Another room gets its own notice.
      const other = await alice.createRoom({ invite: [ada] });
      await alice.waitForJoin(other, ada);
      await alice.sendText(other, "Ada, are you there?");
      const otherNotice = await alice.waitForEvent(other, messageFrom(ada));
      expect(otherNotice.content.body).toBe(LIMIT_NOTICE);

      // No model call, nothing counted beyond the limit, the turns recorded as refused.
      expect(stack.model.requests.length).toBe(requestsBefore);
      const usage = (await stack.database
        .knex("usage_daily")
        .where({ tenant_id: acme.tenant.id })
        .first("messages")) as { messages: number };
      expect(usage.messages).toBe(100);
      const turns = (await stack.database
        .knex("turns")
        .where({ tenant_id: acme.tenant.id })
        .pluck("error")) as string[];
      expect(turns).toEqual([
        "daily message limit reached",
        "daily message limit reached",
        "daily message limit reached",
      ]);
    });
  });

  describe("a suspended tenant", () => {
    let bravo: StackTenant;

    beforeAll(async () => {
      bravo = await stack.addTenant("bravo");
      await bravo.createAgent({ name: "ada" });
    });

    it("answers while active, then posts the suspension notice once and never calls the model", async () => {
      const bob = await bravo.user("bob");
      const ada = bravo.agentUserId("ada");
      const roomId = await bob.openDm(ada);
      stack.model.enqueue({ kind: "reply", text: "Hi Bob." });
      await bob.sendText(roomId, "hello");
      await bob.waitForEvent(
        roomId,
        (event) => messageFrom(ada)(event) && event.content.body === "Hi Bob.",
      );

      await withSystemTransaction(stack.database.knex, (trx) =>
        tenantHolds.place(trx, bravo.tenant.id, "operator", { id: "ops", via: "cli" }),
      );
      const requestsBefore = stack.model.requests.length;
      await bob.sendText(roomId, "are you there?");
      const notice = await bob.waitForEvent(
        roomId,
        (event) => messageFrom(ada)(event) && event.content.msgtype === "m.notice",
      );
      expect(notice.content.body).toContain(
        "This tenant is suspended, so its agents do not answer",
      );
      expect(notice.content.body).toContain("the service's operator suspended it");

      const again = await bob.sendText(roomId, "hello?");
      await handled(again);
      expect(
        (await said(bob, roomId, ada)).filter((event) => event.content.msgtype === "m.notice"),
      ).toHaveLength(1);
      expect(stack.model.requests.length).toBe(requestsBefore);
    });
  });

  describe("Free, with this month's managed-model tokens used", () => {
    it("an agent on the managed key says so and does not call the model; one on the tenant's own key answers", async () => {
      const charlie = await stack.addTenant("charlie");
      await charlie.createAgent({ name: "ada" });
      await stack.database.knex("usage_daily").insert({
        tenant_id: charlie.tenant.id,
        day: stack.database.knex.raw("(now() at time zone 'utc')::date"),
        managed_tokens: 200_000,
      });
      const carol = await charlie.user("carol");
      const ada = charlie.agentUserId("ada");
      const roomId = await carol.openDm(ada);
      const requestsBefore = stack.model.requests.length;
      await carol.sendText(roomId, "hello");
      const refusal = await carol.waitForEvent(roomId, messageFrom(ada));
      expect(refusal.content.body).toContain(
        "This tenant has used the 200,000 managed-model tokens of the Free plan for this month",
      );
      expect(stack.model.requests.length).toBe(requestsBefore);
      // The refused turn gives its message back (once the turn is finished, just after the notice).
      await expect
        .poll(
          async () =>
            (
              (await stack.database
                .knex("usage_daily")
                .where({ tenant_id: charlie.tenant.id })
                .first("messages")) as { messages: number }
            ).messages,
          { timeout: HANDLED_TIMEOUT_MS },
        )
        .toBe(0);

      // With the tenant's own key the allowance does not apply, and the tokens count as the tenant's.
      await stack.app.providerKeys.set(charlie.tenant.id, "openai", TEST_MODEL_KEY, {
        id: "test",
        via: "cli",
      });
      await stack.app.agents.update(
        charlie.tenant.id,
        "ada",
        { keySource: "own" },
        {
          id: "test",
          via: "cli",
        },
      );
      stack.model.enqueue({ kind: "reply", text: "Hello Carol." });
      await carol.sendText(roomId, "hello again");
      await carol.waitForEvent(
        roomId,
        (event) => messageFrom(ada)(event) && event.content.body === "Hello Carol.",
      );
      await expect
        .poll(
          async () =>
            (
              (await stack.database
                .knex("turns")
                .where({ tenant_id: charlie.tenant.id, status: "answered" })
                .first("key_source")) as { key_source: string } | undefined
            )?.key_source,
          { timeout: HANDLED_TIMEOUT_MS },
        )
        .toBe("own");
      const after = (await stack.database
        .knex("usage_daily")
        .where({ tenant_id: charlie.tenant.id })
        .first("managed_tokens", "input_tokens")) as {
        managed_tokens: string;
        input_tokens: string;
      };
      expect(Number(after.managed_tokens)).toBe(200_000);
      expect(Number(after.input_tokens)).toBeGreaterThan(0);
    });
  });
});
