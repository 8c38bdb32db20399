import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentRepository } from "../../src/agents/repository.ts";
import { bridgeStore } from "../../src/bridges/repository.ts";
import type { CommandServices } from "../../src/commands/define.ts";
import { bridgeCommands } from "../../src/commands/definitions/bridges.ts";
import { parseCommand } from "../../src/commands/parser.ts";
import type { CommandContext } from "../../src/commands/types.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { isAppError } from "../../src/shared/errors.ts";
import type { RoomId, TenantId } from "../../src/shared/ids.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

/** Well-formed credentials (the bridges' own patterns); never real. */
const SLACK_BOT = "xoxb-1111111111-2222222222-AbCdEfGhIjKlMnOpQrStUvWx";
const SLACK_APP = "xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef";
const SLACK_BOT_2 = "xoxb-3333333333-4444444444-ZyXwVuTsRqPoNmLkJiHgFeDc";
const DISCORD_BOT = "MTE4MDAwMDAwMDAwMDAwMDAwMQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123";
const TELEGRAM_BOT = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq";
const TELEGRAM_HASH = "0123456789abcdef0123456789abcdef";
const SECRETS = [SLACK_BOT, SLACK_APP, SLACK_BOT_2, DISCORD_BOT, TELEGRAM_BOT, TELEGRAM_HASH];

/** Eta's escaping, to find a message in a page as the browser receives it. */
function html(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

describe.each(BACKENDS)("portal bridges (%s)", (backend) => {
  let t: PortalTest;
  let owner: Browser;
  let member: Browser;
  let stranger: Browser;
  let acme: { id: TenantId; slug: string };
  let other: { id: TenantId; slug: string };
  let chat: ReturnType<typeof bridgeCommands>;
  const logLines: string[] = [];
  const responses: string[] = [];

  const knex = () => t.app.database.knex;
  /** Every bridges and audit row as text: what a database dump would hold. */
  const dump = async (): Promise<string> => {
    const bridges = await knex().raw("select row_to_json(b)::text as row from bridges b");
    const audit = await knex().raw("select row_to_json(a)::text as row from audit_log a");
    const rows = (result: unknown): string[] =>
      ((result as { rows: { row: string }[] }).rows ?? []).map((row) => row.row);
    return [...rows(bridges), ...rows(audit)].join("\n");
  };
  const bridgeRows = async () => knex()("bridges").orderBy(["tenant_id", "network"]);
  const auditCount = async (): Promise<number> =>
    Number(((await knex()("audit_log").count({ n: "*" }).first()) as { n: string | number }).n);
  const provisionRequestedAt = async (tenantId: TenantId): Promise<number> =>
    new Date(
      (
        (await knex()("tenants").where({ id: tenantId }).first("provision_requested_at")) as {
          provision_requested_at: Date;
        }
      ).provision_requested_at,
    ).getTime();
  /** Sends a request and keeps its answer for the "never echoed" check. */
  const send = async (
    browser: Browser,
    url: string,
    options: Parameters<Browser["request"]>[1],
  ) => {
    const response = await browser.request(url, options);
    responses.push(response.body);
    return response;
  };
  /** What the chat command answers, or the message it is refused with. */
  const chatSays = async (text: string): Promise<string> => {
    const parsed = parseCommand(text, chat);
    if (parsed.kind === "invalid") return parsed.problems.join("; ");
    if (parsed.kind !== "command") throw new Error(`not a command: ${text}`);
    const context = {
      tenant: { id: acme.id, slug: acme.slug },
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
    const sink = new PassThrough();
    sink.on("data", (chunk: Buffer) => logLines.push(chunk.toString("utf8")));
    t = await startPortalTest({
      database: backend,
      log: createLogger({ level: "debug", pretty: false, destination: sink }),
    });
    owner = await t.signedIn("owner@example.org");
    member = await t.signedIn("member@example.org");
    stranger = await t.signedIn("stranger@example.org");
    acme = await seedTenant(t, "acme", [
      { browser: owner, role: "owner" },
      { browser: member, role: "member" },
    ]);
    other = await seedTenant(t, "other", [{ browser: stranger, role: "owner" }]);
    // Starter: one bridge. Other stays on Free: none.
    await knex()("tenants").where({ id: acme.id }).update({ plan: "starter" });
    await t.app.agents.create(
      acme.id,
      { name: "ada", displayName: "Ada" },
      {
        id: "test",
        via: "cli",
      },
    );
    chat = bridgeCommands({
      bridges: t.app.bridges,
      portalUrl: "http://portal.test",
    } as unknown as CommandServices);
  });
  afterAll(async () => {
    await t.stop();
  });

  it("connects Slack from the form: encrypted credentials, audit without secrets, a provisioning request", async () => {
    const requestedBefore = await provisionRequestedAt(acme.id);
    const page = await send(owner, "/t/acme/bridges", {});
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("Socket Mode");
    expect(page.body).toContain("chat:write.customize");
    expect(page.body).toContain("Message Content Intent");
    expect(page.body).toContain("/setprivacy");
    expect(page.body).toMatch(/type="password" name="appToken"/);

    const connected = await send(owner, "/t/acme/bridges/slack", {
      form: { botToken: SLACK_BOT, appToken: SLACK_APP },
    });
    expect(connected.statusCode, connected.body).toBe(303);
    expect(connected.headers.location).toBe("/t/acme/bridges");

    const [row] = await bridgeRows();
    expect(row).toMatchObject({
      tenant_id: acme.id,
      network: "slack",
      desired: "enabled",
      state: "pending",
      credentials_version: 1,
    });
    const credentials = JSON.parse(t.app.cipher.decrypt(String(row.credentials_encrypted))) as {
      botToken: string;
    };
    expect(credentials).toEqual({ network: "slack", botToken: SLACK_BOT, appToken: SLACK_APP });
    for (const column of [
      "as_token_encrypted",
      "hs_token_encrypted",
      "provisioning_secret_encrypted",
    ])
      expect(t.app.cipher.decrypt(String(row[column])).length).toBeGreaterThanOrEqual(32);
    expect(await provisionRequestedAt(acme.id)).toBeGreaterThan(requestedBefore);
    const audit = await knex()("audit_log").where({ action: "bridge.connect" }).first();
    expect(audit).toMatchObject({ actor: "owner@example.org", via: "portal", target: "slack" });

    const after = await send(owner, "/t/acme/bridges", {});
    expect(after.body).toContain("pending");
    expect(after.body).toContain("Replace the credentials");
  });

  it("refuses malformed credentials naming the field (never the value), and writes nothing", async () => {
    const before = { rows: await bridgeRows(), audit: await auditCount() };
    const cases: { network: string; form: Record<string, string>; field: string }[] = [
      { network: "discord", form: { botToken: "not-a-token" }, field: "botToken" },
      { network: "slack", form: { botToken: SLACK_APP, appToken: SLACK_APP }, field: "botToken" },
      { network: "slack", form: { botToken: SLACK_BOT, appToken: SLACK_BOT }, field: "appToken" },
      {
        network: "telegram",
        form: { botToken: TELEGRAM_BOT, apiId: "twelve", apiHash: TELEGRAM_HASH },
        field: "apiId",
      },
      {
        network: "telegram",
        form: { botToken: TELEGRAM_BOT, apiId: "12345", apiHash: "xyz" },
        field: "apiHash",
      },
    ];
    for (const { network, form, field } of cases) {
      const response = await send(owner, `/t/acme/bridges/${network}`, { form });
      expect(response.statusCode, `${network} ${field}`).toBe(400);
      expect(response.body).toContain(`${field}: `);
      for (const value of Object.values(form))
        if (value.length > 8) expect(response.body).not.toContain(`value="${value}"`);
    }
    const api = await send(owner, `/api/v1/tenants/${acme.id}/bridges/discord`, {
      method: "PUT",
      json: { botToken: "xoxb-wrong-network-token", appToken: SLACK_APP },
    });
    expect(api.statusCode).toBe(400);
    const message = (api.json() as { error: { message: string } }).error.message;
    expect(message).toMatch(/botToken: must be the bot's token/);
    expect(message).toMatch(/appToken/);
    expect(message).not.toContain("xoxb-wrong-network-token");

    // Chat refuses with the service's words too.
    expect(await chatSays("bridge connect discord not-a-token")).toMatch(/^botToken: must be/);
    expect(await chatSays(`bridge connect slack ${SLACK_BOT}`)).toMatch(
      /^Slack takes <bot token> <app token> \(2 values\); got 1/,
    );
    expect(await chatSays("bridge connect matrix abc")).toMatch(/network: must be one of/);
    expect(await bridgeRows()).toEqual(before.rows);
    expect(await auditCount()).toBe(before.audit);
  });

  it("refuses a bridge beyond the plan like other limits, and lets the connected one take new credentials", async () => {
    const before = await auditCount();
    const page = await send(owner, "/t/acme/bridges/discord", { form: { botToken: DISCORD_BOT } });
    expect(page.statusCode).toBe(403);
    expect(page.body).toContain(html("the Starter plan allows 1 bridge; upgrade to add more"));
    const api = await send(owner, `/api/v1/tenants/${acme.id}/bridges/telegram`, {
      method: "PUT",
      json: { botToken: TELEGRAM_BOT, apiId: 12345, apiHash: TELEGRAM_HASH },
    });
    expect(api.statusCode).toBe(403);
    expect(api.json()).toMatchObject({
      error: { code: "limit_reached", details: { limit: "bridges", allowed: 1, current: 1 } },
    });
    expect(await chatSays(`bridge connect discord ${DISCORD_BOT}`)).toMatch(
      /Starter plan allows 1 bridge/,
    );
    expect(await auditCount()).toBe(before);

    // Free has no bridges at all.
    const free = await send(stranger, `/api/v1/tenants/${other.id}/bridges/discord`, {
      method: "PUT",
      json: { botToken: DISCORD_BOT },
    });
    expect(free.statusCode).toBe(403);
    expect((free.json() as { error: { message: string } }).error.message).toMatch(
      /Free plan does not include bridges/,
    );

    const replaced = await send(owner, `/api/v1/tenants/${acme.id}/bridges/slack`, {
      method: "PUT",
      json: { botToken: SLACK_BOT_2, appToken: SLACK_APP },
    });
    expect(replaced.statusCode, replaced.body).toBe(200);
    expect(replaced.json()).toMatchObject({
      network: "slack",
      configured: true,
      desired: "enabled",
      state: "pending",
    });
    const row = await knex()("bridges").where({ tenant_id: acme.id, network: "slack" }).first();
    expect(row.credentials_version).toBe(2);
    expect(
      (await knex()("audit_log").where({ action: "bridge.credentials" }).first()) as unknown,
    ).toMatchObject({ via: "api", target: "slack" });
    expect(await bridgeRows()).toHaveLength(1);
  });

  it("lets only one of two simultaneous connects take a plan's last bridge", async () => {
    const race = await seedTenant(t, "race", [{ browser: owner, role: "owner" }]);
    await knex()("tenants").where({ id: race.id }).update({ plan: "starter" });
    const by = { id: "test", via: "cli" } as const;
    const results = await Promise.allSettled([
      t.app.bridges.connect(race.id, "discord", { botToken: DISCORD_BOT }, by),
      t.app.bridges.connect(
        race.id,
        "telegram",
        { botToken: TELEGRAM_BOT, apiId: "12345", apiHash: TELEGRAM_HASH },
        by,
      ),
    ]);
    expect(results.map((result) => result.status).sort()).toEqual(["fulfilled", "rejected"]);
    const refusal = results.find((result) => result.status === "rejected");
    expect(isAppError(refusal?.reason) && refusal.reason.code).toBe("limit_reached");
    expect(await knex()("bridges").where({ tenant_id: race.id })).toHaveLength(1);
  });

  it("refuses members (403) and other tenants' people (404), on pages and API, and writes nothing", async () => {
    const before = { rows: await bridgeRows(), audit: await auditCount() };
    expect((await member.request("/t/acme/bridges")).statusCode).toBe(200);
    expect((await member.request("/t/acme/bridges")).body).not.toContain("Replace the credentials");
    const attempts: [Browser, string, Parameters<Browser["request"]>[1], number][] = [
      [
        member,
        "/t/acme/bridges/slack",
        { form: { botToken: SLACK_BOT, appToken: SLACK_APP } },
        403,
      ],
      [member, "/t/acme/bridges/slack/disconnect", { form: { confirm: "yes" } }, 403],
      [
        member,
        `/api/v1/tenants/${acme.id}/bridges/slack`,
        { method: "PUT", json: { botToken: SLACK_BOT, appToken: SLACK_APP } },
        403,
      ],
      [member, `/api/v1/tenants/${acme.id}/bridges/slack`, { method: "DELETE" }, 403],
      [stranger, "/t/acme/bridges", {}, 404],
      [stranger, "/t/acme/bridges/slack/disconnect", { form: { confirm: "yes" } }, 404],
      [stranger, `/api/v1/tenants/${acme.id}/bridges`, {}, 404],
      [
        stranger,
        `/api/v1/tenants/${acme.id}/bridges/slack`,
        { method: "PUT", json: { botToken: SLACK_BOT, appToken: SLACK_APP } },
        404,
      ],
      [stranger, `/api/v1/tenants/${acme.id}/bridges/slack`, { method: "DELETE" }, 404],
      [
        owner,
        "/t/acme/bridges/slack",
        { form: { botToken: SLACK_BOT, appToken: SLACK_APP }, csrf: false },
        403,
      ],
    ];
    for (const [browser, url, options, status] of attempts) {
      const response = await send(browser, url, options);
      expect(response.statusCode, `${url} ${JSON.stringify(options)}`).toBe(status);
    }
    expect(await bridgeRows()).toEqual(before.rows);
    expect(await auditCount()).toBe(before.audit);
  });

  it("shows a refused relay login the same on the page, the API and in chat: state and the bridge's reason", async () => {
    const reason = 'Slack refused the bot or app token: auth.test failed: "invalid_auth"';
    await bridgeStore.update(knex(), acme.id, "slack", {
      state: "login_failed",
      lastError: reason,
    });
    const page = await send(member, "/t/acme/bridges", {});
    expect(page.body).toContain(html(reason));
    const list = await send(member, `/api/v1/tenants/${acme.id}/bridges`, {});
    const slack = (
      list.json() as { items: { network: string; state: string; lastError: string }[] }
    ).items.find((item) => item.network === "slack");
    expect(slack).toMatchObject({ state: "login_failed", lastError: reason });
    expect(await chatSays("bridge status slack")).toContain(reason);
    await bridgeStore.update(knex(), acme.id, "slack", { state: "pending", lastError: null });
  });

  it("lists status, the relay's remote name, bridged channels and their agents; invites an agent", async () => {
    await bridgeStore.update(knex(), acme.id, "slack", {
      state: "connected",
      relayLoginId: "T0001-U0001",
      relayRemoteName: "Acme - switchboard",
      connectedAt: new Date("2026-11-01T10:00:00Z"),
    });
    const general = "!general:acme.example.test" as RoomId;
    const random = "!random:acme.example.test" as RoomId;
    await bridgeStore.recordRoom(knex(), {
      tenantId: acme.id,
      roomId: general,
      network: "slack",
      remoteName: "general",
    });
    await bridgeStore.recordRoom(knex(), {
      tenantId: acme.id,
      roomId: random,
      network: "slack",
      remoteName: "random",
    });
    await bridgeStore.setRoomRelay(knex(), acme.id, general, "set");
    const ada = await t.app.agents.get(acme.id, "ada");
    await withTenant(knex(), acme.id, (trx) =>
      agentRepository.setMembership(trx, acme.id, ada.id, general, "join"),
    );

    const page = await send(member, "/t/acme/bridges", {});
    expect(page.body).toContain("connected as <strong>Acme - switchboard</strong>");
    expect(page.body).toContain("general");
    expect(page.body).toContain(html(general));
    expect(page.body).toMatch(/<td>Ada<\/td>/);

    const list = await send(member, `/api/v1/tenants/${acme.id}/bridges`, {});
    expect(list.statusCode).toBe(200);
    const items = (list.json() as { items: Record<string, unknown>[] }).items;
    expect(items.map((item) => item.network)).toEqual(["slack", "discord", "telegram"]);
    expect(items[0]).toMatchObject({
      configured: true,
      state: "connected",
      running: true,
      loggedIn: true,
      relaySet: false,
      relayRemoteName: "Acme - switchboard",
      connectedAt: "2026-11-01T10:00:00.000Z",
      rooms: [
        {
          roomId: general,
          remoteName: "general",
          relayState: "set",
          agents: [{ name: "ada", displayName: "Ada" }],
        },
        { roomId: random, remoteName: "random", relayState: "pending", agents: [] },
      ],
    });
    expect(items[1]).toMatchObject({ configured: false, state: null, rooms: [] });
    // Relayed everywhere only once every bridged room has its relay.
    await bridgeStore.setRoomRelay(knex(), acme.id, random, "set");
    expect((await t.app.bridges.status(acme.id, "slack")).relaySet).toBe(true);
    await bridgeStore.setRoomRelay(knex(), acme.id, random, "pending");
    expect(await chatSays("bridge status slack")).toMatch(
      /logged in as `Acme - switchboard`.*\n[\s\S]*general `!general:acme.example.test`: relay set; Ada/,
    );
    expect(await chatSays("bridge list")).toMatch(/\*\*Discord\*\*: not connected/);

    // Inviting: unknown room or agent 404, an agent already there 409; the homeserver is unreachable here: 502.
    const invite = (roomId: string, agent: string) =>
      send(
        owner,
        `/api/v1/tenants/${acme.id}/bridges/slack/rooms/${encodeURIComponent(roomId)}/agents`,
        { json: { agent } },
      );
    expect((await invite("!nowhere:acme.example.test", "ada")).statusCode).toBe(404);
    expect((await invite(random, "nobody")).statusCode).toBe(404);
    expect((await invite(general, "ada")).statusCode).toBe(409);
    expect((await invite("not-a-room", "ada")).statusCode).toBe(400);
    expect(
      (
        await send(
          owner,
          `/api/v1/tenants/${acme.id}/bridges/discord/rooms/${encodeURIComponent(random)}/agents`,
          { json: { agent: "ada" } },
        )
      ).statusCode,
    ).toBe(404);
    expect((await invite(random, "ada")).statusCode).toBe(502);
    const form = await send(owner, "/t/acme/bridges/slack/agents", {
      form: { roomId: general, agent: "ada" },
    });
    expect(form.statusCode).toBe(409);
    expect(form.body).toContain("Ada is already in that room");
    expect(
      (
        await send(member, "/t/acme/bridges/slack/agents", {
          form: { roomId: random, agent: "ada" },
        })
      ).statusCode,
    ).toBe(403);
    expect(await knex()("audit_log").where({ action: "bridge.invite_agent" })).toHaveLength(0);
  });

  it("disconnects after confirmation: credentials erased at once, provisioner asked, audited", async () => {
    const unconfirmed = await send(owner, "/t/acme/bridges/slack/disconnect", { form: {} });
    expect(unconfirmed.statusCode).toBe(400);
    expect(unconfirmed.body).toContain("tick the box");
    expect(await chatSays("bridge disconnect slack")).toMatch(
      /send `bridge disconnect slack confirm`/,
    );
    expect(
      (await knex()("bridges").where({ tenant_id: acme.id, network: "slack" }).first()).desired,
    ).toBe("enabled");

    const requestedBefore = await provisionRequestedAt(acme.id);
    const done = await send(owner, "/t/acme/bridges/slack/disconnect", {
      form: { confirm: "yes" },
    });
    expect(done.statusCode).toBe(303);
    const row = await knex()("bridges").where({ tenant_id: acme.id, network: "slack" }).first();
    expect(row).toMatchObject({
      desired: "disabled",
      state: "removing",
      credentials_encrypted: null,
    });
    expect(await provisionRequestedAt(acme.id)).toBeGreaterThan(requestedBefore);
    expect(await knex()("audit_log").where({ action: "bridge.disconnect" }).first()).toMatchObject({
      actor: "owner@example.org",
      target: "slack",
    });
    expect((await send(owner, "/t/acme/bridges", {})).body).toContain("disconnecting");

    const again = await send(owner, `/api/v1/tenants/${acme.id}/bridges/slack`, {
      method: "DELETE",
    });
    expect(again.statusCode).toBe(409);
    const never = await send(owner, `/api/v1/tenants/${acme.id}/bridges/telegram`, {
      method: "DELETE",
    });
    expect(never.statusCode).toBe(404);
    expect(await chatSays("bridge disconnect discord confirm")).toBe("Discord bridge not found");

    // The freed slot can be used again, by chat this time.
    await bridgeStore.deleteDisabled(knex(), acme.id, "slack");
    expect(
      await chatSays(`bridge connect telegram ${TELEGRAM_BOT} 12345 ${TELEGRAM_HASH}`),
    ).toMatch(
      /^Saved the Telegram credentials \(encrypted\)[\s\S]*homeserver may keep removed content/,
    );
    const telegram = await knex()("bridges")
      .where({ tenant_id: acme.id, network: "telegram" })
      .first();
    expect(JSON.parse(t.app.cipher.decrypt(String(telegram.credentials_encrypted)))).toEqual({
      network: "telegram",
      botToken: TELEGRAM_BOT,
      apiId: 12345,
      apiHash: TELEGRAM_HASH,
    });
  });

  it("never lets a token into the database in the clear, a response or a log line", async () => {
    const everything = [await dump(), ...responses, logLines.join("")].join("\n");
    expect(everything.length).toBeGreaterThan(1000);
    for (const secret of SECRETS) expect(everything).not.toContain(secret);
  });
});
