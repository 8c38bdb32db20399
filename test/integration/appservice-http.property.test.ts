import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/main.ts";
import type { TenantHomeserver } from "../../src/tenants/types.ts";
import { startAppserviceApp } from "../support/appservice-app.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

/** Room events whose fields are anything at all: the runtime must store or drop them, never fail. */
const hostileEvent = fc.record(
  {
    event_id: fc.oneof(fc.string({ maxLength: 300 }), fc.constant("$ok"), fc.anything()),
    room_id: fc.oneof(fc.constant("!room:acme.test"), fc.string(), fc.anything()),
    type: fc.oneof(fc.constantFrom("m.room.message", "m.room.member", "m.reaction"), fc.string()),
    sender: fc.oneof(
      fc.constantFrom("@alice:acme.test", "@ai_ada:acme.test"),
      fc.string(),
      fc.anything(),
    ),
    state_key: fc.oneof(fc.constant("@ai_ada:acme.test"), fc.anything()),
    origin_server_ts: fc.oneof(fc.integer(), fc.double(), fc.anything()),
    content: fc.oneof(
      fc.record(
        {
          msgtype: fc.oneof(fc.constant("m.text"), fc.anything()),
          body: fc.oneof(fc.string({ unit: "binary" }), fc.anything()),
        },
        { requiredKeys: [] },
      ),
      fc.record(
        {
          membership: fc.oneof(fc.constantFrom("invite", "join", "leave"), fc.anything()),
          is_direct: fc.anything(),
        },
        { requiredKeys: [] },
      ),
      fc.anything(),
    ),
  },
  { requiredKeys: [] },
);

describe("appservice endpoint under hostile input (PGlite)", () => {
  let database: TestDatabase;
  let app: App;
  let homeserver: TenantHomeserver;

  beforeAll(async () => {
    database = await createTestDatabase("pglite");
    ({ app, homeserver } = await startAppserviceApp(database));
  });

  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  it("answers any body with 200 or a 4xx Matrix error, never a 5xx, and keeps serving", async () => {
    let txn = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({ events: fc.array(hostileEvent, { maxLength: 5 }) }),
          fc.anything(),
          fc.jsonValue(),
        ),
        async (body) => {
          txn += 1;
          const response = await app.runtime.http.inject({
            method: "PUT",
            url: `/tenants/${homeserver.tenantId}/_matrix/app/v1/transactions/prop-${String(txn)}`,
            headers: {
              authorization: `Bearer ${homeserver.hsToken}`,
              "content-type": "application/json",
            },
            payload: JSON.stringify(body) ?? "null",
          });
          expect(
            response.statusCode === 200 ||
              (response.statusCode >= 400 && response.statusCode < 500),
          ).toBe(true);
          if (response.statusCode !== 200) expect(response.json()).toHaveProperty("errcode");
        },
      ),
      { numRuns: 300 },
    );
    await app.runtime.pipeline.drain();
    // Nothing is left stuck: every stored event was handled, ignored, or (an
    // invite the unreachable test homeserver could not take) given up on.
    const statuses = (await database
      .knex("inbound_events")
      .distinct("status")
      .pluck("status")) as string[];
    expect(statuses.filter((status) => status !== "done" && status !== "failed")).toEqual([]);
    const health = await app.runtime.http.inject({ method: "GET", url: "/healthz" });
    expect(health.statusCode).toBe(200);
  }, 240_000);
});

// Regression: a NUL or an unpaired surrogate (both pass Matrix JSON) in an event or a transaction id
// reached PostgreSQL, the transaction answered 500, and the homeserver
// retried it forever, stalling every later event of the tenant.
describe("appservice endpoint with NULs and unpaired surrogates (PostgreSQL)", () => {
  let database: TestDatabase;
  let app: App;
  let homeserver: TenantHomeserver;

  beforeAll(async () => {
    database = await createTestDatabase("postgres");
    ({ app, homeserver } = await startAppserviceApp(database));
  });
  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  it("stores and handles events holding them, replaced by U+FFFD", async () => {
    const message = (eventId: string, content: unknown) => ({
      event_id: eventId,
      room_id: "!room:acme.test",
      type: "m.room.message",
      sender: "@alice:acme.test",
      content,
    });
    const response = await app.runtime.http.inject({
      method: "PUT",
      url: `/tenants/${homeserver.tenantId}/_matrix/app/v1/transactions/nul%00txn`,
      headers: {
        authorization: `Bearer ${homeserver.hsToken}`,
        "content-type": "application/json",
      },
      payload: JSON.stringify({
        events: [
          message("$nul-body", { msgtype: "m.text", body: "hi\u0000there" }),
          message("$nul\u0000id", { msgtype: "m.text", body: "x" }),
          message("$nul-key", { "k\u0000": { deep: ["\u0000"] } }),
          message("$lone", { msgtype: "m.text", body: "a\ud800", "k\udc00": "b" }),
        ],
      }),
    });
    expect(response.statusCode, response.body).toBe(200);
    await app.runtime.pipeline.drain();
    const rows = (await database
      .knex("inbound_events")
      .orderBy("event_id")
      .select("event_id", "status")) as { event_id: string; status: string }[];
    expect(rows).toEqual([
      { event_id: "$lone", status: "done" },
      { event_id: "$nul-body", status: "done" },
      { event_id: "$nul-key", status: "done" },
      { event_id: "$nul\ufffdid", status: "done" },
    ]);
  }, 60_000);

  // Regression: an event nested 5,000 levels deep could not be serialized
  // for storing (JSON.stringify overflowed the stack): a 500, retried forever.
  it("drops an event nested thousands of levels deep and keeps the rest", async () => {
    const deep = '{"a":'.repeat(5_000) + '["x"]' + "}".repeat(5_000);
    const event = (id: string, extra: string) =>
      `{"event_id":"${id}","room_id":"!room:acme.test","type":"m.room.message","sender":"@alice:acme.test","content":{"msgtype":"m.text","body":"hi","extra":${extra}}}`;
    const response = await app.runtime.http.inject({
      method: "PUT",
      url: `/tenants/${homeserver.tenantId}/_matrix/app/v1/transactions/deep`,
      headers: {
        authorization: `Bearer ${homeserver.hsToken}`,
        "content-type": "application/json",
      },
      payload: `{"events":[${event("$deep", deep)},${event("$shallow", "[1]")}]}`,
    });
    expect(response.statusCode, response.body).toBe(200);
    await app.runtime.pipeline.drain();
    const rows = (await database
      .knex("inbound_events")
      .whereIn("event_id", ["$deep", "$shallow"])
      .pluck("event_id")) as string[];
    expect(rows).toEqual(["$shallow"]);
  }, 60_000);
});
