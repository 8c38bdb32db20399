import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bridgeStore, type BridgeRoom } from "../../src/bridges/repository.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { provisioningState } from "../../src/provisioning/state.ts";
import type { MatrixUserId, RoomId } from "../../src/shared/ids.ts";
import { messageFrom, type ClientEvent, type MatrixTestUser } from "../support/matrix-user.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";
import { createStandInBridge, type StandInBridge } from "../support/stand-in-bridge.ts";
import { seedBridgeRow } from "../support/bridge-rows.ts";

const POLL = { timeout: 20_000, interval: 50 };
/** Real mautrix-go wording (bridgev2/commands/relay.go) for a relay that cannot be set. */
const NOT_LOGGED_IN = "You're not logged in and none of the default relay users are in the chat";

const membershipOf =
  (userId: string, membership: string) =>
  (event: ClientEvent): boolean =>
    event.type === "m.room.member" &&
    event.state_key === userId &&
    event.content.membership === membership;

/**
 * The relay account on a real Synapse, with stand-in bridges playing
 * mautrix-slack (connected for the tenant) and mautrix-discord (not
 * connected): portals joined and relayed, foreign invites declined, bridge
 * notices passed to the admins once, bridge bots never answered.
 */
describe("the relay account with a bridge", () => {
  let stack: TestStack;
  let acme: StackTenant;
  let slack: StandInBridge;
  let discord: StandInBridge;
  let relayUserId: MatrixUserId;
  let botUserId: MatrixUserId;
  let boss: MatrixTestUser;
  let managementRoomId: RoomId;

  const room = (roomId: RoomId): Promise<BridgeRoom | undefined> =>
    withTenant(stack.database.knex, acme.tenant.id, (trx) =>
      bridgeStore.findRoom(trx, acme.tenant.id, roomId),
    );

  beforeAll(async () => {
    stack = await startStack();
    const serverName = `relay-${String(process.pid)}.test`;
    slack = await createStandInBridge({ network: "slack", serverName });
    discord = await createStandInBridge({ network: "discord", serverName });
    acme = await stack.addTenant("acme", {
      serverName,
      appserviceRegistrations: {
        "stand-in-slack.yaml": slack.registrationYaml,
        "stand-in-discord.yaml": discord.registrationYaml,
      },
    });
    await slack.start(acme.homeserver.clientUrl);
    await discord.start(acme.homeserver.clientUrl);
    relayUserId = `@${stack.config.runtime.relayLocalpart}:${serverName}` as MatrixUserId;
    botUserId = `@${stack.config.runtime.botLocalpart}:${serverName}` as MatrixUserId;

    const { cipher } = stack.app;
    await seedBridgeRow(stack.database.knex, acme.tenant.id, "slack", cipher);

    // The tenant's management room, as the provisioner's bootstrap leaves it.
    boss = await acme.user("boss");
    managementRoomId = (await boss.createRoom({
      invite: [botUserId],
      name: "Switchboard",
    })) as RoomId;
    await boss.waitForJoin(managementRoomId, botUserId);
    await provisioningState.adopt(
      stack.database.knex,
      acme.tenant.id,
      "local",
      cipher.encrypt("unused"),
    );
    await provisioningState.update(stack.database.knex, acme.tenant.id, {
      management_room_id: managementRoomId,
    });
  });

  afterAll(async () => {
    await slack?.stop();
    await discord?.stop();
    await stack?.stop();
  });

  it("answers the homeserver's user query for the relay account (and registers it)", async () => {
    const { hsToken } = await stack.app.tenants.requireHomeserver(acme.tenant);
    const response = await fetch(
      `${stack.runtimeUrl}/tenants/${acme.tenant.id}/_matrix/app/v1/users/${encodeURIComponent(relayUserId)}`,
      { headers: { authorization: `Bearer ${hsToken}` } },
    );
    expect(response.status).toBe(200);
    const profile = await fetch(
      `${acme.homeserver.clientUrl}/_matrix/client/v3/profile/${encodeURIComponent(relayUserId)}`,
    );
    expect(profile.status).toBe(200);
  });

  it("joins a portal its bridge invites it to, records it and becomes its relay", async () => {
    const portal = await slack.createPortal("general", [relayUserId]);
    const command = await slack.waitFor(portal, messageFrom(relayUserId));
    expect(command.content.body).toBe("!slack set-relay");
    await expect.poll(async () => (await room(portal))?.relayState, POLL).toBe("set");
    expect(await room(portal)).toMatchObject({
      network: "slack",
      remoteName: "general",
      lastError: null,
    });
    // The relay asked exactly once.
    expect(slack.events(portal).filter(messageFrom(relayUserId))).toHaveLength(1);
  });

  it("records a refused set-relay as failed, with the bridge bot's words", async () => {
    slack.failSetRelay = NOT_LOGGED_IN;
    try {
      const portal = await slack.createPortal("random", [relayUserId]);
      await expect.poll(async () => (await room(portal))?.relayState, POLL).toBe("failed");
      expect((await room(portal))?.lastError).toBe(NOT_LOGGED_IN);
    } finally {
      slack.failSetRelay = undefined;
    }
  });

  it("leaves rooms it is invited to by anyone but a bridge the tenant has", async () => {
    const alice = await acme.user("alice");
    const fromPerson = (await alice.createRoom({ invite: [relayUserId] })) as RoomId;
    await alice.waitForEvent(fromPerson, membershipOf(relayUserId, "leave"));

    // Discord's bridge bot, but the tenant never connected Discord.
    const fromOtherBridge = await discord.createPortal("lobby", [relayUserId]);
    await discord.waitFor(fromOtherBridge, membershipOf(relayUserId, "leave"));

    expect(await room(fromPerson)).toBeUndefined();
    expect(await room(fromOtherBridge)).toBeUndefined();
    expect(alice.timeline.get(fromPerson)?.filter(messageFrom(relayUserId)) ?? []).toHaveLength(0);
  });

  it("passes the bridge bot's notices in its management room to the admins, once per text", async () => {
    const dm = await slack.openManagementRoom(relayUserId);
    await slack.waitFor(dm, membershipOf(relayUserId, "join"));
    // Not a portal: nothing recorded, no set-relay.
    expect(await room(dm)).toBeUndefined();

    const problem = "You're not logged in";
    await slack.botSays(dm, problem);
    await slack.botSays(dm, problem);
    await slack.botSays(dm, "Connection to Slack lost, reconnecting", "m.text");
    const notices = await boss.waitForEvents(managementRoomId, messageFrom(botUserId), 2);
    expect(notices.map((event) => [event.content.msgtype, event.content.body])).toEqual([
      ["m.notice", `Slack bridge: ${problem}`],
      ["m.notice", "Slack bridge: Connection to Slack lost, reconnecting"],
    ]);
    const bridge = await withTenant(stack.database.knex, acme.tenant.id, (trx) =>
      bridgeStore.find(trx, acme.tenant.id, "slack"),
    );
    expect(bridge?.lastError).toBe("Connection to Slack lost, reconnecting");
    // The relay account never talks back to the bridge bot.
    expect(slack.events(dm).filter(messageFrom(relayUserId))).toHaveLength(0);
  });

  it("never lets an agent answer or remember a bridge bot in a portal", async () => {
    await acme.createAgent({ name: "ada" });
    const ada = acme.agentUserId("ada") as MatrixUserId;
    const portal = await slack.createPortal("agents", [relayUserId, ada]);
    await slack.waitFor(portal, membershipOf(ada, "join"));
    await expect.poll(async () => (await room(portal))?.relayState, POLL).toBe("set");

    const calls = stack.model.requests.length;
    await slack.botSays(portal, "ada, this is the bridge speaking", "m.text");
    // A person's message after it in the same room: handled after the bot's (one queue per room).
    const ghost = slack.ghostId("t1-u1");
    stack.model.enqueue({ kind: "reply", text: "Hello from Ada." });
    await slack.say(ghost, portal, "ada, hello from Slack");
    await slack.waitFor(portal, messageFrom(ada));

    expect(stack.model.requests.length).toBe(calls + 1);
    expect(stack.model.requests.at(-1)?.lastUserText).toContain("hello from Slack");
    expect(JSON.stringify(stack.model.requests.at(-1))).not.toContain("the bridge speaking");
    const remembered = (await stack.database
      .knex("messages")
      .where({ room_id: portal })
      .pluck("sender")) as string[];
    expect(remembered).not.toContain(slack.botUserId);
    expect(remembered).not.toContain(relayUserId);
  });
});
