import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bridgeStore } from "../../src/bridges/repository.ts";
import { NETWORKS } from "../../src/bridges/networks.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import type { EventId, MatrixUserId, RoomId } from "../../src/shared/ids.ts";
import { messageFrom, type ClientEvent } from "../support/matrix-user.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";
import { createStandInBridge, type StandInBridge } from "../support/stand-in-bridge.ts";
import { seedBridgeRow } from "../support/bridge-rows.ts";

const joinOf =
  (userId: string) =>
  (event: ClientEvent): boolean =>
    event.type === "m.room.member" &&
    event.state_key === userId &&
    event.content.membership === "join";

const isEdit = (event: ClientEvent): boolean =>
  (event.content["m.relates_to"] as { rel_type?: string } | undefined)?.rel_type === "m.replace";

const relation = (event: ClientEvent) =>
  event.content["m.relates_to"] as
    { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } | undefined;

/** A long answer as a model writes one: prose paragraphs and a code block, well over Discord's limit. */
function longAnswer(): string {
  const prose = (n: number) =>
    `Step ${n}. ${"The bridge relays every part of this answer to the channel as it is. ".repeat(9)}`;
  const code = Array.from({ length: 40 }, (_, n) => `  const line${n} = await relay(part${n});`);
  return [
    prose(1),
    prose(2),
    "```ts\nasync function deliver() {\n" + code.join("\n") + "\n}\n```",
    prose(3),
    prose(4),
    prose(5),
  ].join("\n\n");
}

/**
 * Agents in rooms bridged to Slack, Discord and Telegram, on a real Synapse
 * with stand-in bridges (second appservice registrations playing each
 * bridge's bot and ghosts): what the bridge would relay is what the
 * stand-in received from the homeserver.
 */
describe("agents in bridged rooms", () => {
  let stack: TestStack;
  let acme: StackTenant;
  let slack: StandInBridge;
  let discord: StandInBridge;
  let telegram: StandInBridge;
  let ada: MatrixUserId;
  let bob: MatrixUserId;

  /** Waits until every agent in `agents` has joined the stand-in's new portal. */
  async function portal(bridge: StandInBridge, name: string, agents: readonly MatrixUserId[]) {
    const roomId = await bridge.createPortal(name, agents);
    for (const agent of agents) await bridge.waitFor(roomId, joinOf(agent));
    return roomId;
  }

  /** The agent's messages in the room as the bridge received them. */
  const fromAgent = (bridge: StandInBridge, roomId: RoomId, agent: MatrixUserId) =>
    bridge.events(roomId).filter(messageFrom(agent));

  beforeAll(async () => {
    stack = await startStack();
    const serverName = `bridged-${String(process.pid)}.test`;
    [slack, discord, telegram] = (await Promise.all(
      (["slack", "discord", "telegram"] as const).map((network) =>
        createStandInBridge({ network, serverName }),
      ),
    )) as [StandInBridge, StandInBridge, StandInBridge];
    acme = await stack.addTenant("acme", {
      serverName,
      appserviceRegistrations: Object.fromEntries(
        [slack, discord, telegram].map((bridge) => [
          `stand-in-${bridge.network}.yaml`,
          bridge.registrationYaml,
        ]),
      ),
    });
    for (const bridge of [slack, discord, telegram]) await bridge.start(acme.homeserver.clientUrl);
    // Ada answers everything in her rooms; Bob only what is meant for him.
    await acme.createAgent({ name: "ada", triggerPolicy: "all" });
    await acme.createAgent({ name: "bob" });
    ada = acme.agentUserId("ada") as MatrixUserId;
    bob = acme.agentUserId("bob") as MatrixUserId;
  });

  afterAll(async () => {
    for (const bridge of [slack, discord, telegram]) await bridge?.stop();
    await stack?.stop();
  });

  it("a Slack ghost's message reaches the agent it names, whose reply is sent whole for the bridge, mentioning the ghost", async () => {
    const room = await portal(slack, "general", [ada, bob]);
    const ghost = slack.ghostId("t1-u1");
    // Streamed slowly enough that a Matrix room would see edits.
    stack.model.enqueue({
      kind: "reply",
      text: "Deploys happen on Tuesdays, after the checks pass.",
      chunkDelayMs: 150,
    });
    const asked = await slack.say(ghost, room, "bob, when do we deploy?");
    const answer = await slack.waitFor(room, messageFrom(bob));
    expect(answer.content.body).toBe(
      `${ghost}: Deploys happen on Tuesdays, after the checks pass.`,
    );
    expect(answer.content.formatted_body).toContain(`<a href="https://matrix.to/#/${ghost}">`);
    expect(answer.content["m.mentions"]).toEqual({ user_ids: [ghost] });
    expect(relation(answer)?.["m.in_reply_to"]?.event_id).toBe(asked);

    // Ada (who answers everything) did not answer a message meant for Bob, nor Bob's answer:
    // her answer to a later message shows both were handled (one queue per room).
    await slack.say(ghost, room, "thanks!");
    await slack.waitFor(room, messageFrom(ada));
    expect(fromAgent(slack, room, ada)).toHaveLength(1);
    expect(fromAgent(slack, room, bob)).toHaveLength(1);
    expect(slack.events(room).filter(isEdit)).toEqual([]);
  });

  it("a long answer in a Discord room is split into messages within Discord's limit, never edited", async () => {
    const room = await portal(discord, "lobby", [ada]);
    const ghost = discord.ghostId("111222333");
    const text = longAnswer();
    expect(text.length).toBeGreaterThan(2 * NETWORKS.discord.maxMessageChars);
    stack.model.enqueue({ kind: "reply", text, chunkDelayMs: 1 });
    await discord.say(ghost, room, "explain delivery, with code");
    const limit = NETWORKS.discord.maxMessageChars;
    // Every word of the answer arrives, in order, over several messages.
    const wordsOf = (body: string) =>
      body.split(/\s+/).filter((word) => word !== "" && !word.startsWith("```"));
    const words = wordsOf(text);
    const receivedWords = () =>
      wordsOf(
        fromAgent(discord, room, ada)
          .map((event) => String(event.content.body))
          .join("\n")
          .replace(`${ghost}: `, ""),
      );
    await expect
      .poll(() => receivedWords().length, { timeout: 30_000, interval: 50 })
      .toBeGreaterThanOrEqual(words.length);
    expect(receivedWords()).toEqual(words);
    const received = fromAgent(discord, room, ada);
    expect(received.length).toBeGreaterThanOrEqual(3);
    for (const [index, part] of received.entries()) {
      expect(String(part.content.body).length).toBeLessThanOrEqual(limit);
      expect(part.content.format).toBe("org.matrix.custom.html");
      // Code blocks are closed in the part that opens them.
      const html = String(part.content.formatted_body);
      expect(html.split("<pre>").length).toBe(html.split("</pre>").length);
      expect(part.content["m.mentions"]).toEqual(index === 0 ? { user_ids: [ghost] } : {});
    }
    expect(received.filter((part) => String(part.content.body).includes("```ts"))).not.toHaveLength(
      0,
    );
    expect(discord.events(room).filter(isEdit)).toEqual([]);
  });

  it("a thread on Slack stays a thread; on Telegram it becomes a reply to the person's message", async () => {
    const slackRoom = await portal(slack, "threads", [ada]);
    const slackGhost = slack.ghostId("t1-u2");
    const root = await slack.say(slackGhost, slackRoom, "starting a thread");
    await slack.waitFor(slackRoom, messageFrom(ada));
    const inThread = await slack.say(slackGhost, slackRoom, "in the thread", {
      threadRootId: root,
    });
    const threaded = await slack.waitFor(
      slackRoom,
      (event) => messageFrom(ada)(event) && relation(event)?.rel_type === "m.thread",
    );
    expect(relation(threaded)).toMatchObject({ rel_type: "m.thread", event_id: root });
    expect(relation(threaded)?.["m.in_reply_to"]?.event_id).toBe(inThread);

    const telegramRoom = await portal(telegram, "chat", [ada]);
    const telegramGhost = telegram.ghostId("5550001");
    const tgRoot = await telegram.say(telegramGhost, telegramRoom, "a topic");
    await telegram.waitFor(telegramRoom, messageFrom(ada));
    const tgAsked = await telegram.say(telegramGhost, telegramRoom, "threaded on Matrix", {
      threadRootId: tgRoot,
    });
    const replied = await telegram.waitFor(
      telegramRoom,
      (event) =>
        messageFrom(ada)(event) && relation(event)?.["m.in_reply_to"]?.event_id === tgAsked,
    );
    expect(relation(replied)?.rel_type).toBeUndefined();
  });

  it("a Slack ghost and a Telegram ghost linked as one person share what the agent remembers", async () => {
    const slackRoom = await portal(slack, "memory", [ada]);
    const telegramRoom = await portal(telegram, "memory", [ada]);
    const slackGhost = slack.ghostId("t1-u3");
    const telegramGhost = telegram.ghostId("5550002");
    await slack.say(slackGhost, slackRoom, "ada, remember that my favourite colour is green");
    await slack.waitFor(slackRoom, messageFrom(ada));
    await stack.app.memory.link(acme.tenant.id, slackGhost, telegramGhost, {
      id: "test",
      via: "cli",
    });

    const question = "ada, which colour do I like best?";
    await telegram.say(telegramGhost, telegramRoom, question);
    await telegram.waitFor(telegramRoom, messageFrom(ada));
    const request = stack.model.requests.findLast((recorded) =>
      recorded.lastUserText.includes("which colour do I like best"),
    );
    expect(request?.system).toContain("favourite colour is green");
    const platforms = (await withTenant(stack.database.knex, acme.tenant.id, (trx) =>
      trx("person_identities").whereIn("user_id", [slackGhost, telegramGhost]).select("platform"),
    )) as { platform: string }[];
    expect(platforms.map((row) => row.platform).sort()).toEqual(["slack", "telegram"]);
  });

  it("a Matrix user in a room the relay recorded as bridged gets an answer sent whole too", async () => {
    const room = await portal(slack, "mixed", [ada]);
    // What the relay account records when it joins a portal of a bridge the tenant has.
    await seedBridgeRow(stack.database.knex, acme.tenant.id, "slack", stack.app.cipher);
    await bridgeStore.recordRoom(stack.database.knex, {
      tenantId: acme.tenant.id,
      roomId: room,
      network: "slack",
      remoteName: "mixed",
    });
    const carol = await acme.user("carol");
    await carol.request("POST", `/_matrix/client/v3/join/${encodeURIComponent(room)}`, {});
    stack.model.enqueue({
      kind: "reply",
      text: "A slow answer, streamed word by word by the model.",
      chunkDelayMs: 150,
    });
    await carol.sendText(room, "ada, say something slowly");
    const answer = await slack.waitFor(room, messageFrom(ada));
    expect(answer.content.body).toContain("A slow answer, streamed word by word by the model.");
    await carol.sendText(room, "ada, and again");
    await slack.waitFor(room, (event) => messageFrom(ada)(event) && event !== answer);
    expect(slack.events(room).filter(isEdit)).toEqual([]);
  });

  it("no agent answers the bridge bot (text or notice) or the relay account", async () => {
    const room = await portal(slack, "quiet", [ada]);
    const calls = stack.model.requests.length;
    const said: EventId[] = [];
    said.push(await slack.botSays(room, "ada, you are not logged in", "m.text"));
    said.push(await slack.botSays(room, "ada, connection lost", "m.notice"));
    const served = await stack.app.runtime.registry.get(acme.tenant.id);
    if (served === undefined) throw new Error("the tenant is not served");
    await served.gateway.join(served.relayUserId, room);
    said.push(
      await served.gateway.send(
        served.relayUserId,
        room,
        { msgtype: "m.text", body: "ada, relayed from elsewhere" },
        "relay-test-message",
      ),
    );
    // A person's message after them: handled after theirs (one queue per room).
    const ghost = slack.ghostId("t1-u4");
    await slack.say(ghost, room, "ada, are you there?");
    await slack.waitFor(room, messageFrom(ada));
    expect(fromAgent(slack, room, ada)).toHaveLength(1);
    expect(stack.model.requests.length).toBe(calls + 1);
    expect(stack.model.requests.at(-1)?.lastUserText).toContain("are you there?");
    const turns = (await stack.database.knex("turns").whereIn("event_id", said)) as unknown[];
    expect(turns).toEqual([]);
  });
});
