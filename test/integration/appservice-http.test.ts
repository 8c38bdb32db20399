import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/main.ts";
import type { TenantHomeserver } from "../../src/tenants/types.ts";
import { startAppserviceApp } from "../support/appservice-app.ts";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/database.ts";

describe.each(BACKENDS)("appservice HTTP endpoint on %s", (kind) => {
  let database: TestDatabase;
  let app: App;
  let homeserver: TenantHomeserver;
  let base: string;

  const put = (
    txnId: string,
    body: unknown,
    headers: Record<string, string> = { authorization: `Bearer ${homeserver.hsToken}` },
  ) =>
    app.runtime.http.inject({
      method: "PUT",
      url: `${base}/_matrix/app/v1/transactions/${txnId}`,
      headers: { "content-type": "application/json", ...headers },
      payload: typeof body === "string" ? body : JSON.stringify(body),
    });

  const inboxCount = async (): Promise<number> =>
    Number(
      ((await database.knex("inbound_events").count("* as n")) as { n: number | string }[])[0]?.n,
    );

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    ({ app, homeserver } = await startAppserviceApp(database, { maxTransactionBytes: 70_000 }));
    base = `/tenants/${homeserver.tenantId}`;
  });

  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  const event = (id: string) => ({
    event_id: id,
    room_id: "!room:acme.test",
    type: "m.room.message",
    sender: "@alice:acme.test",
    content: { msgtype: "m.text", body: "hi" },
    origin_server_ts: 1,
  });

  it("refuses a missing token with 401, a wrong one with 403, an unknown tenant with 404, and stores nothing", async () => {
    expect((await put("t1", { events: [event("$a")] }, {})).statusCode).toBe(401);
    const wrong = await put(
      "t1",
      { events: [event("$a")] },
      { authorization: "Bearer not-the-token" },
    );
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json()).toMatchObject({ errcode: "M_FORBIDDEN" });
    const unknown = await app.runtime.http.inject({
      method: "PUT",
      url: "/tenants/00000000-0000-4000-8000-000000000000/_matrix/app/v1/transactions/t1",
      headers: { authorization: `Bearer ${homeserver.hsToken}` },
      payload: { events: [] },
    });
    expect(unknown.statusCode).toBe(404);
    const notUuid = await app.runtime.http.inject({
      method: "PUT",
      url: "/tenants/'; drop table tenants/_matrix/app/v1/transactions/t1",
      headers: { authorization: `Bearer ${homeserver.hsToken}` },
      payload: { events: [] },
    });
    expect(notUuid.statusCode).toBe(404);
    expect(await inboxCount()).toBe(0);
  });

  it("accepts a transaction once: a retried transaction id stores nothing new", async () => {
    expect((await put("t2", { events: [event("$b"), event("$c")] })).statusCode).toBe(200);
    expect((await put("t2", { events: [event("$b"), event("$c")] })).statusCode).toBe(200);
    // The same event in a new transaction (homeserver resend) is not stored twice either.
    expect((await put("t3", { events: [event("$c")] })).statusCode).toBe(200);
    await app.runtime.pipeline.drain();
    const rows = (await database
      .knex("inbound_events")
      .select("event_id", "status")
      .orderBy("seq")) as { event_id: string; status: string }[];
    expect(rows).toEqual([
      { event_id: "$b", status: "done" },
      { event_id: "$c", status: "done" },
    ]);
  });

  it("answers bad bodies with Matrix errors and keeps running", async () => {
    expect((await put("t4", "{not json")).statusCode).toBe(400);
    expect((await put("t4", { events: "nope" })).json()).toMatchObject({ errcode: "M_BAD_JSON" });
    expect((await put("t4", [1, 2])).statusCode).toBe(400);
    const huge = await put("t5", {
      events: [{ ...event("$huge"), content: { msgtype: "m.text", body: "x".repeat(100_000) } }],
    });
    expect(huge.statusCode).toBe(413);
    const wrongType = await app.runtime.http.inject({
      method: "PUT",
      url: `${base}/_matrix/app/v1/transactions/t6`,
      headers: { authorization: `Bearer ${homeserver.hsToken}`, "content-type": "text/plain" },
      payload: "events",
    });
    expect(wrongType.statusCode).toBe(400);
    // Over Fastify's path parameter limit: refused before any handler runs.
    expect((await put("x".repeat(300), { events: [] })).statusCode).toBe(414);
    expect(await inboxCount()).toBe(2);
  });

  it("drops malformed events but keeps the good ones of the same transaction; malformed content is recorded as ignored", async () => {
    const response = await put("t7", {
      events: [
        null,
        42,
        "str",
        { event_id: 5 },
        { ...event("$ok1"), sender: "not a user id" },
        { ...event("$ok2"), content: { body: { deep: [[[]]] } } },
        event("$ok3"),
      ],
    });
    expect(response.statusCode).toBe(200);
    await app.runtime.pipeline.drain();
    const rows = (await database
      .knex("inbound_events")
      .whereIn("event_id", ["$ok1", "$ok2", "$ok3"])
      .orderBy("seq")
      .select("event_id", "status", "error")) as {
      event_id: string;
      status: string;
      error: string | null;
    }[];
    expect(rows.map((row) => row.event_id)).toEqual(["$ok1", "$ok2", "$ok3"]);
    expect(rows.every((row) => row.status === "done")).toBe(true);
    expect(rows[0]?.error).toMatch(/sender/);
    expect(rows[1]?.error).toMatch(/malformed/);
  });

  it("answers ping, and user queries only for agents", async () => {
    const auth = { authorization: `Bearer ${homeserver.hsToken}` };
    expect(
      (
        await app.runtime.http.inject({
          method: "POST",
          url: `${base}/_matrix/app/v1/ping`,
          headers: auth,
          payload: {},
        })
      ).statusCode,
    ).toBe(200);
    const notAgent = await app.runtime.http.inject({
      method: "GET",
      url: `${base}/_matrix/app/v1/users/${encodeURIComponent("@alice:acme.test")}`,
      headers: auth,
    });
    expect(notAgent.statusCode).toBe(404);
    const unknownAgent = await app.runtime.http.inject({
      method: "GET",
      url: `${base}/_matrix/app/v1/users/${encodeURIComponent("@ai_nobody:acme.test")}`,
      headers: auth,
    });
    expect(unknownAgent.statusCode).toBe(404);
    const alias = await app.runtime.http.inject({
      method: "GET",
      url: `${base}/_matrix/app/v1/rooms/${encodeURIComponent("#x:acme.test")}`,
      headers: auth,
    });
    expect(alias.statusCode).toBe(404);
    expect((await app.runtime.http.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(
      200,
    );
  });
});
