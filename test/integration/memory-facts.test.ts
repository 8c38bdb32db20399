import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import {
  deleteFactsOfPerson,
  forgetFacts,
  listFacts,
  MAX_FACT_CONTENT_CHARS,
  rememberFact,
} from "../../src/memory/facts.ts";
import { resolvePerson } from "../../src/memory/people.ts";
import type { NewFact } from "../../src/memory/types.ts";
import type {
  AgentId,
  EventId,
  FactId,
  MatrixUserId,
  PersonId,
  RoomId,
  TenantId,
} from "../../src/shared/ids.ts";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/database.ts";
import { seedTenant } from "../support/seed.ts";

describe.each(BACKENDS)("facts (%s)", (kind) => {
  let database: TestDatabase;
  let tenant: TenantId;
  let other: TenantId;
  let agentA: AgentId;
  let agentB: AgentId;
  let alice: PersonId;
  let bob: PersonId;

  const inTenant = <T>(work: (trx: Knex.Transaction) => Promise<T>, tenantId = tenant) =>
    withTenant(database.knex, tenantId, work);
  const aboutAlice = (content: string, extra: Partial<NewFact> = {}): NewFact => ({
    agentId: null,
    subject: { kind: "person", personId: alice },
    content,
    source: "explicit",
    ...extra,
  });

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    const seeded = await seedTenant(database.knex, "acme", ["ada", "bert"]);
    tenant = seeded.tenantId;
    [agentA, agentB] = seeded.agents as [AgentId, AgentId];
    other = (await seedTenant(database.knex, "globex", [])).tenantId;
    alice = await inTenant((trx) =>
      resolvePerson(trx, "@alice:acme.test" as MatrixUserId, "matrix"),
    );
    bob = await inTenant((trx) => resolvePerson(trx, "@bob:acme.test" as MatrixUserId, "matrix"));
  });
  afterAll(() => database.drop());

  it("stores normalised, bounded content with its provenance", async () => {
    const fact = await inTenant((trx) =>
      rememberFact(
        trx,
        aboutAlice("  likes\u0000 green\n\ttea  ", {
          sourceEventId: "$e1" as EventId,
          sourceRoomId: "!r:acme.test" as RoomId,
        }),
      ),
    );
    expect(fact).toMatchObject({
      content: "likes green tea",
      agentId: null,
      subject: { kind: "person", personId: alice },
      source: "explicit",
      sourceEventId: "$e1",
      sourceRoomId: "!r:acme.test",
      validTo: null,
      supersededBy: null,
    });
    const long = await inTenant((trx) => rememberFact(trx, aboutAlice("word ".repeat(400))));
    expect(long.content.length).toBeLessThanOrEqual(MAX_FACT_CONTENT_CHARS);
    expect(long.content.endsWith("word")).toBe(true);
    await expect(
      inTenant((trx) => rememberFact(trx, aboutAlice(" \u0007 "))),
    ).rejects.toMatchObject({
      code: "bad_request",
    });
  });

  it("supersedes a current fact with the same key and keeps the old one", async () => {
    const green = await inTenant((trx) =>
      rememberFact(trx, aboutAlice("my favourite colour is green", { key: "Favourite  Colour" })),
    );
    const blue = await inTenant((trx) =>
      rememberFact(trx, aboutAlice("my favourite colour is blue", { key: "favourite colour" })),
    );
    expect(blue.key).toBe("favourite colour");
    const all = await inTenant((trx) => listFacts(trx, { personId: alice, includeHistory: true }));
    const old = all.find((fact) => fact.id === green.id);
    expect(old?.supersededBy).toBe(blue.id);
    expect(old?.validTo?.getTime()).toBe(blue.validFrom.getTime());
    const current = await inTenant((trx) => listFacts(trx, { personId: alice }));
    expect(current.map((fact) => fact.content)).toContain("my favourite colour is blue");
    expect(current.map((fact) => fact.content)).not.toContain("my favourite colour is green");
  });

  it("supersedes only within the same visibility and subject", async () => {
    const shared = await inTenant((trx) =>
      rememberFact(trx, aboutAlice("my team is platform", { key: "team" })),
    );
    await inTenant((trx) =>
      rememberFact(trx, aboutAlice("my team is payments", { key: "team", agentId: agentA })),
    );
    await inTenant((trx) =>
      rememberFact(trx, {
        ...aboutAlice("my team is growth", { key: "team" }),
        subject: { kind: "person", personId: bob },
      }),
    );
    const current = await inTenant((trx) => listFacts(trx, { personId: alice }));
    expect(current.find((fact) => fact.id === shared.id)?.validTo).toBeNull();
  });

  it("does not store an exact duplicate of a current fact twice", async () => {
    const first = await inTenant((trx) => rememberFact(trx, aboutAlice("Is vegetarian")));
    const again = await inTenant((trx) => rememberFact(trx, aboutAlice("is  vegetarian ")));
    expect(again.id).toBe(first.id);
    const matching = await inTenant((trx) =>
      listFacts(trx, { personId: alice, includeHistory: true }),
    );
    expect(matching.filter((fact) => fact.content.toLowerCase() === "is vegetarian")).toHaveLength(
      1,
    );
  });

  it("serialises concurrent supersessions of one key", async () => {
    const colours = ["red", "orange", "yellow", "purple", "teal"];
    await Promise.all(
      colours.map((colour) =>
        inTenant((trx) =>
          rememberFact(trx, {
            ...aboutAlice(`my car is ${colour}`, { key: "car" }),
            subject: { kind: "person", personId: bob },
          }),
        ),
      ),
    );
    const cars = (
      await inTenant((trx) => listFacts(trx, { personId: bob, includeHistory: true }))
    ).filter((fact) => fact.key === "car");
    expect(cars).toHaveLength(colours.length);
    expect(cars.filter((fact) => fact.validTo === null)).toHaveLength(1);
  });

  it("shows an agent shared facts and its own private ones only", async () => {
    const secret = await inTenant((trx) =>
      rememberFact(trx, aboutAlice("told ada a secret about the launch", { agentId: agentA })),
    );
    const ofA = await inTenant((trx) => listFacts(trx, { personId: alice, agentId: agentA }));
    const ofB = await inTenant((trx) => listFacts(trx, { personId: alice, agentId: agentB }));
    expect(ofA.map((fact) => fact.id)).toContain(secret.id);
    expect(ofB.map((fact) => fact.id)).not.toContain(secret.id);
    expect(ofB.some((fact) => fact.agentId === null)).toBe(true);
  });

  it("forgets by invalidating, only what the agent can see", async () => {
    const jazz = await inTenant((trx) => rememberFact(trx, aboutAlice("I like jazz and blues")));
    const privateJazz = await inTenant((trx) =>
      rememberFact(trx, aboutAlice("likes jazz concerts on Fridays", { agentId: agentA })),
    );
    const forgottenByB = await inTenant((trx) =>
      forgetFacts(trx, { agentId: agentB, personId: alice, matching: "I like jazz" }),
    );
    expect(forgottenByB).toBe(1);
    const all = await inTenant((trx) => listFacts(trx, { personId: alice, includeHistory: true }));
    expect(all.find((fact) => fact.id === jazz.id)?.validTo).not.toBeNull();
    expect(all.find((fact) => fact.id === privateJazz.id)?.validTo).toBeNull();

    expect(
      await inTenant((trx) => forgetFacts(trx, { agentId: agentB, factId: privateJazz.id })),
    ).toBe(0);
    expect(
      await inTenant((trx) => forgetFacts(trx, { agentId: agentA, factId: privateJazz.id })),
    ).toBe(1);
    await expect(inTenant((trx) => forgetFacts(trx, { agentId: agentA }))).rejects.toMatchObject({
      code: "bad_request",
    });
  });

  it("forgets everything about a person the agent sees", async () => {
    await inTenant((trx) => rememberFact(trx, aboutAlice("has a cat called Miso")));
    const visible = await inTenant((trx) => listFacts(trx, { personId: alice, agentId: agentB }));
    const forgotten = await inTenant((trx) =>
      forgetFacts(trx, { agentId: agentB, personId: alice }),
    );
    expect(forgotten).toBe(visible.length);
    expect(await inTenant((trx) => listFacts(trx, { personId: alice, agentId: agentB }))).toEqual(
      [],
    );
    expect(
      (await inTenant((trx) => listFacts(trx, { personId: alice, agentId: agentA }))).length,
    ).toBeGreaterThan(0);
  });

  it("keeps tenants apart by row-level security", async () => {
    await inTenant((trx) => rememberFact(trx, aboutAlice("works on the secret acme rocket")));
    const seenByOther = await inTenant(
      async (trx) => ({
        facts: await listFacts(trx, { includeHistory: true }),
        rows: await trx("facts").select("id"),
        forgotten: await forgetFacts(trx, { agentId: agentA, personId: alice }),
      }),
      other,
    );
    expect(seenByOther).toEqual({ facts: [], rows: [], forgotten: 0 });
    await expect(
      inTenant((trx) => rememberFact(trx, aboutAlice("planted in the wrong tenant")), other),
    ).rejects.toMatchObject({ code: "not_found" });
  });

  it("erases every fact about a person", async () => {
    const carol = await inTenant((trx) =>
      resolvePerson(trx, "@carol:acme.test" as MatrixUserId, "matrix"),
    );
    const aboutCarol = (content: string, key: string | null = null): NewFact => ({
      agentId: null,
      subject: { kind: "person", personId: carol },
      content,
      key,
      source: "tool",
    });
    await inTenant(async (trx) => {
      await rememberFact(trx, aboutCarol("lives in Leeds", "home"));
      await rememberFact(trx, aboutCarol("lives in York", "home"));
    });
    expect(await inTenant((trx) => deleteFactsOfPerson(trx, carol))).toBe(2);
    expect(
      await inTenant((trx) => listFacts(trx, { personId: carol, includeHistory: true })),
    ).toEqual([]);
    expect(
      await inTenant((trx) =>
        forgetFacts(trx, {
          agentId: agentA,
          factId: "00000000-0000-4000-8000-000000000000" as FactId,
        }),
      ),
    ).toBe(0);
  });
});
