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
import { accountIdOf, seedTenant as seedPortalTenant } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";
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

  it("cannot point a row of tenant A at tenant B's agent or person (keys check the tenant too)", async () => {
    const before = await rowsOf(b.tenantId);
    const plants: [string, (trx: Knex.Transaction) => Promise<unknown>][] = [
      [
        "a fact held by B's agent",
        (trx) =>
          rememberFact(trx, {
            agentId: b.agent,
            subject: { kind: "tenant" },
            content: "planted by agent",
            source: "admin",
          }),
      ],
      [
        "a message from B's person and agent",
        (trx) =>
          recordMessage(trx, {
            roomId: a.roomId,
            threadRootId: null,
            eventId: "$planted" as EventId,
            sender: a.userId,
            personId: b.person,
            agentId: b.agent,
            platform: "matrix",
            body: "planted",
            sentAt: new Date(),
          }),
      ],
      ["A's facts moved onto B's person", (trx) => reassignFactsOfPerson(trx, a.person, b.person)],
      [
        "A's messages moved onto B's person",
        (trx) => reassignHistoryOfPerson(trx, a.person, b.person),
      ],
    ];
    for (const [name, plant] of plants)
      await expect(inA(plant), name).rejects.toThrow(/foreign key|same_tenant/);
    // Deleting B's agent and person (as B) leaves every row of A in place.
    const aBefore = await rowsOf(a.tenantId);
    await withTenant(database.knex, b.tenantId, async (trx) => {
      await trx("agents").where("id", b.agent).delete(["id"]);
      await deletePerson(trx, b.person);
    });
    expect(await rowsOf(a.tenantId)).toBe(aBefore);
    expect(await rowsOf(b.tenantId)).not.toBe(before);
  });
});

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/**
 * Every route the portal serves, read from Fastify's own route tree (so a
 * route added later is swept without touching this test): full path pattern
 * and methods, HEAD left out (it is GET without a body).
 */
function portalRoutes(tree: string): { pattern: string; methods: Method[] }[] {
  const routes: { pattern: string; methods: Method[] }[] = [];
  const prefixes: string[] = [];
  for (const line of tree.split("\n")) {
    const match = /^(.*?)[├└]── (\S+) \(([^)]+)\)$/u.exec(line);
    if (match === null) continue;
    const depth = Array.from(match[1]!).length / 4;
    const parent = depth === 0 ? "" : (prefixes[depth - 1] ?? "");
    // The root is "/"; its children read "signup" or "t/:slug", deeper ones "/billing".
    const pattern = `${parent}${match[2]!}`;
    prefixes[depth] = pattern;
    const methods = match[3]!
      .split(", ")
      .filter((method): method is Method => method !== "HEAD" && method !== "OPTIONS");
    routes.push({ pattern, methods });
  }
  return routes;
}

/** Path parameters that are names a tenant chooses, not ids of objects: the same in every tenant. */
const NAME_PARAMS = new Set(["tenantId", "slug", "network", "provider"]);

const PNG_1X1 = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=",
  "base64",
);
const SLACK_BOT = "xoxb-1111111111-2222222222-AbCdEfGhIjKlMnOpQrStUvWx";
const SLACK_APP = "xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef";

/** A well-formed JSON body for an API operation, so the answer is about access, not validation. */
function apiBody(method: Method, pattern: string, ids: Record<string, string>): unknown {
  if (method === "GET" || method === "DELETE") return undefined;
  if (pattern.endsWith("/members/:accountId")) return { role: "admin" };
  if (pattern.endsWith("/identities")) return { userId: "@mallory:bob-co.example.test" };
  if (pattern.endsWith("/rooms/:roomId/agents")) return { agent: ids.name };
  if (pattern.endsWith("/agents/:name")) return { displayName: "Mallory" };
  if (pattern.endsWith("/bridges/:network")) return { botToken: SLACK_BOT, appToken: SLACK_APP };
  if (pattern.endsWith("/keys/:provider")) return { key: "sk-mallory-aaaaaaaaaaaa" };
  return { name: "mallory", email: "mallory@example.org", role: "admin" };
}

describe("every portal route, given another tenant's real ids (postgres)", () => {
  let t: PortalTest;
  let alice: Browser;
  let bob: Browser;
  let bobToken: string;
  let aliceTenant: { id: TenantId; slug: string };
  let bobTenant: { id: TenantId; slug: string };
  /** Alice's real objects, by the path parameter that names them. */
  const ids: Record<string, string> = {};

  /** Everything of Alice's tenant as the database holds it: every table with a tenant_id, her account and member. */
  async function aliceSnapshot(): Promise<string> {
    const knex = t.app.database.knex;
    const tables = (
      (await knex.raw(
        "select table_name from information_schema.columns where column_name = 'tenant_id' and table_schema = 'public' order by 1",
      )) as { rows: { table_name: string }[] }
    ).rows.map((row) => row.table_name);
    const dump: Record<string, unknown> = {
      tenant: await knex("tenants").where("id", aliceTenant.id),
      accounts: await knex("accounts").whereIn("id", [ids.aliceAccount!, ids.accountId!]),
    };
    for (const table of tables)
      dump[table] = (
        (await knex.raw(
          `select row_to_json(r)::text as row from ${table} r where tenant_id = ? order by 1`,
          [aliceTenant.id],
        )) as { rows: { row: string }[] }
      ).rows.map((row) => row.row);
    return JSON.stringify(dump);
  }

  beforeAll(async () => {
    t = await startPortalTest({ database: "postgres" });
    alice = await t.signedIn("alice@example.org");
    bob = await t.signedIn("bob@example.org");
    const carol = await t.signedIn("carol@example.org");
    aliceTenant = await seedPortalTenant(t, "alice-co", [
      { browser: alice, role: "owner" },
      { browser: carol, role: "member" },
    ]);
    bobTenant = await seedPortalTenant(t, "bob-co", [{ browser: bob, role: "owner" }]);
    await t.app.database.knex("tenants").update({ plan: "starter" });
    const api = `/api/v1/tenants/${aliceTenant.id}`;
    const made = async (url: string, options: Parameters<Browser["request"]>[1]) => {
      const response = await alice.request(url, options);
      expect(response.statusCode, `${url}: ${response.body}`).toBeLessThan(300);
      return response.json() as Record<string, unknown>;
    };
    await made(`${api}/agents`, { json: { name: "ada" } });
    await bob.request(`/api/v1/tenants/${bobTenant.id}/agents`, { json: { name: "bea" } });
    ids.tokenId = (
      (await made(`${api}/tokens`, { json: { name: "ci" } })).token as { id: string }
    ).id;
    ids.invitationId = (
      await made(`${api}/invitations`, { json: { email: "dave@example.org", role: "member" } })
    ).id as string;
    await made(`${api}/keys/openai`, { method: "PUT", json: { key: "sk-alice-aaaaaaaaaaaa" } });
    await made(`${api}/bridges/slack`, {
      method: "PUT",
      json: { botToken: SLACK_BOT, appToken: SLACK_APP },
    });
    ids.accountId = await accountIdOf(carol);
    ids.aliceAccount = await accountIdOf(alice);
    ids.name = "ada";
    ids.network = "slack";
    ids.provider = "openai";
    ids.userId = "@alice-human:alice-co.example.test";
    ids.roomId = "!alice-room:alice-co.example.test";
    await withTenant(t.app.database.knex, aliceTenant.id, async (trx) => {
      const person = await resolvePerson(trx, ids.userId as MatrixUserId, "matrix", "Al");
      ids.personId = person;
      ids.factId = (
        await rememberFact(trx, {
          agentId: null,
          subject: { kind: "person", personId: person },
          content: "alice's secret plan",
          source: "admin",
        })
      ).id;
      await recordMessage(trx, {
        roomId: ids.roomId as RoomId,
        threadRootId: null,
        eventId: "$alice-1" as EventId,
        sender: ids.userId as MatrixUserId,
        personId: person,
        agentId: null,
        platform: "matrix",
        body: "hello",
        sentAt: new Date(),
      });
    });
    const created = await bob.request(`/api/v1/tenants/${bobTenant.id}/tokens`, {
      json: { name: "sweep" },
    });
    bobToken = (created.json() as { plaintext: string }).plaintext;
  });
  afterAll(async () => {
    await t.stop();
  });

  it("answers 404 to every tenant route, API and pages, and changes nothing", async () => {
    // Every route that names a tenant, and the operators' area (a non-operator gets a 404 there too).
    const isOperators = (pattern: string) =>
      pattern.startsWith("/admin") || pattern.startsWith("/api/v1/admin");
    const routes = portalRoutes(t.portal.printRoutes({ commonPrefix: false })).filter(
      ({ pattern }) =>
        pattern.includes(":tenantId") || pattern.includes(":slug") || isOperators(pattern),
    );
    expect(routes.length).toBeGreaterThan(60);
    // The control: Alice reads her own objects at these very URLs, so the ids are real
    // (the homeserver admin alone is absent: it exists once a real homeserver is provisioned).
    const unreadable: string[] = [];
    for (const { pattern, methods } of routes) {
      if (!methods.includes("GET") || isOperators(pattern)) continue;
      const own = await alice.request(urlOf(pattern, aliceTenant));
      const expected = pattern.endsWith("/homeserver-admin") ? 404 : 200;
      if (own.statusCode !== expected) unreadable.push(`${pattern}: ${String(own.statusCode)}`);
    }
    expect(unreadable).toEqual([]);

    const before = await aliceSnapshot();
    const refusals: string[] = [];
    let requests = 0;
    for (const { pattern, methods } of routes) {
      const params = [...pattern.matchAll(/:(\w+)/gu)].map((match) => match[1]!);
      const bearsIds = params.some((param) => !NAME_PARAMS.has(param));
      // Alice's tenant with her ids; and, where the route names objects, Bob's own tenant with Alice's ids.
      const targets = [aliceTenant, ...(bearsIds && !isOperators(pattern) ? [bobTenant] : [])];
      for (const tenant of targets)
        for (const method of methods) {
          for (const as of ["session", "token"] as const) {
            if (as === "token" && !pattern.startsWith("/api/")) continue;
            const url = urlOf(pattern, tenant);
            const response = await send(url, method, pattern, as);
            requests += 1;
            if (response.statusCode !== 404 || response.body.includes("secret plan"))
              refusals.push(
                `${as} ${method} ${url} (${pattern}): ${String(response.statusCode)} ${response.body.slice(0, 200)}`,
              );
          }
        }
    }
    expect(refusals).toEqual([]);
    expect(requests).toBeGreaterThan(100);
    expect((await aliceSnapshot()) === before, "Alice's rows changed").toBe(true);
  });

  function urlOf(pattern: string, tenant: { id: string; slug: string }): string {
    const query = pattern.endsWith("/memory/search") ? "?q=secret+plan" : "";
    return (
      pattern.replace(/:(\w+)/gu, (_all, param: string) =>
        encodeURIComponent(
          param === "tenantId" ? tenant.id : param === "slug" ? tenant.slug : ids[param]!,
        ),
      ) + query
    );
  }

  async function send(url: string, method: Method, pattern: string, as: "session" | "token") {
    const headers: Record<string, string> =
      as === "token" ? { authorization: `Bearer ${bobToken}` } : {};
    const client = as === "token" ? t.browser() : bob;
    if (pattern.endsWith("/avatar") && method === "PUT")
      return client.request(url, {
        method,
        body: PNG_1X1,
        headers: { ...headers, "content-type": "image/png", "x-csrf-token": await bob.csrfToken() },
      });
    if (pattern.endsWith("/avatar"))
      return client.request(`${url}?_csrf=${encodeURIComponent(await bob.csrfToken())}`, {
        method,
        body: multipartImage(),
        headers: { "content-type": `multipart/form-data; boundary=${BOUNDARY}` },
      });
    if (pattern.startsWith("/api/")) {
      const json = apiBody(method, pattern, ids);
      return client.request(url, {
        method,
        headers,
        ...(json === undefined ? {} : { json }),
        ...(as === "token" ? { csrf: false } : {}),
      });
    }
    if (method === "GET") return client.request(url);
    return client.request(url, {
      method,
      form: {
        name: "mallory",
        displayName: "Mallory",
        email: "mallory@example.org",
        role: "admin",
        userId: ids.userId!,
        agent: ids.name!,
        slug: pattern.includes(":slug") ? url.split("/")[2]! : "",
        key: "sk-mallory-aaaaaaaaaaaa",
        botToken: SLACK_BOT,
        appToken: SLACK_APP,
        password: "correct horse battery staple",
        confirm: "yes",
      },
    });
  }
});

const BOUNDARY = "sweepboundary";
function multipartImage(): Buffer {
  return Buffer.concat([
    Buffer.from(
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="avatar"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`,
    ),
    PNG_1X1,
    Buffer.from(`\r\n--${BOUNDARY}--\r\n`),
  ]);
}
