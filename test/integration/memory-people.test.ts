import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { listFacts, rememberFact } from "../../src/memory/facts.ts";
import { historyOfPerson, recordMessage } from "../../src/memory/history.ts";
import {
  getPerson,
  identitiesOf,
  linkIdentities,
  personIdsFor,
  platformOfUserId,
  resolvePerson,
  unlinkIdentity,
} from "../../src/memory/people.ts";
import type {
  AgentId,
  EventId,
  MatrixUserId,
  PersonId,
  RoomId,
  TenantId,
} from "../../src/shared/ids.ts";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/database.ts";
import { seedTenant } from "../support/seed.ts";

const user = (id: string) => id as MatrixUserId;

describe("platformOfUserId", () => {
  it.each([
    ["@alice:acme.test", "matrix"],
    ["@slack_U0123:acme.test", "slack"],
    ["@discord_81234:acme.test", "discord"],
    ["@telegram_5555:acme.test", "telegram"],
    ["@slackbot:acme.test", "matrix"],
  ])("%s is on %s", (userId, platform) => {
    expect(platformOfUserId(user(userId))).toBe(platform);
  });

  it("follows a tenant's own ghost prefixes", () => {
    expect(platformOfUserId(user("@sl_U1:acme.test"), { slack: "sl_" })).toBe("slack");
    expect(platformOfUserId(user("@slack_U1:acme.test"), { slack: "sl_" })).toBe("matrix");
  });
});

describe.each(BACKENDS)("people (%s)", (kind) => {
  let database: TestDatabase;
  let tenant: TenantId;
  let other: TenantId;
  let agent: AgentId;

  const inTenant = <T>(work: (trx: Knex.Transaction) => Promise<T>, tenantId = tenant) =>
    withTenant(database.knex, tenantId, work);
  const countPeople = async () => {
    const [row] = await database.knex("people").where("tenant_id", tenant).count({ count: "*" });
    return Number(row?.count);
  };
  const say = (personId: PersonId, sender: string, eventId: string) =>
    inTenant((trx) =>
      recordMessage(trx, {
        roomId: "!room:acme.test" as RoomId,
        threadRootId: null,
        eventId: eventId as EventId,
        sender: user(sender),
        personId,
        agentId: null,
        platform: platformOfUserId(user(sender)),
        body: `hello from ${sender}`,
        sentAt: new Date(),
      }),
    );

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    const acme = await seedTenant(database.knex, "acme", ["ada"]);
    tenant = acme.tenantId;
    agent = acme.agents[0]!;
    other = (await seedTenant(database.knex, "globex")).tenantId;
  });
  afterAll(() => database.drop());

  it("creates a person on first sight and finds them afterwards", async () => {
    const first = await inTenant((trx) =>
      resolvePerson(trx, user("@dora:acme.test"), "matrix", "Dora"),
    );
    const again = await inTenant((trx) =>
      resolvePerson(trx, user("@dora:acme.test"), "matrix", "Dora E."),
    );
    expect(again).toBe(first);
    expect((await inTenant((trx) => getPerson(trx, first)))?.displayName).toBe("Dora E.");
    expect(await inTenant((trx) => identitiesOf(trx, first))).toMatchObject([
      { userId: "@dora:acme.test", platform: "matrix" },
    ]);
    expect(await inTenant((trx) => personIdsFor(trx, user("@dora:acme.test")))).toEqual([first]);
    expect(await inTenant((trx) => personIdsFor(trx, [user("@nobody:acme.test")]))).toEqual([]);
  });

  it("creates one person when the same new user arrives concurrently", async () => {
    const before = await countPeople();
    const ids = await Promise.all(
      Array.from({ length: 6 }, () =>
        inTenant((trx) => resolvePerson(trx, user("@eve:acme.test"), "matrix")),
      ),
    );
    expect(new Set(ids).size).toBe(1);
    expect(await countPeople()).toBe(before + 1);
  });

  it("keeps each tenant's people to itself", async () => {
    const inAcme = await inTenant((trx) =>
      resolvePerson(trx, user("@frank:shared.test"), "matrix"),
    );
    const inGlobex = await inTenant(
      (trx) => resolvePerson(trx, user("@frank:shared.test"), "matrix"),
      other,
    );
    expect(inGlobex).not.toBe(inAcme);
    expect(await inTenant((trx) => getPerson(trx, inAcme), other)).toBeUndefined();
    expect(await inTenant((trx) => identitiesOf(trx, inAcme), other)).toEqual([]);
  });

  it("links two IDs into one person whose facts and history follow", async () => {
    const matrixId = "@grace:acme.test";
    const slackId = "@slack_UGRACE:acme.test";
    const grace = await inTenant((trx) => resolvePerson(trx, user(matrixId), "matrix", "Grace"));
    const ghost = await inTenant((trx) => resolvePerson(trx, user(slackId), "slack"));
    await inTenant(async (trx) => {
      await rememberFact(trx, {
        agentId: null,
        subject: { kind: "person", personId: grace },
        key: "favourite colour",
        content: "my favourite colour is green",
        source: "explicit",
      });
      await rememberFact(trx, {
        agentId: null,
        subject: { kind: "person", personId: ghost },
        content: "is on the design team",
        source: "explicit",
      });
      await rememberFact(trx, {
        agentId: null,
        subject: { kind: "person", personId: ghost },
        key: "favourite colour",
        content: "my favourite colour is blue",
        source: "explicit",
      });
    });
    await say(grace, matrixId, "$g1");
    await say(ghost, slackId, "$g2");

    const linked = await inTenant((trx) => linkIdentities(trx, user(slackId), user(matrixId)));
    expect(linked).toBe(grace);
    expect(await inTenant((trx) => getPerson(trx, ghost))).toBeUndefined();
    expect(
      (await inTenant((trx) => identitiesOf(trx, grace))).map((i) => i.platform).sort(),
    ).toEqual(["matrix", "slack"]);
    const current = await inTenant((trx) => listFacts(trx, { personId: grace, agentId: agent }));
    expect(current.map((fact) => fact.content).sort()).toEqual([
      "is on the design team",
      "my favourite colour is blue",
    ]);
    const history = await inTenant((trx) => historyOfPerson(trx, grace));
    expect(history.map((message) => message.eventId).sort()).toEqual(["$g1", "$g2"]);

    expect(await inTenant((trx) => linkIdentities(trx, user(matrixId), user(slackId)))).toBe(grace);
    expect(await inTenant((trx) => identitiesOf(trx, grace))).toHaveLength(2);
  });

  it("links an ID never seen before", async () => {
    const heidi = await inTenant((trx) => resolvePerson(trx, user("@heidi:acme.test"), "matrix"));
    const linked = await inTenant((trx) =>
      linkIdentities(trx, user("@heidi:acme.test"), user("@telegram_777:acme.test")),
    );
    expect(linked).toBe(heidi);
    expect(await inTenant((trx) => identitiesOf(trx, heidi))).toMatchObject([
      { userId: "@heidi:acme.test", platform: "matrix" },
      { userId: "@telegram_777:acme.test", platform: "telegram" },
    ]);
  });

  it("unlinks an ID into a person of its own; facts stay, its messages move", async () => {
    const ivan = await inTenant((trx) => resolvePerson(trx, user("@ivan:acme.test"), "matrix"));
    await inTenant((trx) =>
      linkIdentities(trx, user("@ivan:acme.test"), user("@discord_42:acme.test")),
    );
    await inTenant((trx) =>
      rememberFact(trx, {
        agentId: null,
        subject: { kind: "person", personId: ivan },
        content: "plays the cello",
        source: "explicit",
      }),
    );
    await say(ivan, "@discord_42:acme.test", "$i1");
    await say(ivan, "@ivan:acme.test", "$i2");

    const split = await inTenant((trx) => unlinkIdentity(trx, user("@discord_42:acme.test")));
    expect(split).not.toBe(ivan);
    expect(await inTenant((trx) => personIdsFor(trx, user("@discord_42:acme.test")))).toEqual([
      split,
    ]);
    expect(await inTenant((trx) => listFacts(trx, { personId: split }))).toEqual([]);
    expect(
      (await inTenant((trx) => listFacts(trx, { personId: ivan }))).map((f) => f.content),
    ).toEqual(["plays the cello"]);
    expect((await inTenant((trx) => historyOfPerson(trx, split))).map((m) => m.eventId)).toEqual([
      "$i1",
    ]);
    expect((await inTenant((trx) => historyOfPerson(trx, ivan))).map((m) => m.eventId)).toEqual([
      "$i2",
    ]);
    // The last identity of a person is already on its own.
    expect(await inTenant((trx) => unlinkIdentity(trx, user("@ivan:acme.test")))).toBe(ivan);
  });

  it("survives crossing concurrent links", async () => {
    const ids = ["@judy:acme.test", "@slack_UJ:acme.test", "@telegram_J:acme.test"].map(user);
    for (const id of ids) await inTenant((trx) => resolvePerson(trx, id, platformOfUserId(id)));
    const [a, b, c] = ids as [MatrixUserId, MatrixUserId, MatrixUserId];
    const results = await Promise.allSettled([
      inTenant((trx) => linkIdentities(trx, a, b)),
      inTenant((trx) => linkIdentities(trx, b, c)),
      inTenant((trx) => linkIdentities(trx, c, a)),
    ]);
    for (const result of results)
      expect(result.status === "rejected" ? String(result.reason) : "ok").toBe("ok");
    const people = await inTenant((trx) => personIdsFor(trx, ids));
    expect(people).toHaveLength(1);
  });
});
