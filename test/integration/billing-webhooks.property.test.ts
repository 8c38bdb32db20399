import fc from "fast-check";
import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBillingTest, type BillingTest } from "../support/billing.ts";
import { FAKE_STRIPE_WEBHOOK_SECRET } from "../support/fake-stripe.ts";
import { junkValue, tenantSnapshot } from "../support/hostile-input.ts";

const HANDLED_TYPES = [
  "checkout.session.completed",
  "customer.subscription.created",
  "customer.subscription.updated",
  "customer.subscription.deleted",
  "invoice.payment_failed",
  "invoice.paid",
];

const eventId = fc.oneof(
  { weight: 6, arbitrary: fc.stringMatching(/^evt_[A-Za-z0-9_]{1,40}$/) },
  {
    weight: 1,
    arbitrary: fc.constantFrom("evt_", "evt_\u0000", `evt_${"a".repeat(300)}`, "evt_../x"),
  },
  { weight: 1, arbitrary: junkValue },
);
const objectId = fc.oneof(
  { weight: 6, arbitrary: fc.stringMatching(/^(sub|cs|in)_[A-Za-z0-9]{1,20}$/) },
  { weight: 1, arbitrary: fc.constantFrom("sub_\u0000", "x".repeat(256), "") },
  { weight: 1, arbitrary: junkValue },
);
/** Event-shaped JSON whose every field may be wrong, or anything else at all. */
const payload = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record(
        {
          id: eventId,
          object: fc.constantFrom("event", "invoice"),
          type: fc.oneof(
            fc.constantFrom(...HANDLED_TYPES, "charge.refunded", "x"),
            fc.constantFrom(...HANDLED_TYPES),
            junkValue,
          ),
          data: fc.oneof(
            {
              weight: 4,
              arbitrary: fc.record(
                {
                  object: fc.oneof(
                    {
                      weight: 4,
                      arbitrary: fc.record(
                        {
                          id: objectId,
                          subscription: objectId,
                          parent: junkValue,
                          metadata: junkValue,
                        },
                        { requiredKeys: [] },
                      ),
                    },
                    { weight: 1, arbitrary: junkValue },
                  ),
                },
                { requiredKeys: ["object"] },
              ),
            },
            { weight: 1, arbitrary: junkValue },
          ),
          __proto__: junkValue,
        },
        { requiredKeys: ["id", "type", "data"] },
      )
      .map((event) => JSON.stringify(event)),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "",
      "{",
      "[".repeat(10_000) + "]".repeat(10_000),
      '{"id":"evt_1","type":"x","data":{"object":' + "[".repeat(5_000) + "]".repeat(5_000) + "}}",
      "\u0000",
    ),
  },
);
const nowSeconds = () => Math.floor(Date.now() / 1000);
/** How the delivery is signed: rightly, or in one of the ways an attacker or a misconfiguration would. */
const signing = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: "good" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "wrong-secret" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "stale" as const }) },
  {
    weight: 1,
    arbitrary: fc
      .oneof(fc.string({ maxLength: 200 }), fc.constantFrom("t=1,v1=", "v1=abc"))
      .map((header) => ({ kind: "header" as const, header })),
  },
);

describe("Stripe webhook under hostile payloads (PostgreSQL)", () => {
  let b: BillingTest;

  beforeAll(async () => {
    b = await startBillingTest("postgres");
  }, 120_000);
  afterAll(async () => {
    await b?.stop();
  });

  it("answers 400 writing nothing, or 200 writing only the event record; never a 5xx", async () => {
    const knex = () => b.t.database.knex;
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(payload, signing, async (body, sign) => {
        // The processor finishes what earlier accepted events started before the snapshot.
        await b.t.app.billing.processor?.drain();
        const before = await tenantSnapshot(knex());
        const eventsBefore = (await knex()("stripe_events").pluck("id")) as string[];
        const result = await b.fake.send(
          "ignored.by.raw.payload",
          {},
          {
            rawPayload: body,
            ...(sign.kind === "wrong-secret" ? { secret: "whsec_forged" } : {}),
            ...(sign.kind === "stale" ? { timestamp: nowSeconds() - 3600 } : {}),
            ...(sign.kind === "header" ? { signatureHeader: sign.header } : {}),
          },
        );
        const where = `${sign.kind} ${body.slice(0, 300)}: ${String(result.status)} ${result.body.slice(0, 300)}`;
        statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1);
        expect([200, 400], where).toContain(result.status);
        await b.t.app.billing.processor?.drain();
        const after = await tenantSnapshot(knex());
        if (result.status === 400) {
          expect(after, where).toEqual(before);
          expect((JSON.parse(result.body) as { error: { message: string } }).error.message).toMatch(
            /^webhook refused: /,
          );
          return;
        }
        expect(sign.kind, where).toBe("good");
        const event = JSON.parse(body) as { id: string };
        const added = ((await knex()("stripe_events").pluck("id")) as string[]).filter(
          (id) => !eventsBefore.includes(id),
        );
        expect(added.length <= 1 && added.every((id) => id === event.id), where).toBe(true);
        expect({ ...after, stripe_events: "" }, where).toEqual({ ...before, stripe_events: "" });
      }),
      { numRuns: 300 },
    );
    expect(statuses.get(200) ?? 0).toBeGreaterThan(10);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(10);
  }, 240_000);

  // Regression: a NUL in an object id or subscription hint reached PostgreSQL
  // and answered 500 (Stripe retries those for days).
  it("refuses a signed event whose object ids hold a NUL, or drops the hint", async () => {
    const nulId = await b.fake.send(
      "invoice.paid",
      {},
      {
        rawPayload:
          '{"id":"evt_nul_a","type":"invoice.paid","data":{"object":{"id":"in_\\u0000"}}}',
      },
    );
    expect(nulId.status, nulId.body).toBe(400);
    const nulHint = await b.fake.send(
      "checkout.session.completed",
      {},
      {
        rawPayload:
          '{"id":"evt_nul_b","type":"checkout.session.completed","data":{"object":{"subscription":"sub_\\u0000"}}}',
      },
    );
    expect(nulHint.status, nulHint.body).toBe(200);
    const row = (await b.t.database.knex("stripe_events").where({ id: "evt_nul_b" }).first()) as
      { subscription_id: string | null } | undefined;
    expect(row?.subscription_id).toBeNull();
  });

  it("refuses a signature made for another body", async () => {
    const header = Stripe.webhooks.generateTestHeaderString({
      payload: '{"id":"evt_a","type":"invoice.paid","data":{"object":{}}}',
      secret: FAKE_STRIPE_WEBHOOK_SECRET,
    });
    const result = await b.fake.send(
      "invoice.paid",
      {},
      {
        rawPayload: '{"id":"evt_b","type":"invoice.paid","data":{"object":{}}}',
        signatureHeader: header,
      },
    );
    expect(result.status).toBe(400);
    expect(await b.t.database.knex("stripe_events").where({ id: "evt_b" }).first()).toBeUndefined();
  });
});
