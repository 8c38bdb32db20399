import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { editFrom, finalText, messageFrom } from "../support/matrix-user.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";

describe("agents on a real homeserver", () => {
  let stack: TestStack;
  let acme: StackTenant;

  beforeAll(async () => {
    stack = await startStack();
    acme = await stack.addTenant("acme");
    await acme.createAgent({ name: "ada", instructions: "Be brief." });
    await acme.createAgent({ name: "bob" });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it("joins when invited and answers a DM with what the model streamed", async () => {
    const alice = await acme.user("alice");
    const ada = acme.agentUserId("ada");
    const roomId = await alice.openDm(ada);

    stack.model.enqueue({ kind: "reply", text: "Hello Alice, nice to meet you.", chunks: 4 });
    const question = await alice.sendText(roomId, "hi there");
    const reply = await alice.waitForEvent(roomId, messageFrom(ada));
    expect(reply.content.body).toContain("Hello Alice");
    const request = stack.model.requests.at(-1)!;
    expect(request.system).toContain("Be brief.");
    expect(request.lastUserText).toBe("hi there");
    expect(reply.content["m.relates_to"]).toBeUndefined();
    expect(question).toMatch(/^\$/);
    // People's activity is tracked (matrix-appservice-bridge) and saved; agents' is not.
    await expect
      .poll(async () => (await stack.database.knex("user_activity").pluck("user_id")) as string[], {
        timeout: 10_000,
      })
      .toEqual([alice.userId]);
  });

  it("streams a slow answer as one message plus throttled edits, in the thread it was asked in", async () => {
    const carol = await acme.user("carol");
    const ada = acme.agentUserId("ada");
    const roomId = await carol.createRoom({ invite: [ada] });
    await carol.invite(roomId, acme.agentUserId("bob"));
    await carol.waitForJoin(roomId, ada);

    const root = await carol.sendText(roomId, "a thread about streaming");
    const text = "one two three four five six seven eight nine ten eleven twelve";
    stack.model.enqueue({ kind: "reply", text, chunks: 12, chunkDelayMs: 120 });
    await carol.sendText(roomId, "Ada, count to twelve", {
      "m.relates_to": {
        rel_type: "m.thread",
        event_id: root,
        is_falling_back: true,
        "m.in_reply_to": { event_id: root },
      },
    });

    const reply = await carol.waitForEvent(roomId, messageFrom(ada));
    expect(reply.content["m.relates_to"]).toMatchObject({ rel_type: "m.thread", event_id: root });
    await carol.waitForEvent(
      roomId,
      (event) =>
        editFrom(ada)(event) && (event.content["m.new_content"] as { body: string }).body === text,
    );
    const edits = carol.timeline.get(roomId)!.filter(editFrom(ada));
    expect(edits.length).toBeGreaterThanOrEqual(2);
    // Throttled: far fewer edits than chunks.
    expect(edits.length).toBeLessThan(12);
    expect(finalText(carol.timeline.get(roomId)!, reply)).toBe(text);
    // Only Ada was addressed; Bob stayed quiet.
    expect(carol.timeline.get(roomId)!.filter(messageFrom(acme.agentUserId("bob")))).toHaveLength(
      0,
    );
  });

  it("tells the room clearly when the model is unreachable, rejects the key, or is not configured, and records the failed turn", async () => {
    await acme.createAgent({ name: "cid", baseUrl: "http://127.0.0.1:9/v1" });
    await acme.createAgent({ name: "dee", keySource: "own" });
    await acme.createAgent({ name: "eve", provider: "anthropic" });
    const dave = await acme.user("dave");
    const expectNotice = async (agent: string, pattern: RegExp): Promise<void> => {
      const userId = acme.agentUserId(agent);
      const roomId = await dave.openDm(userId);
      await dave.sendText(roomId, "are you there?");
      const notice = await dave.waitForEvent(roomId, messageFrom(userId));
      expect(notice.content.msgtype).toBe("m.notice");
      expect(String(notice.content.body)).toMatch(pattern);
    };
    await expectNotice("cid", /openai/i);
    await stack.app.providerKeys.set(acme.tenant.id, "openai", "sk-wrong-key-1234", {
      id: "test",
      via: "cli",
    });
    await expectNotice("dee", /key was rejected/i);
    await expectNotice("eve", /ANTHROPIC_API_KEY/);

    // The ledger is written right after the notice is posted.
    const failedTurns = async () =>
      (await stack.database.knex("turns").where({ status: "failed" }).select("error")) as {
        error: string;
      }[];
    await expect
      .poll(async () => (await failedTurns()).length, { timeout: 10_000 })
      .toBeGreaterThanOrEqual(3);
    const turns = await failedTurns();
    expect(JSON.stringify(turns)).not.toContain("sk-wrong-key-1234");

    // The metrics count turns by outcome and failure kind.
    const metrics = await (await fetch(`${stack.runtimeUrl}/metrics`)).text();
    expect(metrics).toMatch(
      /switchboard_turns_total\{provider="openai",outcome="answered",failure=""\} [1-9]/,
    );
    expect(metrics).toMatch(
      /switchboard_turns_total\{provider="openai",outcome="failed",failure="unavailable"\} 1/,
    );
    expect(metrics).toMatch(
      /switchboard_turns_total\{provider="openai",outcome="failed",failure="auth"\} 1/,
    );
    expect(metrics).toMatch(
      /switchboard_turns_total\{provider="anthropic",outcome="failed",failure="no_credentials"\} 1/,
    );
    expect(metrics).toContain("switchboard_model_turn_seconds_bucket");
  });

  it("two agents in one room: each answers what is meant for it, both answer when both are named, and they never answer each other", async () => {
    const erin = await acme.user("erin");
    const ada = acme.agentUserId("ada");
    const bob = acme.agentUserId("bob");
    const roomId = await erin.createRoom({ invite: [ada, bob], name: "two agents" });
    for (const agent of [ada, bob]) {
      await erin.waitForJoin(roomId, agent);
    }
    const replies = (agent: string) => erin.timeline.get(roomId)?.filter(messageFrom(agent)) ?? [];

    // Ada's answer names Bob; Bob must not take it as addressed to him.
    stack.model.enqueue({ kind: "reply", text: "Bob knows more about that than I do." });
    await erin.sendText(roomId, "ada: who handles billing?");
    await erin.waitForEvents(roomId, messageFrom(ada), 1);

    await erin.sendText(roomId, "bob: what is two plus two?", {
      "m.mentions": { user_ids: [bob] },
    });
    await erin.waitForEvents(roomId, messageFrom(bob), 1);

    await erin.sendText(roomId, "Ada and Bob, say hello");
    await erin.waitForEvents(roomId, messageFrom(ada), 2);
    await erin.waitForEvents(roomId, messageFrom(bob), 2);

    // Nobody addressed: nobody answers (both agents answer on mentions only).
    const quiet = await erin.sendText(roomId, "thanks all");
    await erin.sendText(roomId, "ada: last one");
    await erin.waitForEvents(roomId, messageFrom(ada), 3);
    expect(replies(ada)).toHaveLength(3);
    expect(replies(bob)).toHaveLength(2);
    expect(
      stack.model.requests.some((request) => request.lastUserText.endsWith("thanks all")),
    ).toBe(false);
    expect(quiet).toMatch(/^\$/);
  });
});
