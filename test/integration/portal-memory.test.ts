import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { rememberFact } from "../../src/memory/facts.ts";
import { linkIdentities, resolvePerson } from "../../src/memory/people.ts";
import type { AgentId, MatrixUserId, PersonId, TenantId } from "../../src/shared/ids.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

interface FactBody {
  id: string;
  content: string;
  agent: string | null;
  source: string;
  personId: string | null;
}

describe("portal memory", () => {
  let t: PortalTest;
  let owner: Browser;
  let member: Browser;
  let stranger: Browser;
  let acme: { id: TenantId; slug: string };
  let other: { id: TenantId; slug: string };
  let alice: PersonId;
  let bob: PersonId;
  let outsider: PersonId;
  const factIds: string[] = [];

  const currentFacts = async (): Promise<number> =>
    Number(
      (
        (await t.app.database.knex("facts").whereNull("valid_to").count({ n: "*" }).first()) as {
          n: string | number;
        }
      ).n,
    );

  beforeAll(async () => {
    t = await startPortalTest();
    owner = await t.signedIn("owner@example.org");
    member = await t.signedIn("member@example.org");
    stranger = await t.signedIn("stranger@example.org");
    acme = await seedTenant(t, "acme", [
      { browser: owner, role: "owner" },
      { browser: member, role: "member" },
    ]);
    other = await seedTenant(t, "other", [{ browser: stranger, role: "owner" }]);
    const ada = await t.app.agents.create(acme.id, { name: "ada" }, { id: "test", via: "cli" });
    const knex = t.app.database.knex;
    [alice, bob] = await withTenant(knex, acme.id, async (trx) => {
      const a = await linkIdentities(
        trx,
        "@alice:acme.example.test" as MatrixUserId,
        "@telegram_42:acme.example.test" as MatrixUserId,
      );
      const b = await resolvePerson(trx, "@bob:acme.example.test" as MatrixUserId, "matrix", "Bob");
      for (const [personId, content, agentId] of [
        [a, "Alice plays jazz piano", null],
        [a, "Alice prefers tea over coffee", ada.id],
        [b, "Bob is learning jazz guitar", null],
      ] as const) {
        const fact = await rememberFact(trx, {
          agentId: agentId as AgentId | null,
          subject: { kind: "person", personId },
          content,
          source: "explicit",
        });
        factIds.push(fact.id);
      }
      return [a, b];
    });
    outsider = await withTenant(knex, other.id, async (trx) => {
      const o = await resolvePerson(trx, "@olga:other.example.test" as MatrixUserId, "matrix");
      factIds.push(
        (
          await rememberFact(trx, {
            agentId: null,
            subject: { kind: "person", personId: o },
            content: "Olga plays jazz drums",
            source: "explicit",
          })
        ).id,
      );
      return o;
    });
  });
  afterAll(async () => {
    await t.stop();
  });

  it("lists people with their Matrix IDs and fact counts, a page at a time", async () => {
    const api = `/api/v1/tenants/${acme.id}/memory/people`;
    const first = (await member.request(`${api}?limit=1`)).json() as {
      items: { id: string; matrixUserIds: string[]; factCount: number }[];
      nextCursor: string | null;
    };
    expect(first.items).toHaveLength(1);
    expect(first.nextCursor).not.toBeNull();
    const second = (
      await member.request(`${api}?limit=1&cursor=${first.nextCursor ?? ""}`)
    ).json() as typeof first;
    const people = [...first.items, ...second.items];
    expect(second.nextCursor).toBeNull();
    expect(people.find((p) => p.id === alice)).toMatchObject({
      matrixUserIds: ["@alice:acme.example.test", "@telegram_42:acme.example.test"],
      factCount: 2,
    });
    expect(people.find((p) => p.id === bob)).toMatchObject({ factCount: 1 });
    expect((await member.request(`${api}?cursor=garbage`)).statusCode).toBe(400);
    const page = await member.request("/t/acme/memory");
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("@telegram_42:acme.example.test");
    expect(page.body).not.toContain("olga");
  });

  it("shows a person's facts with the agent holding them, and searches facts", async () => {
    const person = (
      await member.request(`/api/v1/tenants/${acme.id}/memory/people/${alice}`)
    ).json() as {
      person: { identities: { userId: string; platform: string }[] };
      facts: { items: FactBody[] };
    };
    expect(person.person.identities.map((i) => i.platform)).toEqual(["matrix", "telegram"]);
    expect(person.facts.items.map((f) => [f.content, f.agent])).toEqual([
      ["Alice prefers tea over coffee", "ada"],
      ["Alice plays jazz piano", null],
    ]);
    const page = await member.request(`/t/acme/memory/people/${alice}`);
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("Alice prefers tea over coffee");
    expect(page.body).not.toContain("Forget</button>");
    const search = (
      await member.request(`/api/v1/tenants/${acme.id}/memory/search?q=jazz`)
    ).json() as {
      items: FactBody[];
    };
    expect(search.items.map((f) => f.content).sort()).toEqual([
      "Alice plays jazz piano",
      "Bob is learning jazz guitar",
    ]);
    const both = (
      await member.request(`/api/v1/tenants/${acme.id}/memory/search?q=jazz+guitar`)
    ).json() as {
      items: FactBody[];
    };
    expect(both.items.map((f) => f.personId)).toEqual([bob]);
    const searchPage = await member.request("/t/acme/memory?q=piano");
    expect(searchPage.body).toContain("Alice plays jazz piano");
    expect(searchPage.body).not.toContain("Olga");
    expect((await member.request(`/api/v1/tenants/${acme.id}/memory/search?q=`)).statusCode).toBe(
      400,
    );
    expect((await member.request(`/api/v1/tenants/${acme.id}/memory/search`)).statusCode).toBe(400);
    expect(
      (await member.request(`/api/v1/tenants/${acme.id}/memory/search?q=${"x".repeat(201)}`))
        .statusCode,
    ).toBe(400);
  });

  it("keeps other tenants' people and facts out of reach (404) and refuses anonymous visitors", async () => {
    expect(
      (await owner.request(`/api/v1/tenants/${acme.id}/memory/people/${outsider}`)).statusCode,
    ).toBe(404);
    expect((await owner.request(`/t/acme/memory/people/${outsider}`)).statusCode).toBe(404);
    expect((await owner.request(`/t/acme/memory/people/not-a-uuid`)).statusCode).toBe(404);
    expect((await stranger.request(`/api/v1/tenants/${acme.id}/memory/people`)).statusCode).toBe(
      404,
    );
    expect((await stranger.request(`/t/acme/memory`)).statusCode).toBe(404);
    const before = await currentFacts();
    const outsiderFact = factIds[3] ?? "";
    const deleted = await owner.request(`/api/v1/tenants/${acme.id}/memory/facts/${outsiderFact}`, {
      method: "DELETE",
    });
    expect(deleted.statusCode).toBe(404);
    expect(
      (await owner.request(`/api/v1/tenants/${acme.id}/memory/people/${outsider}/export`))
        .statusCode,
    ).toBe(404);
    expect(
      (
        await owner.request(`/api/v1/tenants/${acme.id}/memory/people/${outsider}/facts`, {
          method: "DELETE",
        })
      ).statusCode,
    ).toBe(404);
    expect(await currentFacts()).toBe(before);
    expect((await t.browser().request(`/api/v1/tenants/${acme.id}/memory/people`)).statusCode).toBe(
      401,
    );
    const anonymous = await t.browser().request(`/t/acme/memory`);
    expect(anonymous.statusCode).toBe(303);
  });

  it("lets only admins export, forget a fact and erase a person; members, forged forms and bad ids change nothing", async () => {
    const before = await currentFacts();
    const fact = factIds[0] ?? "";
    expect((await member.request(`/t/acme/memory/people/${alice}/export`)).statusCode).toBe(403);
    expect(
      (await member.request(`/t/acme/memory/facts/${fact}/delete`, { form: { personId: alice } }))
        .statusCode,
    ).toBe(403);
    expect(
      (await owner.request(`/t/acme/memory/facts/${fact}/delete`, { form: {}, csrf: false }))
        .statusCode,
    ).toBe(403);
    expect(
      (
        await owner.request(`/api/v1/tenants/${acme.id}/memory/facts/nonsense`, {
          method: "DELETE",
        })
      ).statusCode,
    ).toBe(400);
    const unconfirmed = await owner.request(`/t/acme/memory/people/${alice}/forget`, { form: {} });
    expect(unconfirmed.statusCode).toBe(400);
    expect(unconfirmed.body).toContain("tick the box");
    expect(await currentFacts()).toBe(before);

    const exported = await owner.request(`/t/acme/memory/people/${alice}/export`);
    expect(exported.statusCode).toBe(200);
    expect(exported.headers["content-disposition"]).toBe(
      `attachment; filename="memory-${alice}.json"`,
    );
    const data = exported.json() as { identities: unknown[]; facts: { content: string }[] };
    expect(data.identities).toHaveLength(2);
    expect(data.facts.map((f) => f.content)).toContain("Alice plays jazz piano");
    const viaApi = await owner.request(`/api/v1/tenants/${acme.id}/memory/people/${alice}/export`);
    expect((viaApi.json() as { person: { id: string } }).person.id).toBe(alice);

    const forgot = await owner.request(`/t/acme/memory/facts/${fact}/delete`, {
      form: { personId: alice },
    });
    expect(forgot.statusCode).toBe(303);
    expect(forgot.headers.location).toBe(`/t/acme/memory/people/${alice}`);
    expect(await currentFacts()).toBe(before - 1);
    expect(
      (await owner.request(`/api/v1/tenants/${acme.id}/memory/facts/${fact}`, { method: "DELETE" }))
        .statusCode,
    ).toBe(404);

    const erased = await owner.request(`/t/acme/memory/people/${alice}/forget`, {
      form: { confirm: "yes" },
    });
    expect(erased.statusCode).toBe(303);
    expect(await currentFacts()).toBe(before - 2);
    const bobFact = factIds[2] ?? "";
    expect(
      (
        await owner.request(`/api/v1/tenants/${acme.id}/memory/facts/${bobFact}`, {
          method: "DELETE",
        })
      ).statusCode,
    ).toBe(204);
    const audit = (await t.app.database
      .knex("audit_log")
      .where({ tenant_id: acme.id })
      .orderBy("id")
      .pluck("action")) as string[];
    expect(audit).toEqual(
      expect.arrayContaining(["memory.export", "memory.forget", "memory.forget_all"]),
    );
  });
});
