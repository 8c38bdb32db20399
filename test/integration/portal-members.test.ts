import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../../src/secrets/cipher.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";
import {
  bearer,
  createTenant,
  errorOf,
  expireSession,
  rowCounts,
  tokenFor,
  type TenantBody,
} from "../support/portal-tenants.ts";

interface MemberBody {
  accountId: string;
  email: string;
  role: string;
  matrixUserId: string | null;
}

/** Invites `email` into the tenant as `role` through the API and returns the mailed token. */
async function invite(
  t: PortalTest,
  by: Browser,
  tenantId: string,
  email: string,
  role: string,
): Promise<string> {
  const response = await by.request(`/api/v1/tenants/${tenantId}/invitations`, {
    json: { email, role },
  });
  expect(response.statusCode, response.body).toBe(201);
  const { link } = await t.lastMailTo(email.toLowerCase());
  const url = new URL(link ?? "http://x/");
  expect(url.origin + url.pathname).toBe("http://portal.test/invitations/accept");
  return url.searchParams.get("token") ?? "";
}

async function accept(browser: Browser, token: string) {
  return browser.request("/api/v1/invitations/accept", { json: { token } });
}

async function members(browser: Browser, tenantId: string): Promise<MemberBody[]> {
  const response = await browser.request(`/api/v1/tenants/${tenantId}/members`);
  expect(response.statusCode, response.body).toBe(200);
  return (response.json() as { items: MemberBody[] }).items;
}

async function chatAdmins(t: PortalTest, tenantId: string) {
  return (await t.database
    .knex("tenant_admins")
    .where({ tenant_id: tenantId })
    .orderBy("user_id")
    .select("user_id", "source")) as { user_id: string; source: string }[];
}

describe("members and invitations", () => {
  let t: PortalTest;
  let owner: Browser;
  let tenant: TenantBody;
  beforeAll(async () => {
    t = await startPortalTest();
    owner = await t.signedIn("owner@example.org");
    tenant = await createTenant(owner, "team");
  });
  afterAll(async () => {
    await t.stop();
  });

  it("invites by mail, stores the token hashed, and lets the invited account join", async () => {
    const token = await invite(t, owner, tenant.id, "Bob@Example.org", "admin");
    const stored = (await t.database
      .knex("invitations")
      .where({ email: "bob@example.org" })
      .first()) as { token_sha256: string; expires_at: Date; role: string };
    expect(stored.token_sha256).toBe(sha256Hex(token));
    expect(JSON.stringify(stored)).not.toContain(token);
    const days = (new Date(stored.expires_at).getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.99);
    expect(days).toBeLessThanOrEqual(7);

    const listed = await owner.request(`/api/v1/tenants/${tenant.id}/invitations`);
    expect(listed.json()).toMatchObject({
      items: [{ email: "bob@example.org", role: "admin", expired: false }],
    });

    // Anyone with the link sees what it is for; accepting needs the invited account.
    const preview = await t.browser().request(`/invitations/accept?token=${token}`);
    expect(preview.statusCode).toBe(200);
    expect(preview.body).toContain("Tenant team");
    expect(preview.body).toContain("/login?next=%2Finvitations%2Faccept%3Ftoken%3D");

    const mallory = await t.signedIn("mallory@example.org");
    const before = await rowCounts(t);
    const wrong = await accept(mallory, token);
    expect(wrong.statusCode).toBe(403);
    expect(errorOf(wrong)).toMatch(/sent to another email address/);
    const wrongPage = await mallory.request(`/invitations/accept?token=${token}`);
    expect(wrongPage.body).toContain("Sign out and sign in as bob@example.org");
    expect(await rowCounts(t)).toEqual(before);

    const bob = await t.signedIn("bob@example.org");
    const page = await bob.request(`/invitations/accept?token=${token}`);
    expect(page.body).toContain("Accept and join");
    const joined = await bob.request("/invitations/accept", { form: { token } });
    expect(joined.statusCode).toBe(303);
    expect(joined.headers.location).toBe("/t/team");
    expect(await members(owner, tenant.id)).toEqual([
      expect.objectContaining({ email: "owner@example.org", role: "owner" }),
      expect.objectContaining({ email: "bob@example.org", role: "admin" }),
    ]);
    // Used: the link does not work twice, and the invitation is no longer pending.
    expect((await accept(bob, token)).statusCode).toBe(400);
    expect((await owner.request(`/api/v1/tenants/${tenant.id}/invitations`)).json()).toEqual({
      items: [],
      nextCursor: null,
    });
    // An existing member cannot be invited again.
    const again = await owner.request(`/api/v1/tenants/${tenant.id}/invitations`, {
      json: { email: "bob@example.org", role: "member" },
    });
    expect(again.statusCode).toBe(409);
  });

  it("replaces an earlier invitation, withdraws one, and refuses expired links", async () => {
    const first = await invite(t, owner, tenant.id, "carol@example.org", "member");
    const second = await invite(t, owner, tenant.id, "carol@example.org", "admin");
    const pending = (await owner.request(`/api/v1/tenants/${tenant.id}/invitations`)).json() as {
      items: { id: string; email: string; role: string }[];
    };
    expect(pending.items).toEqual([
      expect.objectContaining({ email: "carol@example.org", role: "admin" }),
    ]);
    const carol = await t.signedIn("carol@example.org");
    const replaced = await accept(carol, first);
    expect(replaced.statusCode).toBe(400);
    expect(errorOf(replaced)).toMatch(/invalid, used or withdrawn/);

    await t.database
      .knex("invitations")
      .where({ token_sha256: sha256Hex(second) })
      .update({ expires_at: new Date(Date.now() - 1000) });
    const expired = await accept(carol, second);
    expect(expired.statusCode).toBe(400);
    expect(errorOf(expired)).toMatch(/expired/);
    const expiredPage = await carol.request(`/invitations/accept?token=${second}`);
    expect(expiredPage.statusCode).toBe(400);
    expect(expiredPage.body).toContain("expired");

    const invitationId = pending.items[0]?.id ?? "";
    const revoked = await owner.request(
      `/api/v1/tenants/${tenant.id}/invitations/${invitationId}`,
      { method: "DELETE" },
    );
    expect(revoked.statusCode).toBe(204);
    expect(
      (
        await owner.request(`/api/v1/tenants/${tenant.id}/invitations/${invitationId}`, {
          method: "DELETE",
        })
      ).statusCode,
    ).toBe(404);
    expect((await accept(carol, second)).statusCode).toBe(400);
    expect((await members(owner, tenant.id)).map((m) => m.email)).not.toContain(
      "carol@example.org",
    );
  });

  it("keeps an owner, lets only owners make owners, and keeps chat admins in step", async () => {
    const team = await createTenant(owner, "roles");
    const dave = await t.signedIn("dave@example.org");
    await accept(dave, await invite(t, owner, team.id, "dave@example.org", "admin"));
    const erin = await t.signedIn("erin@example.org");
    await accept(erin, await invite(t, owner, team.id, "erin@example.org", "member"));
    const byEmail = async (email: string) =>
      (await members(owner, team.id)).find((m) => m.email === email) as MemberBody;
    const ownerId = (await byEmail("owner@example.org")).accountId;
    const erinId = (await byEmail("erin@example.org")).accountId;
    const daveId = (await byEmail("dave@example.org")).accountId;
    const roleUrl = (id: string) => `/api/v1/tenants/${team.id}/members/${id}`;

    // Dave (admin) links his Matrix ID: he administers by chat too.
    const link = await dave.request(`/api/v1/tenants/${team.id}/members/me/matrix-id`, {
      method: "PUT",
      json: { matrixUserId: "@dave:example.org" },
    });
    expect(link.statusCode, link.body).toBe(200);
    expect(await chatAdmins(t, team.id)).toEqual([
      { user_id: "@dave:example.org", source: "member" },
    ]);
    // The same ID cannot be linked by a second member.
    const taken = await erin.request(`/api/v1/tenants/${team.id}/members/me/matrix-id`, {
      method: "PUT",
      json: { matrixUserId: "@dave:example.org" },
    });
    expect(taken.statusCode).toBe(409);
    // Erin (member) links hers: no chat admin rights.
    await erin.request(`/api/v1/tenants/${team.id}/members/me/matrix-id`, {
      method: "PUT",
      json: { matrixUserId: "@erin:example.org" },
    });
    expect((await chatAdmins(t, team.id)).map((row) => row.user_id)).toEqual(["@dave:example.org"]);

    const before = await rowCounts(t);
    // Admins cannot make owners, nor demote the owner; members cannot change roles at all.
    const promote = await dave.request(roleUrl(erinId), {
      method: "PATCH",
      json: { role: "owner" },
    });
    expect(promote.statusCode).toBe(403);
    expect(errorOf(promote)).toMatch(/only owners/);
    expect(
      (await dave.request(roleUrl(ownerId), { method: "PATCH", json: { role: "member" } }))
        .statusCode,
    ).toBe(403);
    expect(
      (await erin.request(roleUrl(daveId), { method: "PATCH", json: { role: "member" } }))
        .statusCode,
    ).toBe(403);
    // The only owner can neither step down nor leave.
    const stepDown = await owner.request(roleUrl(ownerId), {
      method: "PATCH",
      json: { role: "admin" },
    });
    expect(stepDown.statusCode).toBe(409);
    expect(errorOf(stepDown)).toMatch(/needs an owner/);
    const leave = await owner.request(roleUrl("me"), { method: "DELETE" });
    expect(leave.statusCode).toBe(409);
    // Members cannot remove others.
    expect((await erin.request(roleUrl(daveId), { method: "DELETE" })).statusCode).toBe(403);
    expect(await rowCounts(t)).toEqual(before);

    // Demoting Dave takes his chat admin rights away; promoting gives them back.
    await owner.request(roleUrl(daveId), { method: "PATCH", json: { role: "member" } });
    expect(await chatAdmins(t, team.id)).toEqual([]);
    const promoted = await owner.request(roleUrl(erinId), {
      method: "PATCH",
      json: { role: "owner" },
    });
    expect(promoted.json()).toEqual({ accountId: erinId, role: "owner" });
    expect((await chatAdmins(t, team.id)).map((row) => row.user_id)).toEqual(["@erin:example.org"]);
    // With two owners, one may step down.
    const down = await owner.request(roleUrl(ownerId), {
      method: "PATCH",
      json: { role: "admin" },
    });
    expect(down.statusCode).toBe(200);

    // Erin unlinks: her chat rights go, an operator-granted ID stays.
    await t.app.tenants.addAdmin(team.id as TenantId, "@ops:example.org", "operator", {
      id: "operator",
      via: "cli",
    });
    const unlink = await erin.request(`/api/v1/tenants/${team.id}/members/me/matrix-id`, {
      method: "DELETE",
    });
    expect(unlink.statusCode).toBe(204);
    expect((await chatAdmins(t, team.id)).map((row) => row.user_id)).toEqual(["@ops:example.org"]);

    // Dave leaves; his linked ID goes with him.
    expect((await dave.request(roleUrl("me"), { method: "DELETE" })).statusCode).toBe(204);
    expect((await dave.request(`/api/v1/tenants/${team.id}`)).statusCode).toBe(404);
    const actions = (await t.database
      .knex("audit_log")
      .where({ tenant_id: team.id })
      .orderBy("id")
      .pluck("action")) as string[];
    expect(actions).toEqual(
      expect.arrayContaining([
        "member.invite",
        "member.join",
        "member.link_matrix",
        "admin.add",
        "member.role",
        "admin.remove",
        "member.unlink_matrix",
        "member.leave",
      ]),
    );
  });

  it("refuses bad input to every members route with a 4xx and writes nothing", async () => {
    const other = await t.signedIn("other@example.org");
    const otherTenant = await createTenant(other, "elsewhere");
    const base = `/api/v1/tenants/${tenant.id}`;
    const before = await rowCounts(t);
    const cases: [string, string, "POST" | "PATCH" | "PUT" | "DELETE", unknown, number][] = [
      ["invite: missing email", `${base}/invitations`, "POST", { role: "member" }, 400],
      ["invite: bad email", `${base}/invitations`, "POST", { email: "nope", role: "member" }, 400],
      [
        "invite: oversized email",
        `${base}/invitations`,
        "POST",
        { email: `${"a".repeat(250)}@example.org`, role: "member" },
        400,
      ],
      [
        "invite: owner role",
        `${base}/invitations`,
        "POST",
        { email: "x@example.org", role: "owner" },
        400,
      ],
      ["invite: wrong type", `${base}/invitations`, "POST", { email: 5, role: "member" }, 400],
      [
        "invite: another tenant",
        `/api/v1/tenants/${otherTenant.id}/invitations`,
        "POST",
        { email: "x@example.org", role: "member" },
        404,
      ],
      ["role: unknown role", `${base}/members/me`, "PATCH", { role: "king" }, 400],
      ["role: missing", `${base}/members/me`, "PATCH", {}, 400],
      [
        "role: unknown member",
        `${base}/members/00000000-0000-4000-8000-000000000000`,
        "PATCH",
        { role: "admin" },
        404,
      ],
      ["role: not an id", `${base}/members/nope`, "PATCH", { role: "admin" }, 404],
      [
        "link: not a Matrix ID",
        `${base}/members/me/matrix-id`,
        "PUT",
        { matrixUserId: "alice" },
        400,
      ],
      [
        "link: oversized",
        `${base}/members/me/matrix-id`,
        "PUT",
        { matrixUserId: `@${"a".repeat(300)}:x.org` },
        400,
      ],
      ["link: wrong type", `${base}/members/me/matrix-id`, "PUT", { matrixUserId: 1 }, 400],
      ["accept: empty token", "/api/v1/invitations/accept", "POST", { token: "" }, 400],
      ["accept: unknown token", "/api/v1/invitations/accept", "POST", { token: "abc" }, 400],
    ];
    for (const [label, url, method, json, status] of cases) {
      const response = await owner.request(url, { method, json });
      expect(response.statusCode, `${label}: ${response.body}`).toBe(status);
      expect(errorOf(response).length, label).toBeGreaterThan(0);
    }
    const xml = await owner.request(`${base}/invitations`, {
      method: "POST",
      body: "<x/>",
      headers: { "content-type": "application/xml", "x-csrf-token": await owner.csrfToken() },
    });
    expect(xml.statusCode).toBe(415);
    const noCsrf = await owner.request(`${base}/invitations`, {
      json: { email: "x@example.org", role: "member" },
      csrf: false,
    });
    expect(noCsrf.statusCode).toBe(403);
    // Someone else's tenant: 404 for every members route.
    for (const [method, url] of [
      ["GET", `${base}/members`],
      ["GET", `${base}/invitations`],
      ["DELETE", `${base}/members/me`],
    ] as const) {
      expect((await other.request(url, { method })).statusCode, url).toBe(404);
    }
    expect((await t.browser().request(`${base}/members`)).statusCode).toBe(401);
    expect(await rowCounts(t)).toEqual(before);
  });

  it("lets a member read but not invite, and a token act as admin but not as a person", async () => {
    const team = await createTenant(owner, "readers");
    const fay = await t.signedIn("fay@example.org");
    await accept(fay, await invite(t, owner, team.id, "fay@example.org", "member"));
    const before = await rowCounts(t);
    expect((await fay.request(`/api/v1/tenants/${team.id}/members`)).statusCode).toBe(200);
    const invited = await fay.request(`/api/v1/tenants/${team.id}/invitations`, {
      json: { email: "x@example.org", role: "member" },
    });
    expect(invited.statusCode).toBe(403);
    expect(errorOf(invited)).toMatch(/needs the admin role/);
    const page = await fay.request("/t/readers/members");
    expect(page.statusCode).toBe(200);
    expect(page.body).not.toContain("Send invitation");

    const token = await tokenFor(t, team.id);
    const afterToken = await rowCounts(t);
    expect(afterToken.api_tokens).toBe((before.api_tokens ?? 0) + 1);
    const listed = await t.browser().request(`/api/v1/tenants/${team.id}/members`, {
      headers: bearer(token),
    });
    expect(listed.statusCode).toBe(200);
    const ownerId = (listed.json() as { items: MemberBody[] }).items[0]?.accountId ?? "";
    const demote = await t.browser().request(`/api/v1/tenants/${team.id}/members/${ownerId}`, {
      method: "PATCH",
      json: { role: "member" },
      headers: bearer(token),
    });
    expect(demote.statusCode).toBe(403);
    const link = await t.browser().request(`/api/v1/tenants/${team.id}/members/me/matrix-id`, {
      method: "PUT",
      json: { matrixUserId: "@bot:example.org" },
      headers: bearer(token),
    });
    expect(link.statusCode).toBe(403);
    expect(await rowCounts(t)).toEqual(afterToken);
  });

  it("runs the members page forms, re-rendering them with the message on bad input", async () => {
    const team = await createTenant(owner, "pages");
    const page = await owner.request("/t/pages/members");
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("owner@example.org");
    expect(page.body).toContain("Send invitation");

    const before = await rowCounts(t);
    const bad = await owner.request("/t/pages/members/invite", {
      form: { email: "not-an-email", role: "member" },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toContain("must be an email address");
    expect(bad.body).toContain('value="not-an-email"');
    const badLink = await owner.request("/t/pages/members/matrix-id", {
      form: { matrixUserId: "owner" },
    });
    expect(badLink.statusCode).toBe(400);
    expect(badLink.body).toContain("must be a Matrix ID");
    const forged = await owner.request("/t/pages/members/invite", {
      form: { email: "gil@example.org", role: "member" },
      csrf: false,
    });
    expect(forged.statusCode).toBe(403);
    const stranger = await t.signedIn("stranger@example.org");
    const theirs = await stranger.request("/t/pages/members/invite", {
      form: { email: "gil@example.org", role: "member" },
    });
    expect(theirs.statusCode).toBe(404);
    expect(await rowCounts(t)).toEqual(before);

    const sent = await owner.request("/t/pages/members/invite", {
      form: { email: "gil@example.org", role: "admin" },
    });
    expect(sent.statusCode).toBe(303);
    expect((await t.lastMailTo("gil@example.org")).subject).toContain("Tenant pages");
    const linked = await owner.request("/t/pages/members/matrix-id", {
      form: { matrixUserId: "@owner:example.org" },
    });
    expect(linked.statusCode).toBe(303);
    expect(await chatAdmins(t, team.id)).toEqual([
      { user_id: "@owner:example.org", source: "member" },
    ]);
    const overview = await owner.request("/t/pages");
    expect(overview.body).toContain("@owner:example.org");
    const withInvitation = await owner.request("/t/pages/members");
    const invitationId = /\/invitations\/([0-9a-f-]{36})\/revoke/.exec(withInvitation.body)?.[1];
    expect(invitationId).toBeDefined();
    const revoked = await owner.request(`/t/pages/invitations/${invitationId ?? ""}/revoke`, {
      form: {},
    });
    expect(revoked.statusCode).toBe(303);
    expect(await t.database.knex("invitations").where({ tenant_id: team.id })).toEqual([]);

    await expireSession(t, owner);
    const expired = await owner.request("/t/pages/members/invite", {
      form: { email: "hal@example.org", role: "member" },
    });
    expect(expired.statusCode).toBe(401);
    expect(await t.database.knex("invitations").where({ email: "hal@example.org" })).toEqual([]);
    expect((await owner.request("/t/pages/members")).statusCode).toBe(303);
  });
});

describe("members on PostgreSQL", () => {
  let t: PortalTest;
  beforeAll(async () => {
    t = await startPortalTest({ database: "postgres" });
  });
  afterAll(async () => {
    await t.stop();
  });

  it("never leaves a tenant without an owner when two owners step down at once", async () => {
    const ann = await t.signedIn("ann@example.org");
    const ben = await t.signedIn("ben@example.org");
    const team = await createTenant(ann, "race");
    expect(
      (await accept(ben, await invite(t, ann, team.id, "ben@example.org", "admin"))).statusCode,
    ).toBe(200);
    const benId = (await members(ann, team.id)).find(
      (m) => m.email === "ben@example.org",
    )?.accountId;
    const made = await ann.request(`/api/v1/tenants/${team.id}/members/${benId ?? ""}`, {
      method: "PATCH",
      json: { role: "owner" },
    });
    expect(made.statusCode).toBe(200);
    const results = await Promise.all(
      [ann, ben].map((who) =>
        who.request(`/api/v1/tenants/${team.id}/members/me`, {
          method: "PATCH",
          json: { role: "admin" },
        }),
      ),
    );
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, 409]);
    const owners = (await members(ann, team.id)).filter((m) => m.role === "owner");
    expect(owners).toHaveLength(1);
  });
});
