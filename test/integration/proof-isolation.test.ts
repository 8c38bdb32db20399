import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { factsOfPerson, listPeople, searchFacts } from "../../src/memory/browse.ts";
import { exportPersonData } from "../../src/memory/export.ts";
import {
  allFactsAbout,
  deleteFactsOfPerson,
  forgetFactById,
  forgetFacts,
  listFacts,
  reassignFactsOfPerson,
  rememberFact,
} from "../../src/memory/facts.ts";
import {
  deleteHistoryOfPerson,
  historyOfPerson,
  reassignHistoryOfPerson,
  reassignHistoryOfSender,
  recentHistory,
  recordMessage,
} from "../../src/memory/history.ts";
import {
  deletePerson,
  getPerson,
  identitiesOf,
  linkIdentities,
  personIdsFor,
  resolvePerson,
  unlinkIdentity,
} from "../../src/memory/people.ts";
import { retrieveFacts } from "../../src/memory/retrieval.ts";
import { isAppError } from "../../src/shared/errors.ts";
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

/** What one tenant holds, every kind of memory row, all of it findable by the word "zebra". */
interface Seeded {
  readonly tenantId: TenantId;
  readonly agent: AgentId;
  readonly person: PersonId;
  readonly userId: MatrixUserId;
  readonly roomId: RoomId;
  readonly facts: readonly FactId[];
}

const MEMORY_TABLES = ["people", "person_identities", "messages", "facts"] as const;

describe.each(BACKENDS)("memory queries under row-level security (%s)", (kind) => {
  let database: TestDatabase;
  let a: Seeded;
  let b: Seeded;

  async function seed(slug: string, word: string): Promise<Seeded> {
    const { tenantId, agents } = await seedTenant(database.knex, slug, [`${slug}-agent`]);
    const agent = agents[0]!;
    const userId = `@${slug}-human:${slug}.test` as MatrixUserId;
    const roomId = `!room-${slug}:${slug}.test` as RoomId;
    return withTenant(database.knex, tenantId, async (trx) => {
      await resolvePerson(trx, userId, "matrix", `${slug} human`);
      const person = await linkIdentities(trx, userId, `@${slug}-alt:${slug}.test` as MatrixUserId);
      const facts: FactId[] = [];
      for (const [subject, agentId] of [
        [{ kind: "person", personId: person }, null],
        [{ kind: "person", personId: person }, agent],
        [{ kind: "room", roomId }, null],
        [{ kind: "tenant" }, agent],
      ] as const) {
        const fact = await rememberFact(trx, {
          agentId,
          subject,
          content: `${word} zebra fact ${String(facts.length)} of ${slug}`,
          source: "explicit",
        });
        facts.push(fact.id);
      }
      for (const [index, sender] of [userId, `@${slug}-alt:${slug}.test`].entries())
        await recordMessage(trx, {
          roomId,
          threadRootId: null,
          eventId: `$${slug}-${String(index)}` as EventId,
          sender: sender as MatrixUserId,
          personId: person,
          agentId: null,
          platform: "matrix",
          body: `${word} zebra message from ${slug}`,
          sentAt: new Date(),
        });
      return { tenantId, agent, person, userId, roomId, facts };
    });
  }

  /** Every memory row of a tenant, as the service connection (no RLS) reads it. */
  async function rowsOf(tenantId: TenantId): Promise<string> {
    const tables: Record<string, unknown[]> = {};
    for (const table of MEMORY_TABLES)
      tables[table] = await database.knex(table).where("tenant_id", tenantId).orderByRaw("1, 2, 3");
    return JSON.stringify(tables);
  }

  const inA = <T>(work: (trx: Knex.Transaction) => Promise<T>) =>
    withTenant(database.knex, a.tenantId, work);
  /** Whether a result, serialised, mentions anything that belongs to B. */
  const mentionsB = (value: unknown): boolean => {
    const text = JSON.stringify(value) ?? "";
    return [b.tenantId, b.person, b.userId, b.roomId, "tenant-b", "bravo", ...b.facts].some(
      (needle) => text.includes(needle),
    );
  };

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    a = await seed("tenant-a", "alpha");
    b = await seed("tenant-b", "bravo");
  });
  afterAll(() => database.drop());

  it("reads nothing of tenant B through any query, whatever B's ids it is given", async () => {
    const reads: [string, (trx: Knex.Transaction) => Promise<unknown>][] = [
      [
        "retrieveFacts",
        (trx) =>
          retrieveFacts(trx, {
            agentId: b.agent,
            personIds: [b.person],
            roomId: b.roomId,
            text: "bravo zebra fact",
            limit: 50,
            tokenBudget: 10_000,
          }),
      ],
      ["listPeople", (trx) => listPeople(trx, { limit: 100 })],
      ["factsOfPerson", (trx) => factsOfPerson(trx, b.person, { limit: 100 })],
      ["searchFacts", (trx) => searchFacts(trx, "bravo zebra", 100)],
      [
        "listFacts by person",
        (trx) => listFacts(trx, { personId: b.person, includeHistory: true }),
      ],
      ["listFacts by agent", (trx) => listFacts(trx, { agentId: b.agent, includeHistory: true })],
      ["allFactsAbout", (trx) => allFactsAbout(trx, b.person)],
      [
        "recentHistory",
        (trx) =>
          recentHistory(trx, {
            roomId: b.roomId,
            threadRootId: null,
            tokenBudget: 10_000,
            maxMessages: 100,
          }),
      ],
      ["historyOfPerson", (trx) => historyOfPerson(trx, b.person)],
      ["identitiesOf", (trx) => identitiesOf(trx, b.person)],
      ["personIdsFor", (trx) => personIdsFor(trx, [b.userId])],
      ["getPerson", (trx) => getPerson(trx, b.person)],
    ];
    for (const [name, read] of reads) {
      const result = await inA(read);
      expect(mentionsB(result), `${name}: ${JSON.stringify(result)}`).toBe(false);
    }
    // The same reads do find A's own rows, so the empty answers above are not vacuous.
    expect(JSON.stringify(await inA((trx) => listPeople(trx, { limit: 100 })))).toContain(a.person);
    expect(await inA((trx) => searchFacts(trx, "alpha zebra", 100))).toHaveLength(4);
    await expect(inA((trx) => exportPersonData(trx, b.person))).rejects.toSatisfy(
      (error: unknown) => isAppError(error) && error.code === "not_found",
    );
  });

  it("changes nothing of tenant B through any write given B's ids", async () => {
    const before = await rowsOf(b.tenantId);
    const writes: [string, (trx: Knex.Transaction) => Promise<unknown>, unknown][] = [
      [
        "forgetFacts by person",
        (trx) => forgetFacts(trx, { agentId: b.agent, personId: b.person }),
        0,
      ],
      [
        "forgetFacts by fact",
        (trx) => forgetFacts(trx, { agentId: b.agent, factId: b.facts[0] }),
        0,
      ],
      [
        "forgetFacts by words",
        (trx) => forgetFacts(trx, { agentId: b.agent, matching: "bravo" }),
        0,
      ],
      ["forgetFactById", (trx) => forgetFactById(trx, b.facts[0]!), false],
      ["deleteFactsOfPerson", (trx) => deleteFactsOfPerson(trx, b.person), 0],
      ["deleteHistoryOfPerson", (trx) => deleteHistoryOfPerson(trx, b.person), 0],
      ["reassignFactsOfPerson", (trx) => reassignFactsOfPerson(trx, b.person, a.person), 0],
      ["reassignHistoryOfPerson", (trx) => reassignHistoryOfPerson(trx, b.person, a.person), 0],
      [
        "reassignHistoryOfSender",
        (trx) => reassignHistoryOfSender(trx, b.userId, b.person, a.person),
        0,
      ],
      ["deletePerson", (trx) => deletePerson(trx, b.person), false],
    ];
    for (const [name, write, expected] of writes) expect(await inA(write), name).toEqual(expected);

    // Identity operations on B's user id only ever touch A's own people.
    const linked = await inA((trx) => linkIdentities(trx, a.userId, b.userId));
    expect(linked).toBe(a.person);
    const unlinked = await inA((trx) => unlinkIdentity(trx, b.userId));
    expect(unlinked).not.toBe(b.person);
    // A fact about B's person is refused, not stored against a foreign row.
    await expect(
      inA((trx) =>
        rememberFact(trx, {
          agentId: null,
          subject: { kind: "person", personId: b.person },
          content: "planted",
          source: "admin",
        }),
      ),
    ).rejects.toSatisfy((error: unknown) => isAppError(error) && error.code === "not_found");

    expect(await rowsOf(b.tenantId)).toBe(before);
  });
});
