import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditLog } from "../../src/audit/audit-log.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

/** YYYY-MM-DD of today (UTC) minus `daysAgo`. */
function utcDay(daysAgo: number): string {
  return new Date(Date.now() - daysAgo * 86_400_000).toISOString().slice(0, 10);
}

interface UsageBody {
  plan: {
    id: string;
    name: string;
    messagesPerDay: number | null;
    managedTokensPerMonth: number | null;
    agents: number | null;
  };
  today: { messages: number; inputTokens: number; outputTokens: number };
  month: { messages: number };
  agentCount: number;
  days: { day: string; messages: number; inputTokens: number; outputTokens: number }[];
}

interface AuditBody {
  items: {
    id: number;
    actor: string;
    action: string;
    target: string | null;
    via: string;
    roomId: string | null;
    details: Record<string, unknown>;
    createdAt: string;
  }[];
  nextCursor: string | null;
}

describe.each(BACKENDS)("usage and audit log (%s)", (backend) => {
  let t: PortalTest;
  let owner: Browser;
  let member: Browser;
  let stranger: Browser;
  let acme: { id: TenantId; slug: string };
  let other: { id: TenantId; slug: string };

  beforeAll(async () => {
    t = await startPortalTest({ database: backend });
    owner = await t.signedIn("owner@example.org");
    member = await t.signedIn("member@example.org");
    stranger = await t.signedIn("stranger@example.org");
    acme = await seedTenant(t, "acme", [
      { browser: owner, role: "owner" },
      { browser: member, role: "member" },
    ]);
    other = await seedTenant(t, "other", [{ browser: stranger, role: "owner" }]);
    const knex = t.app.database.knex;
    await knex("usage_daily").insert([
      { tenant_id: acme.id, day: utcDay(0), messages: 7, input_tokens: 1000, output_tokens: 200 },
      { tenant_id: acme.id, day: utcDay(3), messages: 4, input_tokens: 500, output_tokens: 50 },
      { tenant_id: acme.id, day: utcDay(40), messages: 99, input_tokens: 9, output_tokens: 9 },
      { tenant_id: other.id, day: utcDay(0), messages: 555, input_tokens: 1, output_tokens: 1 },
    ]);
    for (let i = 1; i <= 5; i++)
      await withTenant(knex, acme.id, (trx) =>
        auditLog.record(trx, acme.id, {
          actor: i === 5 ? "@alice:acme.example.test" : "owner@example.org",
          action: `agent.step${String(i)}`,
          target: `agent-${String(i)}`,
          via: i === 5 ? "chat" : "portal",
          roomId: i === 5 ? "!room:acme.example.test" : null,
          details: { n: i },
        }),
      );
    await withTenant(knex, other.id, (trx) =>
      auditLog.record(trx, other.id, { actor: "x", action: "secret.other", via: "api" }),
    );
  });
  afterAll(async () => {
    await t.stop();
  });

  describe("usage", () => {
    it("gives the last 30 UTC days, zero-filled, with today, the month and the plan's limits", async () => {
      const response = await member.request(`/api/v1/tenants/${acme.id}/usage`);
      expect(response.statusCode).toBe(200);
      const body = response.json() as UsageBody;
      expect(body.days).toHaveLength(30);
      expect(body.days[29]).toEqual({
        day: utcDay(0),
        messages: 7,
        inputTokens: 1000,
        outputTokens: 200,
      });
      expect(body.days[26]).toEqual({
        day: utcDay(3),
        messages: 4,
        inputTokens: 500,
        outputTokens: 50,
      });
      expect(body.days[0]?.day).toBe(utcDay(29));
      expect(body.days.filter((day) => day.messages > 0)).toHaveLength(2);
      expect(body.today).toEqual({ messages: 7, inputTokens: 1000, outputTokens: 200 });
      expect(body.plan).toMatchObject({
        id: "free",
        name: "Free",
        messagesPerDay: 100,
        managedTokensPerMonth: 200_000,
        agents: 1,
      });
      expect(body.agentCount).toBe(0);
    });

    it("takes ?days= from 1 to 90", async () => {
      const week = (
        await member.request(`/api/v1/tenants/${acme.id}/usage?days=7`)
      ).json() as UsageBody;
      expect(week.days.map((day) => day.day)).toEqual(
        Array.from({ length: 7 }, (_, i) => utcDay(6 - i)),
      );
      const long = (
        await member.request(`/api/v1/tenants/${acme.id}/usage?days=90`)
      ).json() as UsageBody;
      expect(long.days).toHaveLength(90);
      expect(long.days.find((day) => day.day === utcDay(40))?.messages).toBe(99);
      for (const days of ["0", "91", "abc", "1.5", "-3"]) {
        const response = await member.request(`/api/v1/tenants/${acme.id}/usage?days=${days}`);
        expect(response.statusCode, days).toBe(400);
        expect(
          (response.json() as { error: { code: string; message: string } }).error.message,
        ).toContain("days");
      }
    });

    it("is 404 for other tenants' ids and unknown ids, 401 without a session", async () => {
      expect((await stranger.request(`/api/v1/tenants/${acme.id}/usage`)).statusCode).toBe(404);
      expect((await owner.request(`/api/v1/tenants/${other.id}/usage`)).statusCode).toBe(404);
      expect((await owner.request("/api/v1/tenants/not-a-uuid/usage")).statusCode).toBe(404);
      // Oversized ids are refused (400 by the schema, or 404 if a tenant lookup sees them first).
      expect([400, 404]).toContain(
        (await owner.request(`/api/v1/tenants/${"x".repeat(65)}/usage`)).statusCode,
      );
      expect((await t.browser().request(`/api/v1/tenants/${acme.id}/usage`)).statusCode).toBe(401);
      const expired = t.browser();
      expired.cookies.set("sb_session", "expired-or-made-up");
      expect((await expired.request(`/api/v1/tenants/${acme.id}/usage`)).statusCode).toBe(401);
    });

    it("works with the tenant's API token, for that tenant only", async () => {
      const { plaintext } = await t.app.apiTokens.create(other.id, { name: "ci" }, null, {
        id: "test",
        via: "cli",
      });
      const auth = { headers: { authorization: `Bearer ${plaintext}` } };
      const response = await t.browser().request(`/api/v1/tenants/${other.id}/usage?days=2`, auth);
      expect(response.statusCode).toBe(200);
      const body = response.json() as UsageBody;
      expect(body.days).toHaveLength(2);
      expect(body.today.messages).toBe(555);
      const elsewhere = await t.browser().request(`/api/v1/tenants/${acme.id}/usage`, auth);
      expect(elsewhere.statusCode).toBe(404);
    });

    it("renders the page with an accessible chart, the limit line and the table", async () => {
      const response = await member.request("/t/acme/usage");
      expect(response.statusCode).toBe(200);
      const html = response.body;
      expect(html).toContain('role="img"');
      expect(html).toContain('aria-labelledby="chart-messages-title chart-messages-desc"');
      expect(html).toContain("daily limit 100");
      expect(html).toContain("7 of 100 (7%)");
      // This month: today's tokens, plus those of three days ago when that was this month too.
      const monthTokens = utcDay(3).slice(0, 7) === utcDay(0).slice(0, 7) ? 1750 : 1200;
      expect(html).toContain(`${monthTokens.toLocaleString("en-US")} of 200,000`);
      expect(html).toContain(`<td>${utcDay(3)}</td><td>4</td><td>500</td><td>50</td>`);
      // The other tenant's 555 messages today appear nowhere as a figure (random tokens in the page may hold the digits).
      expect(html).not.toMatch(/(?<![\w-])555(?![\w-])/);
      expect(html).toContain('aria-current="page"');
    });

    it("refuses the page to strangers (404), bad days (400) and the signed out (to the login page)", async () => {
      expect((await stranger.request("/t/acme/usage")).statusCode).toBe(404);
      expect((await owner.request("/t/nope/usage")).statusCode).toBe(404);
      expect((await owner.request("/t/acme/usage?days=1000")).statusCode).toBe(400);
      const anonymous = await t.browser().request("/t/acme/usage");
      expect(anonymous.statusCode).toBe(303);
      expect(anonymous.headers.location).toBe("/login?next=%2Ft%2Facme%2Fusage");
    });
  });

  describe("audit log", () => {
    it("lists entries newest first, page by page", async () => {
      const first = await owner.request(`/api/v1/tenants/${acme.id}/audit?limit=2`);
      expect(first.statusCode).toBe(200);
      const page1 = first.json() as AuditBody;
      expect(page1.items.map((item) => item.action)).toEqual(["agent.step5", "agent.step4"]);
      expect(page1.items[0]).toMatchObject({
        actor: "@alice:acme.example.test",
        via: "chat",
        roomId: "!room:acme.example.test",
        target: "agent-5",
        details: { n: 5 },
      });
      expect(Number.isNaN(Date.parse(page1.items[0]?.createdAt ?? ""))).toBe(false);
      expect(page1.nextCursor).not.toBeNull();
      const page2 = (
        await owner.request(
          `/api/v1/tenants/${acme.id}/audit?limit=2&cursor=${page1.nextCursor ?? ""}`,
        )
      ).json() as AuditBody;
      expect(page2.items.map((item) => item.action)).toEqual(["agent.step3", "agent.step2"]);
      const page3 = (
        await owner.request(
          `/api/v1/tenants/${acme.id}/audit?limit=2&cursor=${page2.nextCursor ?? ""}`,
        )
      ).json() as AuditBody;
      expect(page3.items.map((item) => item.action)).toEqual(["agent.step1"]);
      expect(page3.nextCursor).toBeNull();
    });

    it("never shows another tenant's entries", async () => {
      const all = (
        await owner.request(`/api/v1/tenants/${acme.id}/audit?limit=100`)
      ).json() as AuditBody;
      expect(all.items.map((item) => item.action)).not.toContain("secret.other");
      expect(all.items).toHaveLength(5);
    });

    it("refuses members (403), strangers (404), bad limits and cursors (400)", async () => {
      const forbidden = await member.request(`/api/v1/tenants/${acme.id}/audit`);
      expect(forbidden.statusCode).toBe(403);
      expect((forbidden.json() as { error: { message: string } }).error.message).toContain("admin");
      expect((await stranger.request(`/api/v1/tenants/${acme.id}/audit`)).statusCode).toBe(404);
      for (const query of [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=bm9wZQ",
        `cursor=${"a".repeat(513)}`,
      ]) {
        const response = await owner.request(`/api/v1/tenants/${acme.id}/audit?${query}`);
        expect(response.statusCode, query).toBe(400);
      }
      expect((await t.browser().request(`/api/v1/tenants/${acme.id}/audit`)).statusCode).toBe(401);
    });

    it("renders the page for admins with who, what, target, via, room and details", async () => {
      const response = await owner.request("/t/acme/audit?limit=3");
      expect(response.statusCode).toBe(200);
      const html = response.body;
      expect(html).toContain("@alice:acme.example.test");
      expect(html).toContain("<code>agent.step5</code>");
      expect(html).toContain("!room:acme.example.test");
      expect(html).toContain("chat");
      expect(html).toContain("{&quot;n&quot;:5}");
      expect(html).not.toContain("agent.step2");
      const next = /href="(\/t\/acme\/audit\?cursor=[^"]+)"/
        .exec(html)?.[1]
        ?.replace(/&amp;/g, "&");
      expect(next).toBeDefined();
      const older = await owner.request(next ?? "");
      expect(older.body).toContain("agent.step2");
      expect(older.body).not.toContain("agent.step5");
    });

    it("refuses the page to members and strangers", async () => {
      expect((await member.request("/t/acme/audit")).statusCode).toBe(403);
      expect((await stranger.request("/t/acme/audit")).statusCode).toBe(404);
      expect((await owner.request("/t/acme/audit?cursor=%%%")).statusCode).toBe(400);
    });
  });
});
