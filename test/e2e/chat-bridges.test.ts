import { PassThrough } from "node:stream";
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MatrixUserId } from "../../src/shared/ids.ts";
import { messageFrom, type ClientEvent, type MatrixTestUser } from "../support/matrix-user.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";
import { createStandInBridge, type StandInBridge } from "../support/stand-in-bridge.ts";

const SLACK_BOT = "xoxb-5555555555-6666666666-QwErTyUiOpAsDfGhJkLzXcVb";
const SLACK_APP = "xapp-1-A0999999999-9876543210987-fedcba9876543210fedcba";
const DISCORD_BOT = "MTE4MDAwMDAwMDAwMDAwMDAwMg.HhIiJj.zyxwvutsrqponmlkjihgfedcba987";
const POLL = { timeout: 20_000, interval: 50 };

const membershipOf =
  (userId: string, membership: string) =>
  (event: ClientEvent): boolean =>
    event.type === "m.room.member" &&
    event.state_key === userId &&
    event.content.membership === membership;

const TELEGRAM_BOT = "987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq";

/**
 * Bridges by chat with the service bot, on a real Synapse: a message holding
 * tokens is redacted as soon as it is read (also when refused), the reply
 * says so and points to the portal, and an agent invited into a bridged
 * room by the relay account joins it and shows in `bridge status`.
 */
describe("bridges by chatting with the bot", () => {
  let stack: TestStack;
  let slack: StandInBridge;
  let acme: StackTenant;
  let bot: string;
  let root: MatrixTestUser;
  let guest: MatrixTestUser;
  let rootDm: string;
  let guestDm: string;
  const logs: string[] = [];

  /** Sends a command and returns the bot's reply to it. */
  async function command(user: MatrixTestUser, roomId: string, text: string): Promise<ClientEvent> {
    const eventId = await user.sendText(roomId, text);
    const answer = await user.waitForEvent(
      roomId,
      (event) =>
        messageFrom(bot)(event) &&
        (event.content["m.relates_to"] as { "m.in_reply_to"?: { event_id: string } } | undefined)?.[
          "m.in_reply_to"
        ]?.event_id === eventId,
    );
    return { ...answer, event_id: eventId };
  }

  /** The command message as the room holds it now. */
  async function original(user: MatrixTestUser, roomId: string, eventId: string) {
    return user.request<{
      content: Record<string, unknown>;
      unsigned?: { redacted_because?: unknown };
    }>(
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(eventId)}`,
    );
  }

  async function dmWithBot(user: MatrixTestUser): Promise<string> {
    const roomId = await user.createRoom({
      invite: [bot],
      isDirect: true,
      preset: "trusted_private_chat",
    });
    await user.waitForEvent(
      roomId,
      (event) => messageFrom(bot)(event) && String(event.content.body).includes("help"),
    );
    return roomId;
  }

  /**
   * Real portals are private_chat rooms where joined members may invite
   * (power 0: mautrix-go bridgev2 portal.go, mautrix-discord portal.go); the
   * stand-in makes public_chat ones (invite at 50), so its bot lowers it here.
   */
  async function invitesAtPowerZero(roomId: string): Promise<void> {
    const asToken = String((parseYaml(slack.registrationYaml) as { as_token: string }).as_token);
    const url = () =>
      `${acme.homeserver.clientUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.power_levels/?user_id=${encodeURIComponent(slack.botUserId)}`;
    const headers = { authorization: `Bearer ${asToken}`, "content-type": "application/json" };
    const current = (await (await fetch(url(), { headers })).json()) as Record<string, unknown>;
    const changed = await fetch(url(), {
      method: "PUT",
      headers,
      body: JSON.stringify({ ...current, invite: 0 }),
    });
    if (!changed.ok) throw new Error(`power levels: ${await changed.text()}`);
  }

  beforeAll(async () => {
    const sink = new PassThrough();
    sink.on("data", (chunk: Buffer) => logs.push(chunk.toString("utf8")));
    stack = await startStack({ logSink: sink });
    const serverName = `bridges-chat-${String(process.pid)}.test`;
    slack = await createStandInBridge({ network: "slack", serverName });
    acme = await stack.addTenant("acme", {
      serverName,
      appserviceRegistrations: { "stand-in-slack.yaml": slack.registrationYaml },
    });
    await slack.start(acme.homeserver.clientUrl);
    bot = `@switchboard:${acme.serverName}`;
    await acme.createAgent({ name: "ada", displayName: "Ada" });
    root = await acme.user("root");
    guest = await acme.user("guest");
    await stack.app.tenants.addAdmin(acme.tenant.id, root.userId, "bootstrap", {
      id: "test",
      via: "cli",
    });
    [rootDm, guestDm] = await Promise.all([dmWithBot(root), dmWithBot(guest)]);
  });

  afterAll(async () => {
    await slack?.stop();
    await stack?.stop();
  });

  it("connects Slack by chat: the message is redacted, the reply says so and points to the portal", async () => {
    const reply = await command(root, rootDm, `bridge connect slack ${SLACK_BOT} ${SLACK_APP}`);
    expect(reply.content.body).toMatch(/Saved the Slack credentials \(encrypted\)/);
    expect(reply.content.body).toMatch(/homeserver may keep removed content for a while/);
    expect(reply.content.body).toContain("/t/acme/bridges");
    const message = await original(root, rootDm, reply.event_id);
    expect(message.content).toEqual({});
    expect(message.unsigned?.redacted_because).toBeDefined();

    const row = await stack.database.knex("bridges").where({ tenant_id: acme.tenant.id }).first();
    expect(row).toMatchObject({ network: "slack", desired: "enabled", state: "pending" });
    expect(JSON.parse(stack.app.cipher.decrypt(String(row.credentials_encrypted)))).toMatchObject({
      botToken: SLACK_BOT,
      appToken: SLACK_APP,
    });
    expect((await command(root, rootDm, "bridge list")).content.body).toMatch(
      /\*\*Slack\*\*: pending/,
    );
  });

  it("refuses bad tokens and non-admins with a notice, redacts their messages too, and writes nothing", async () => {
    const bad = await command(root, rootDm, "bridge connect discord not-a-discord-token");
    expect(bad.content.msgtype).toBe("m.notice");
    expect(bad.content.body).toMatch(/botToken: must be the bot's token/);
    expect(bad.content.body).not.toContain("not-a-discord-token");
    expect((await original(root, rootDm, bad.event_id)).content).toEqual({});

    const missing = await command(root, rootDm, `bridge connect telegram ${TELEGRAM_BOT}`);
    expect(missing.content.msgtype).toBe("m.notice");
    expect(missing.content.body).toMatch(/Telegram takes <bot token> <api_id> <api_hash>/);
    expect((await original(root, rootDm, missing.event_id)).content).toEqual({});

    const refused = await command(guest, guestDm, `bridge connect discord ${DISCORD_BOT}`);
    expect(refused.content.body).toMatch(/only tenant admins/);
    expect((await original(guest, guestDm, refused.event_id)).content).toEqual({});

    const rows = await stack.database.knex("bridges").where({ tenant_id: acme.tenant.id });
    expect(rows.map((row: { network: string }) => row.network)).toEqual(["slack"]);
    expect(
      await stack.database
        .knex("audit_log")
        .whereIn("action", ["bridge.connect", "bridge.credentials"]),
    ).toHaveLength(1);
  });

  it("invites an agent into a bridged room as the relay account; bridge status shows it there", async () => {
    const relay = `@${stack.config.runtime.relayLocalpart}:${acme.serverName}` as MatrixUserId;
    const ada = acme.agentUserId("ada");
    // The bridge makes a portal for a Slack channel; the relay account joins and becomes its relay.
    const portal = await slack.createPortal("general", [relay]);
    await invitesAtPowerZero(portal);
    await expect
      .poll(async () => (await stack.app.bridges.status(acme.tenant.id, "slack")).rooms, POLL)
      .toEqual([
        expect.objectContaining({ roomId: portal, remoteName: "general", relayState: "set" }),
      ]);

    await stack.app.bridges.inviteAgent(acme.tenant.id, "slack", portal, "ada", {
      id: "test",
      via: "cli",
    });
    const invite = await slack.waitFor(portal, membershipOf(ada, "invite"));
    expect(invite.sender).toBe(relay);
    await slack.waitFor(portal, membershipOf(ada, "join"));
    // The runtime records the join as it handles it.
    await expect
      .poll(
        async () =>
          (await stack.app.bridges.status(acme.tenant.id, "slack")).rooms[0]?.agents.map(
            (agent) => agent.name,
          ),
        POLL,
      )
      .toEqual(["ada"]);
    const status = await command(root, rootDm, "bridge status slack");
    expect(status.content.body).toContain(`general \`${portal}\`: relay set; Ada`);
    await expect(
      stack.app.bridges.inviteAgent(acme.tenant.id, "slack", portal, "ada", {
        id: "test",
        via: "cli",
      }),
    ).rejects.toThrow(/Ada is already in that room/);
  });

  it("disconnects by chat after confirmation", async () => {
    expect((await command(root, rootDm, "bridge disconnect slack")).content.body).toMatch(
      /bridge disconnect slack confirm/,
    );
    const done = await command(root, rootDm, "bridge disconnect slack confirm");
    expect(done.content.body).toMatch(/Disconnecting Slack/);
    const row = await stack.database
      .knex("bridges")
      .where({ tenant_id: acme.tenant.id, network: "slack" })
      .first();
    expect(row).toMatchObject({ desired: "disabled", credentials_encrypted: null });
  });

  it("keeps the tokens out of every table and log line", async () => {
    const secrets = [SLACK_BOT, SLACK_APP, DISCORD_BOT, TELEGRAM_BOT];
    for (const table of [
      "bridges",
      "audit_log",
      "messages",
      "inbound_events",
      "command_runs",
      "turns",
    ]) {
      const text = JSON.stringify(await stack.database.knex(table).select());
      for (const secret of secrets) expect(text, table).not.toContain(secret);
    }
    const logText = logs.join("");
    for (const secret of secrets) expect(logText).not.toContain(secret);
  });
});
