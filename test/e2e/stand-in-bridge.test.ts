import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MatrixUserId, RoomId } from "../../src/shared/ids.ts";
import { MatrixTestUser, messageFrom } from "../support/matrix-user.ts";
import { createStandInBridge, type StandInBridge } from "../support/stand-in-bridge.ts";
import { startTestHomeserver, type TestHomeserver } from "../support/synapse.ts";

/**
 * The stand-in bridges themselves, on a real Synapse: what other e2e tests
 * rely on (portals with m.bridge state, ghosts posting, events pushed to the
 * bridge, set-relay answered with the real bridges' texts).
 */
describe("stand-in bridge", () => {
  let homeserver: TestHomeserver;
  let slack: StandInBridge;
  let discord: StandInBridge;
  let alice: MatrixTestUser;

  beforeAll(async () => {
    const serverName = `stand-in-${String(process.pid)}.test`;
    slack = await createStandInBridge({ network: "slack", serverName });
    discord = await createStandInBridge({ network: "discord", serverName });
    homeserver = await startTestHomeserver({
      serverName,
      appserviceRegistrations: {
        "stand-in-slack.yaml": slack.registrationYaml,
        "stand-in-discord.yaml": discord.registrationYaml,
      },
    });
    await slack.start(homeserver.clientUrl);
    await discord.start(homeserver.clientUrl);
    const session = await homeserver.registerUser("alice");
    alice = new MatrixTestUser(homeserver.clientUrl, session.userId, session.accessToken);
  });

  afterAll(async () => {
    await slack.stop();
    await discord.stop();
    await homeserver.stop();
  });

  it("makes a named portal with m.bridge state, where ghosts talk and the bridge sees what people send", async () => {
    const roomId = await slack.createPortal("general", [alice.userId as MatrixUserId]);
    await alice.request("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
    const state = await alice.request<{ type: string }[]>(
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state`,
    );
    const types = state.map((event) => event.type);
    expect(types).toEqual(expect.arrayContaining(["m.bridge", "uk.half-shot.bridge"]));
    const name = await alice.request<{ name: string }>(
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.name/`,
    );
    expect(name.name).toBe("general");

    const ghost = slack.ghostId("t1-u1");
    expect(ghost).toBe(`@slack_t1-u1:${homeserver.serverName}`);
    const said = await slack.say(ghost, roomId, "hello from slack");
    const seen = await alice.waitForEvent(roomId, messageFrom(ghost));
    expect(seen.event_id).toBe(said);
    expect(seen.content.body).toBe("hello from slack");

    await alice.sendText(roomId, "hello back");
    const pushed = await slack.waitFor(roomId, messageFrom(alice.userId));
    expect(pushed.content.body).toBe("hello back");
  });

  it("answers set-relay as the bot with the bridge's success text, or the configured failure", async () => {
    const roomId = await slack.createPortal("random", [alice.userId as MatrixUserId]);
    await alice.request("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
    await alice.sendText(roomId, "!slack set-relay");
    const ok = await alice.waitForEvent(roomId, messageFrom(slack.botUserId));
    expect(ok.content.msgtype).toBe("m.notice");
    expect(ok.content.body).toContain("will now be relayed through");

    slack.failSetRelay = "You're not logged in and there are no default relay users configured";
    await alice.sendText(roomId, "!slack set-relay");
    const failed = await alice.waitForEvents(roomId, messageFrom(slack.botUserId), 2);
    expect(failed[1]?.content.body).toBe(
      "You're not logged in and there are no default relay users configured",
    );
    slack.failSetRelay = undefined;
  });

  it("answers Discord's set-relay --create with the saved webhook", async () => {
    const roomId: RoomId = await discord.createPortal("lobby", [alice.userId as MatrixUserId]);
    await alice.request("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
    await alice.sendText(roomId, "!discord set-relay --create Switchboard");
    const answer = await alice.waitForEvent(roomId, messageFrom(discord.botUserId));
    expect(answer.content.body).toMatch(
      /^Saved webhook Switchboard \(\d+\) as portal relay webhook$/,
    );
  });

  it("refuses transactions without the homeserver's token", async () => {
    const url = /url: (\S+)/.exec(slack.registrationYaml)?.[1] ?? "";
    const missing = await fetch(`${url}/_matrix/app/v1/transactions/1`, {
      method: "PUT",
      body: JSON.stringify({ events: [] }),
    });
    expect(missing.status).toBe(401);
    const wrong = await fetch(`${url}/_matrix/app/v1/transactions/1`, {
      method: "PUT",
      headers: { authorization: "Bearer nope" },
      body: JSON.stringify({ events: [] }),
    });
    expect(wrong.status).toBe(403);
  });
});
