import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { rememberFact } from "../../src/memory/facts.ts";
import { linkIdentities, platformOfUserId, resolvePerson } from "../../src/memory/people.ts";
import type { AgentId, MatrixUserId, PersonId, TenantId } from "../../src/shared/ids.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

interface FactBody {
  id: string;
  content: string;
  agent: string | null;
  source: string;
  personId: string | null;
}

interface PersonBody {
  person: {
    id: string;
    matrixUserIds: string[];
    identities: { userId: string; platform: string; linkedAt: string }[];
  };
}

describe.each(BACKENDS)("portal memory (%s)", (kind) => {
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
    t = await startPortalTest({ database: kind });
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

  /** A person of acme known by `userId`, with one shared fact, created `minutesAgo` (older people survive merges). */
  const seedPerson = (userId: string, content: string, minutesAgo: number): Promise<PersonId> =>
    withTenant(t.app.database.knex, acme.id, async (trx) => {
      const id = userId as MatrixUserId;
      const personId = await resolvePerson(trx, id, platformOfUserId(id));
      await trx("people")
        .where("id", personId)
        .update({ created_at: new Date(Date.now() - minutesAgo * 60_000) });
      await rememberFact(trx, {
        agentId: null,
        subject: { kind: "person", personId },
        content,
        source: "explicit",
      });
      return personId;
    });

  /** Everything linking and unlinking could write: identities, people and audit entries. */
  const identityState = async () => {
    const knex = t.app.database.knex;
    return {
      identities: await knex("person_identities").select("user_id", "person_id").orderBy("user_id"),
      people: await knex("people").orderBy("id").pluck("id"),
      audit: await knex("audit_log").orderBy("id").pluck("id"),
    };
  };

  const personApi = (personId: string) => `/api/v1/tenants/${acme.id}/memory/people/${personId}`;

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

  it("links a bridge ghost from the person page: both identities listed with their platforms, the facts of both under one person", async () => {
    const carol = await seedPerson("@carol:acme.example.test", "Carol collects old maps", 30);
    const ghostUserId = "@slack_t123-u456:acme.example.test";
    const ghost = await seedPerson(ghostUserId, "Carol's cat is called Miso", 5);
    const memberView = await member.request(`/t/acme/memory/people/${carol}`);
    expect(memberView.body).toContain("@carol:acme.example.test");
    expect(memberView.body).not.toContain("Link an identity");
    const before = await owner.request(`/t/acme/memory/people/${carol}`);
    expect(before.body).toContain("Link an identity");
    expect(before.body).not.toContain("/identities/unlink"); // their only identity stays

    const linked = await owner.request(`/t/acme/memory/people/${carol}/identities`, {
      form: { userId: ghostUserId },
    });
    expect(linked.statusCode, linked.body).toBe(303);
    expect(linked.headers.location).toBe(`/t/acme/memory/people/${carol}`);
    const after = await owner.request(`/t/acme/memory/people/${carol}`);
    expect(after.body).toContain("is now one of their identities");
    expect(after.body).toContain(ghostUserId);
    expect(after.body).toContain("<td>slack</td>");
    expect(after.body).toContain("Carol&#39;s cat is called Miso");
    expect(after.body).toContain("Carol collects old maps");
    expect(after.body.match(/\/identities\/unlink/g)).toHaveLength(2);

    const viaApi = (await member.request(personApi(carol))).json() as PersonBody & {
      facts: { items: FactBody[] };
    };
    expect(viaApi.person.identities.map((i) => [i.userId, i.platform])).toEqual([
      ["@carol:acme.example.test", "matrix"],
      [ghostUserId, "slack"],
    ]);
    expect(viaApi.facts.items.map((f) => f.content).sort()).toEqual([
      "Carol collects old maps",
      "Carol's cat is called Miso",
    ]);
    expect((await member.request(personApi(ghost))).statusCode).toBe(404);
    const audit = await t.app.database
      .knex("audit_log")
      .where({ tenant_id: acme.id, action: "person.link" })
      .pluck("target");
    expect(audit).toContain(`@carol:acme.example.test ${ghostUserId}`);
  });

  it("links and unlinks over the API: the older person survives a merge, unlinked IDs leave the facts behind", async () => {
    const dana = await seedPerson("@dana:acme.example.test", "Dana runs marathons", 60);
    const discordGhost = "@discord_998877:acme.example.test";
    const ghost = await seedPerson(discordGhost, "Dana is vegetarian", 1);

    const openapi = (await member.request("/api/v1/openapi.json")).json() as {
      paths: Record<string, Record<string, unknown>>;
    };
    const identitiesPath = "/api/v1/tenants/{tenantId}/memory/people/{personId}/identities";
    expect(openapi.paths[identitiesPath]?.post).toBeDefined();
    expect(openapi.paths[`${identitiesPath}/{userId}`]?.delete).toBeDefined();

    // Linking from the newer person's side: the older person (Dana) takes the ghost's person over.
    const merged = await owner.request(`${personApi(ghost)}/identities`, {
      json: { userId: "@dana:acme.example.test" },
    });
    expect(merged.statusCode, merged.body).toBe(200);
    const mergedBody = merged.json() as PersonBody;
    expect(mergedBody.person.id).toBe(dana);
    expect(mergedBody.person.identities.map((i) => i.platform)).toEqual(["matrix", "discord"]);

    // An ID the agents never met yet (a Telegram ghost before its first message) is linked too.
    const telegram = await owner.request(`${personApi(dana)}/identities`, {
      json: { userId: "@telegram_4242:acme.example.test" },
    });
    expect(telegram.statusCode, telegram.body).toBe(200);
    expect((telegram.json() as PersonBody).person.matrixUserIds).toEqual([
      "@dana:acme.example.test",
      discordGhost,
      "@telegram_4242:acme.example.test",
    ]);

    const unlinked = await owner.request(
      `${personApi(dana)}/identities/${encodeURIComponent(discordGhost)}`,
      { method: "DELETE" },
    );
    expect(unlinked.statusCode, unlinked.body).toBe(200);
    const unlinkedBody = unlinked.json() as PersonBody & {
      unlinked: { userId: string; personId: string };
    };
    expect(unlinkedBody.person.id).toBe(dana);
    expect(unlinkedBody.person.matrixUserIds).toEqual([
      "@dana:acme.example.test",
      "@telegram_4242:acme.example.test",
    ]);
    expect(unlinkedBody.unlinked.userId).toBe(discordGhost);
    expect(unlinkedBody.unlinked.personId).not.toBe(dana);
    const separated = (
      await member.request(personApi(unlinkedBody.unlinked.personId))
    ).json() as PersonBody & { facts: { items: FactBody[] } };
    expect(separated.person.matrixUserIds).toEqual([discordGhost]);
    expect(separated.facts.items).toEqual([]);
    const danaNow = (await member.request(personApi(dana))).json() as {
      facts: { items: FactBody[] };
    };
    expect(danaNow.facts.items.map((f) => f.content).sort()).toEqual([
      "Dana is vegetarian",
      "Dana runs marathons",
    ]);

    // The page's Unlink button does the same; the last identity then has none.
    const viaPage = await owner.request(`/t/acme/memory/people/${dana}/identities/unlink`, {
      form: { userId: "@telegram_4242:acme.example.test" },
    });
    expect(viaPage.statusCode, viaPage.body).toBe(303);
    expect(viaPage.headers.location).toBe(`/t/acme/memory/people/${dana}`);
    const page = await owner.request(`/t/acme/memory/people/${dana}`);
    expect(page.body).toContain("is a person of its own again");
    expect(page.body).not.toContain("/identities/unlink");
    const actions = await t.app.database
      .knex("audit_log")
      .where({ tenant_id: acme.id })
      .whereIn("action", ["person.link", "person.unlink"])
      .pluck("target");
    expect(actions).toEqual(
      expect.arrayContaining([
        `${discordGhost} @dana:acme.example.test`,
        discordGhost,
        "@telegram_4242:acme.example.test",
      ]),
    );
  });

  it("refuses bad identity changes with a clear 4xx and writes nothing: bad IDs, their own or last identity, unknown or foreign people, members, forged forms", async () => {
    const erin = await seedPerson("@erin:acme.example.test", "Erin sings", 20);
    await owner.request(`${personApi(erin)}/identities`, {
      json: { userId: "@telegram_31337:acme.example.test" },
    });
    const before = await identityState();
    const message = (response: { json: () => unknown }) =>
      (response.json() as { error: { message: string } }).error.message;

    const notAnId = await owner.request(`${personApi(erin)}/identities`, {
      json: { userId: "telegram_31337" },
    });
    expect(notAnId.statusCode).toBe(400);
    expect(message(notAnId)).toMatch(/not a Matrix user ID/);
    expect((await owner.request(`${personApi(erin)}/identities`, { json: {} })).statusCode).toBe(
      400,
    );
    expect(
      (
        await owner.request(`${personApi(erin)}/identities`, {
          json: { userId: "@x:y".repeat(60) },
        })
      ).statusCode,
    ).toBe(400);
    const own = await owner.request(`${personApi(erin)}/identities`, {
      json: { userId: "@telegram_31337:acme.example.test" },
    });
    expect(own.statusCode).toBe(409);
    expect(message(own)).toMatch(/already one of this person's identities/);
    for (const personId of ["00000000-0000-4000-8000-000000000000", "not-a-uuid", outsider]) {
      const response = await owner.request(`${personApi(personId)}/identities`, {
        json: { userId: "@bob:acme.example.test" },
      });
      expect(response.statusCode, personId).toBe(404);
      const unlink = await owner.request(
        `${personApi(personId)}/identities/${encodeURIComponent("@olga:other.example.test")}`,
        { method: "DELETE" },
      );
      expect(unlink.statusCode, personId).toBe(404);
    }
    const stranger404 = await stranger.request(`${personApi(erin)}/identities`, {
      json: { userId: "@olga:other.example.test" },
    });
    expect(stranger404.statusCode).toBe(404);
    expect(
      (
        await member.request(`${personApi(erin)}/identities`, {
          json: { userId: "@bob:acme.example.test" },
        })
      ).statusCode,
    ).toBe(403);
    expect(
      (
        await member.request(
          `${personApi(erin)}/identities/${encodeURIComponent("@erin:acme.example.test")}`,
          { method: "DELETE" },
        )
      ).statusCode,
    ).toBe(403);
    const notTheirs = await owner.request(
      `${personApi(erin)}/identities/${encodeURIComponent("@bob:acme.example.test")}`,
      { method: "DELETE" },
    );
    expect(notTheirs.statusCode).toBe(404);
    expect(
      (await owner.request(`${personApi(erin)}/identities/nobody`, { method: "DELETE" }))
        .statusCode,
    ).toBe(400);
    const last = await owner.request(
      `${personApi(bob)}/identities/${encodeURIComponent("@bob:acme.example.test")}`,
      { method: "DELETE" },
    );
    expect(last.statusCode).toBe(409);
    expect(message(last)).toMatch(/only identity/);

    // Pages: the refusal is shown on the person page with what was typed.
    const badForm = await owner.request(`/t/acme/memory/people/${erin}/identities`, {
      form: { userId: "erin at slack" },
    });
    expect(badForm.statusCode).toBe(400);
    expect(badForm.body).toContain("is not a Matrix user ID");
    expect(badForm.body).toContain('value="erin at slack"');
    const ownForm = await owner.request(`/t/acme/memory/people/${erin}/identities`, {
      form: { userId: "@erin:acme.example.test" },
    });
    expect(ownForm.statusCode).toBe(409);
    expect(ownForm.body).toContain("already one of this person&#39;s identities");
    const lastForm = await owner.request(`/t/acme/memory/people/${bob}/identities/unlink`, {
      form: { userId: "@bob:acme.example.test" },
    });
    expect(lastForm.statusCode).toBe(409);
    expect(
      (
        await member.request(`/t/acme/memory/people/${erin}/identities`, {
          form: { userId: "@bob:acme.example.test" },
        })
      ).statusCode,
    ).toBe(403);
    expect(
      (
        await owner.request(`/t/acme/memory/people/${outsider}/identities`, {
          form: { userId: "@bob:acme.example.test" },
        })
      ).statusCode,
    ).toBe(404);
    expect(
      (
        await stranger.request(`/t/acme/memory/people/${erin}/identities/unlink`, {
          form: { userId: "@erin:acme.example.test" },
        })
      ).statusCode,
    ).toBe(404);

    // CSRF: a form or API call without this session's token is refused.
    const erinIdentity = `${personApi(erin)}/identities/${encodeURIComponent("@erin:acme.example.test")}`;
    for (const [url, options] of [
      [`/t/acme/memory/people/${erin}/identities`, { form: { userId: "@bob:acme.example.test" } }],
      [
        `/t/acme/memory/people/${erin}/identities/unlink`,
        { form: { userId: "@erin:acme.example.test" } },
      ],
      [`${personApi(erin)}/identities`, { json: { userId: "@bob:acme.example.test" } }],
      [erinIdentity, { method: "DELETE" }],
    ] as const)
      expect((await owner.request(url, { ...options, csrf: false })).statusCode, url).toBe(403);

    expect(await identityState()).toEqual(before);
  });
});
