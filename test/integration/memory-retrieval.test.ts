import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { forgetFacts, rememberFact } from "../../src/memory/facts.ts";
import { resolvePerson } from "../../src/memory/people.ts";
import { retrieveFacts } from "../../src/memory/retrieval.ts";
import { estimateTokens } from "../../src/memory/tokens.ts";
import type { FactQuery, NewFact } from "../../src/memory/types.ts";
import type { AgentId, MatrixUserId, PersonId, RoomId, TenantId } from "../../src/shared/ids.ts";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/database.ts";
import { seedTenant } from "../support/seed.ts";

const ROOM = "!lobby:acme.test" as RoomId;

describe.each(BACKENDS)("retrieval (%s)", (kind) => {
  let database: TestDatabase;
  let acme: TenantId;
  let globex: TenantId;
  let ada: AgentId;
  let bert: AgentId;
  let globexAgent: AgentId;
  let alice: PersonId;
  let bob: PersonId;

  const inTenant = <T>(work: (trx: Knex.Transaction) => Promise<T>, tenantId = acme) =>
    withTenant(database.knex, tenantId, work);
  const remember = (facts: NewFact[], tenantId = acme) =>
    inTenant(async (trx) => {
      for (const fact of facts) await rememberFact(trx, fact);
    }, tenantId);
  const about = (personId: PersonId, content: string, extra: Partial<NewFact> = {}): NewFact => ({
    agentId: null,
    subject: { kind: "person", personId },
    content,
    source: "explicit",
    ...extra,
  });
  const ask = (text: string, extra: Partial<FactQuery> = {}, tenantId = acme) =>
    inTenant(
      async (trx) =>
        (
          await retrieveFacts(trx, {
            agentId: ada,
            personIds: [alice],
            roomId: ROOM,
            text,
            limit: 10,
            tokenBudget: 1_000,
            ...extra,
          })
        ).map((fact) => fact.content),
      tenantId,
    );

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    const seeded = await seedTenant(database.knex, "acme", ["ada", "bert"]);
    acme = seeded.tenantId;
    [ada, bert] = seeded.agents as [AgentId, AgentId];
    const other = await seedTenant(database.knex, "globex", ["gus"]);
    globex = other.tenantId;
    globexAgent = other.agents[0]!;
    alice = await inTenant((trx) =>
      resolvePerson(trx, "@alice:acme.test" as MatrixUserId, "matrix"),
    );
    bob = await inTenant((trx) => resolvePerson(trx, "@bob:acme.test" as MatrixUserId, "matrix"));

    // Older topical facts first, then many recent, unrelated ones.
    await remember([
      about(bob, "Bob plays the trumpet in a jazz band on Fridays"),
      about(alice, "my favourite colour is green", { key: "favourite colour" }),
      about(alice, "is allergic to peanuts and shellfish"),
      {
        ...about(alice, "x"),
        subject: { kind: "tenant" },
        content: "The office wifi network is called AcmeGuest",
      },
      {
        ...about(alice, "x"),
        subject: { kind: "room", roomId: ROOM },
        content: "This room plans the spring offsite",
      },
    ]);
    const filler = Array.from({ length: 30 }, (_, index) =>
      about(alice, `mentioned chore number ${index} about laundry and dishes`),
    );
    await remember(filler);
    await remember([about(alice, "went hiking in the Alps last weekend")]);
  });
  afterAll(() => database.drop());

  it("ranks an exact topical match above recent unrelated facts", async () => {
    const found = await ask("what is my favourite colour?");
    expect(found[0]).toBe("my favourite colour is green");
  });

  it("finds facts about other people and the tenant by topic", async () => {
    expect(await ask("who plays jazz trumpet?")).toContain(
      "Bob plays the trumpet in a jazz band on Fridays",
    );
    expect((await ask("what's the wifi network called"))[0]).toBe(
      "The office wifi network is called AcmeGuest",
    );
  });

  it("leaves other people's facts out when asked to", async () => {
    const onlyAlice = { onlyThesePeople: true };
    expect(await ask("who plays jazz trumpet?", onlyAlice)).not.toContain(
      "Bob plays the trumpet in a jazz band on Fridays",
    );
    expect((await ask("what's the wifi network called", onlyAlice))[0]).toBe(
      "The office wifi network is called AcmeGuest",
    );
    expect((await ask("what is my favourite colour?", onlyAlice))[0]).toBe(
      "my favourite colour is green",
    );
  });

  it("matches spelling variants and typos through trigrams", async () => {
    expect((await ask("favorite color"))[0]).toBe("my favourite colour is green");
    expect(await ask("is she alergic to anything?")).toContain(
      "is allergic to peanuts and shellfish",
    );
  });

  it("always includes the most recent facts about the person, even without a text match", async () => {
    const found = await ask("zebra quantum xylophone");
    expect(found[0]).toBe("went hiking in the Alps last weekend");
    expect(found).not.toContain("Bob plays the trumpet in a jazz band on Fridays");
    // Someone without facts of their own gets the room's.
    expect(await ask("zebra quantum xylophone", { personIds: [] })).toEqual([
      "This room plans the spring offsite",
    ]);
    const topical = await ask("jazz trumpet band", { limit: 4 });
    expect(topical).toContain("went hiking in the Alps last weekend");
    expect(topical[0]).toBe("Bob plays the trumpet in a jazz band on Fridays");
  });

  it.each(["", "   ", "what is it?", "the and of", "?!&|:*()'\\\"", "a & b | !c <-> d:*"])(
    "survives a query that reduces to nothing: %j",
    async (text) => {
      const found = await ask(text);
      expect(found[0]).toBe("went hiking in the Alps last weekend");
    },
  );

  it("respects the limit and the token budget", async () => {
    expect(await ask("laundry chores", { limit: 3 })).toHaveLength(3);
    const budget = 40;
    const found = await ask("laundry dishes chore", { limit: 50, tokenBudget: budget });
    expect(found.length).toBeGreaterThan(0);
    const cost = found.reduce((sum, content) => sum + estimateTokens(content) + 3, 0);
    expect(cost).toBeLessThanOrEqual(budget);
    expect(await ask("laundry", { limit: 0 })).toEqual([]);
    expect(await ask("laundry", { tokenBudget: 0 })).toEqual([]);
  });

  it("never returns another agent's private facts, but returns shared ones", async () => {
    await remember([
      about(alice, "private to ada: alice is planning a surprise party", { agentId: ada }),
      about(alice, "private to bert: alice is planning a surprise trip", { agentId: bert }),
      about(alice, "shared: alice is planning a surprise dinner"),
    ]);
    const forAda = await ask("surprise planning");
    const forBert = await ask("surprise planning", { agentId: bert });
    expect(forAda).toContain("private to ada: alice is planning a surprise party");
    expect(forAda).not.toContain("private to bert: alice is planning a surprise trip");
    expect(forBert).toContain("private to bert: alice is planning a surprise trip");
    expect(forBert).not.toContain("private to ada: alice is planning a surprise party");
    expect(forAda).toContain("shared: alice is planning a surprise dinner");
    expect(forBert).toContain("shared: alice is planning a surprise dinner");
  });

  it("never returns superseded or forgotten facts", async () => {
    await remember([about(alice, "my favourite colour is blue", { key: "favourite colour" })]);
    await remember([about(alice, "owns a red bicycle")]);
    await inTenant((trx) =>
      forgetFacts(trx, { agentId: ada, personId: alice, matching: "bicycle" }),
    );
    const found = await ask("favourite colour bicycle");
    expect(found).toContain("my favourite colour is blue");
    expect(found).not.toContain("my favourite colour is green");
    expect(found).not.toContain("owns a red bicycle");
  });

  it("keeps tenants apart even when the text matches exactly (row-level security)", async () => {
    const carol = await inTenant(
      (trx) => resolvePerson(trx, "@carol:globex.test" as MatrixUserId, "matrix"),
      globex,
    );
    await remember([about(carol, "Globex secret: the launch code is swordfish")], globex);
    await remember([about(alice, "Acme secret: the launch code is marlin")]);
    const secretQuery = "secret launch code swordfish marlin";
    const inAcme = await ask(secretQuery);
    expect(inAcme).toContain("Acme secret: the launch code is marlin");
    expect(inAcme).not.toContain("Globex secret: the launch code is swordfish");
    const inGlobex = await ask(
      secretQuery,
      { agentId: globexAgent, personIds: [carol, alice], roomId: null },
      globex,
    );
    expect(inGlobex).toEqual(["Globex secret: the launch code is swordfish"]);

    // The policy itself hides the rows: a plain read inside the tenant sees only its own.
    const visible = await inTenant(
      (trx) => trx("facts").whereRaw("content ilike ?", ["%launch code%"]).pluck("content"),
      globex,
    );
    expect(visible).toEqual(["Globex secret: the launch code is swordfish"]);
    // And the text-candidate function answers nothing without a tenant.
    const noTenant = await database.knex.transaction(async (trx) => {
      await trx.raw("set local role switchboard_app");
      const result = await trx.raw<{ rows: unknown[] }>(
        "select * from memory_fact_text_candidates(?, array['launch'], null, 10, 10, 1000)",
        [ada],
      );
      return result.rows;
    });
    expect(noTenant).toEqual([]);
  });
});
