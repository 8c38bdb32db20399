import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CommandServices } from "../../src/commands/define.ts";
import { agentCommands } from "../../src/commands/definitions/agents.ts";
import { parseCommand } from "../../src/commands/parser.ts";
import type { CommandContext } from "../../src/commands/types.ts";
import { isAppError } from "../../src/shared/errors.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

const PNG_1X1 = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
  "base64",
);

/** Eta's escaping, to find a message in a page as the browser receives it. */
function html(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** A multipart body with one file part. */
function multipart(
  bytes: Buffer,
  contentType = "image/png",
): { body: Buffer; headers: Record<string, string> } {
  const boundary = "----switchboard-test-boundary";
  const body = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="avatar"; filename="a.png"\r\nContent-Type: ${contentType}\r\n\r\n`,
    ),
    bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, headers: { "content-type": `multipart/form-data; boundary=${boundary}` } };
}

describe.each(BACKENDS)("portal agents (%s)", (backend) => {
  let t: PortalTest;
  let owner: Browser;
  let member: Browser;
  let stranger: Browser;
  let acme: { id: TenantId; slug: string };
  let other: { id: TenantId; slug: string };
  let chat: ReturnType<typeof agentCommands>;

  const agentCount = async (tenantId: TenantId): Promise<number> =>
    (await t.app.agents.list(tenantId)).length;
  const auditCount = async (): Promise<number> =>
    Number(
      ((await t.app.database.knex("audit_log").count({ n: "*" }).first()) as { n: string | number })
        .n,
    );
  /** What the chat command answers, or the message it is refused with. */
  const chatSays = async (text: string): Promise<string> => {
    const parsed = parseCommand(text, chat);
    if (parsed.kind === "invalid") return parsed.problems.join("; ");
    if (parsed.kind !== "command") throw new Error(`not a command: ${text}`);
    const context = {
      tenant: { id: acme.id },
      by: { id: "@admin:acme.example.test", via: "chat" },
    } as unknown as CommandContext;
    try {
      return (await parsed.command.run(context, parsed.args)).text;
    } catch (error) {
      if (isAppError(error)) return error.message;
      throw error;
    }
  };

  beforeAll(async () => {
    t = await startPortalTest({ database: backend, config: { portal: { maxAvatarBytes: 2048 } } });
    owner = await t.signedIn("owner@example.org");
    member = await t.signedIn("member@example.org");
    stranger = await t.signedIn("stranger@example.org");
    acme = await seedTenant(t, "acme", [
      { browser: owner, role: "owner" },
      { browser: member, role: "member" },
    ]);
    other = await seedTenant(t, "other", [{ browser: stranger, role: "owner" }]);
    // Several agents per tenant here; plan limits have their own tests (entitlements).
    await t.app.database.knex("tenants").update({ plan: "enterprise" });
    chat = agentCommands({
      agents: t.app.agents,
      agentPrefix: t.config.runtime.agentPrefix,
    } as unknown as CommandServices);
  });
  afterAll(async () => {
    await t.stop();
  });

  it("creates an agent from the form, lists it with its Matrix ID, and audits it", async () => {
    const created = await owner.request("/t/acme/agents/new", {
      form: { name: "ada", displayName: "Ada", instructions: "Be brief.", temperature: "0.3" },
    });
    expect(created.statusCode).toBe(303);
    expect(created.headers.location).toBe("/t/acme/agents/ada");
    const agent = await t.app.agents.get(acme.id, "ada");
    expect(agent).toMatchObject({
      displayName: "Ada",
      instructions: "Be brief.",
      temperature: 0.3,
    });
    const prefix = t.config.runtime.agentPrefix;
    const list = await member.request("/t/acme/agents");
    expect(list.statusCode).toBe(200);
    expect(list.body).toContain(`@${prefix}ada:acme.example.test`);
    expect(list.body).not.toContain("New agent");
    const audit = await t.app.database.knex("audit_log").where({ action: "agent.create" }).first();
    expect(audit).toMatchObject({ actor: "owner@example.org", via: "portal", target: "ada" });
  });

  it("edits every setting from the form and shows them back", async () => {
    const saved = await owner.request("/t/acme/agents/ada", {
      form: {
        displayName: "Ada L.",
        instructions: "You are Ada.",
        provider: "openai",
        model: "gpt-4o-mini",
        baseUrl: "https://llm.example.org/v1",
        temperature: "1.5",
        maxTokens: "2000",
        keySource: "own",
        triggerPolicy: "all",
        memoryScope: "private",
        status: "paused",
      },
    });
    expect(saved.statusCode).toBe(303);
    expect(await t.app.agents.get(acme.id, "ada")).toMatchObject({
      displayName: "Ada L.",
      model: "gpt-4o-mini",
      baseUrl: "https://llm.example.org/v1",
      temperature: 1.5,
      maxTokens: 2000,
      keySource: "own",
      triggerPolicy: "all",
      memoryScope: "private",
      status: "paused",
    });
    const cleared = await owner.request("/t/acme/agents/ada", {
      form: { baseUrl: "", status: "active" },
    });
    expect(cleared.statusCode).toBe(303);
    expect((await t.app.agents.get(acme.id, "ada")).baseUrl).toBeNull();
    const page = await member.request("/t/acme/agents/ada");
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("gpt-4o-mini");
    expect(page.body).toContain("disabled");
  });

  it("refuses what the chat command refuses, with the same message, and writes nothing", async () => {
    const before = { agents: await agentCount(acme.id), audit: await auditCount() };
    const cases: { chat: string; form: Record<string, string>; path: string }[] = [
      { chat: "agent create Bad!Name", form: { name: "Bad!Name" }, path: "/t/acme/agents/new" },
      // "new" would hide the agent's page behind the create form.
      { chat: "agent create new", form: { name: "new" }, path: "/t/acme/agents/new" },
      {
        chat: "agent set ada temperature 5",
        form: { temperature: "5" },
        path: "/t/acme/agents/ada",
      },
      {
        chat: "agent set ada temperature hot",
        form: { temperature: "hot" },
        path: "/t/acme/agents/ada",
      },
      {
        chat: "agent set ada trigger sometimes",
        form: { triggerPolicy: "sometimes" },
        path: "/t/acme/agents/ada",
      },
      {
        chat: "agent set ada base-url ftp://x",
        form: { baseUrl: "ftp://x" },
        path: "/t/acme/agents/ada",
      },
    ];
    for (const { chat: text, form, path } of cases) {
      const message = await chatSays(text);
      expect(message, text).toMatch(/^[a-z-]+[A-Za-z]*: /i);
      const response = await owner.request(path, { form });
      expect(response.statusCode, text).toBe(400);
      expect(response.body, text).toContain(html(message));
    }
    const api = await owner.request(`/api/v1/tenants/${acme.id}/agents/ada`, {
      method: "PATCH",
      json: { temperature: 5 },
    });
    expect(api.statusCode).toBe(400);
    expect((api.json() as { error: { message: string } }).error.message).toContain(
      await chatSays("agent set ada temperature 5"),
    );
    expect(await agentCount(acme.id)).toBe(before.agents);
    expect(await auditCount()).toBe(before.audit);
    expect((await t.app.agents.get(acme.id, "ada")).temperature).toBe(1.5);
  });

  it("refuses oversized fields, a missing CSRF token, members, strangers and anonymous visitors", async () => {
    const before = { agents: await agentCount(acme.id), audit: await auditCount() };
    const long = await owner.request("/t/acme/agents/new", {
      form: { name: "long", instructions: "x".repeat(8_001) },
    });
    expect(long.statusCode).toBe(400);
    expect(long.body).toContain("instructions: Too big");
    const huge = await owner.request("/t/acme/agents/new", { form: { name: "x".repeat(20_000) } });
    expect(huge.statusCode).toBe(400);
    const noCsrf = await owner.request("/t/acme/agents/new", {
      form: { name: "eve" },
      csrf: false,
    });
    expect(noCsrf.statusCode).toBe(403);
    const asMember = await member.request("/t/acme/agents/new", { form: { name: "eve" } });
    expect(asMember.statusCode).toBe(403);
    expect((await member.request("/t/acme/agents/ada/delete", { form: {} })).statusCode).toBe(403);
    const asStranger = await stranger.request("/t/acme/agents/new", { form: { name: "eve" } });
    expect(asStranger.statusCode).toBe(404);
    expect((await stranger.request("/t/acme/agents/ada")).statusCode).toBe(404);
    const anonymous = await t.browser().request("/t/acme/agents");
    expect(anonymous.statusCode).toBe(303);
    expect(anonymous.headers.location).toContain("/login");
    const expired = t.browser();
    expired.cookies.set("sb_session", "not-a-live-session");
    expect((await expired.request(`/api/v1/tenants/${acme.id}/agents`)).statusCode).toBe(401);
    expect((await owner.request("/t/acme/agents/nobody")).statusCode).toBe(404);
    expect(await agentCount(acme.id)).toBe(before.agents);
    expect(await auditCount()).toBe(before.audit);
  });

  it("does the same over the JSON API: create, read, page, change, delete", async () => {
    const base = `/api/v1/tenants/${acme.id}/agents`;
    const created = await owner.request(base, { json: { name: "max", model: "gpt-4o" } });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({
      name: "max",
      model: "gpt-4o",
      matrixUserId: `@${t.config.runtime.agentPrefix}max:acme.example.test`,
    });
    expect((await owner.request(base, { json: { name: "max" } })).statusCode).toBe(409);
    const first = (await member.request(`${base}?limit=1`)).json() as {
      items: { name: string }[];
      nextCursor: string | null;
    };
    expect(first.items.map((a) => a.name)).toEqual(["ada"]);
    const second = (
      await member.request(`${base}?limit=1&cursor=${first.nextCursor ?? ""}`)
    ).json() as { items: { name: string }[]; nextCursor: string | null };
    expect(second).toEqual({ items: [expect.objectContaining({ name: "max" })], nextCursor: null });
    expect((await member.request(`${base}?cursor=bogus`)).statusCode).toBe(400);
    expect((await member.request(`${base}?limit=1000`)).statusCode).toBe(400);
    const patched = await owner.request(`${base}/max`, {
      method: "PATCH",
      json: { triggerPolicy: "dms" },
    });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ triggerPolicy: "dms" });
    expect((await member.request(`${base}/max`)).json()).toMatchObject({ triggerPolicy: "dms" });
    // Wrong content type, unknown field, member, stranger, CSRF: refused, nothing changes.
    const xml = await owner.request(base, {
      body: "<agent><name>zed</name></agent>",
      headers: { "content-type": "application/xml", "x-csrf-token": await owner.csrfToken() },
    });
    expect(xml.statusCode).toBe(415);
    expect((await owner.request(base, { json: { name: "zed", colour: "red" } })).statusCode).toBe(
      400,
    );
    expect((await member.request(base, { json: { name: "zed" } })).statusCode).toBe(403);
    expect((await owner.request(base, { json: { name: "zed" }, csrf: false })).statusCode).toBe(
      403,
    );
    expect((await stranger.request(`${base}/max`)).statusCode).toBe(404);
    expect((await stranger.request(`/api/v1/tenants/${other.id}/agents/max`)).statusCode).toBe(404);
    expect(await t.app.agents.list(acme.id)).toHaveLength(2);
    const removed = await owner.request(`${base}/max`, { method: "DELETE" });
    expect(removed.statusCode).toBe(204);
    expect((await owner.request(`${base}/max`, { method: "DELETE" })).statusCode).toBe(404);
  });

  it("checks an avatar's real type and size, and answers 502 when the homeserver is unreachable", async () => {
    const before = await auditCount();
    const page = "/t/acme/agents/ada/avatar";
    const csrf = await owner.csrfToken();
    const upload = (bytes: Buffer, options: { csrf?: boolean; type?: string } = {}) => {
      const { body, headers } = multipart(bytes, options.type);
      return owner.request(
        options.csrf === false ? page : `${page}?_csrf=${encodeURIComponent(csrf)}`,
        {
          body,
          headers,
        },
      );
    };
    const fake = await upload(Buffer.from("<svg onload=alert(1)></svg>"));
    expect(fake.statusCode).toBe(400);
    expect(fake.body).toContain("must be a PNG, JPEG, GIF or WebP image");
    const big = await upload(Buffer.concat([PNG_1X1, Buffer.alloc(4096)]));
    expect(big.statusCode).toBe(413);
    expect((await upload(PNG_1X1, { csrf: false })).statusCode).toBe(403);
    const unreachable = await upload(PNG_1X1);
    expect(unreachable.statusCode).toBe(502);
    expect(unreachable.body).toContain("could not be reached");
    const api = `/api/v1/tenants/${acme.id}/agents/ada/avatar`;
    const apiUnreachable = await owner.request(api, {
      method: "PUT",
      body: PNG_1X1,
      headers: { "content-type": "image/png", "x-csrf-token": csrf },
    });
    expect(apiUnreachable.statusCode).toBe(502);
    const wrongType = await owner.request(api, {
      method: "PUT",
      body: PNG_1X1,
      headers: { "content-type": "application/octet-stream", "x-csrf-token": csrf },
    });
    expect(wrongType.statusCode).toBe(415);
    const tooBig = await owner.request(api, {
      method: "PUT",
      body: Buffer.concat([PNG_1X1, Buffer.alloc(4096)]),
      headers: { "content-type": "image/png", "x-csrf-token": csrf },
    });
    expect(tooBig.statusCode).toBe(413);
    const asMember = await member.request(api, {
      method: "PUT",
      body: PNG_1X1,
      headers: { "content-type": "image/png", "x-csrf-token": await member.csrfToken() },
    });
    expect(asMember.statusCode).toBe(403);
    expect((await t.app.agents.get(acme.id, "ada")).avatarUrl).toBeNull();
    expect(await auditCount()).toBe(before);
  });

  it("deletes an agent from its page", async () => {
    const deleted = await owner.request("/t/acme/agents/ada/delete", { form: {} });
    expect(deleted.statusCode).toBe(303);
    expect(deleted.headers.location).toBe("/t/acme/agents");
    expect(await agentCount(acme.id)).toBe(0);
  });
});
