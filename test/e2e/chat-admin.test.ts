import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { messageFrom, type ClientEvent, type MatrixTestUser } from "../support/matrix-user.ts";
import { startStack, TEST_MODEL_KEY, type StackTenant, type TestStack } from "../support/stack.ts";

const SECRET_KEY = "sk-live-4f9c2d7e8a1b3c5d6e7f8091a2b3c4d5";

describe("tenant administration by chatting with the bot", () => {
  let stack: TestStack;
  let acme: StackTenant;
  let bot: string;
  let root: MatrixTestUser;
  let guest: MatrixTestUser;
  let rootDm: string;
  let guestDm: string;
  const logs: string[] = [];

  /** Sends a command and returns the bot's answer to it (the final text, after any progress edit). */
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
    if (!String(answer.content.body).startsWith("⏳")) return answer;
    // A long-running command shows progress first, then edits in its result.
    const edit = await user.waitForEvent(
      roomId,
      (event) =>
        event.sender === bot &&
        (event.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined)
          ?.event_id === answer.event_id,
    );
    return { ...answer, content: edit.content["m.new_content"] as Record<string, unknown> };
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

  beforeAll(async () => {
    const sink = new PassThrough();
    sink.on("data", (chunk: Buffer) => logs.push(chunk.toString("utf8")));
    stack = await startStack({ logSink: sink });
    acme = await stack.addTenant("acme");
    bot = `@switchboard:${acme.serverName}`;
    await acme.createAgent({ name: "ada" });
    root = await acme.user("root");
    guest = await acme.user("guest");
    await stack.app.tenants.addAdmin(acme.tenant.id, root.userId, "bootstrap", {
      id: "test",
      via: "cli",
    });
    [rootDm, guestDm] = await Promise.all([dmWithBot(root), dmWithBot(guest)]);
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it("an admin creates and configures an agent by chat, invites it, and it answers with that persona and model", async () => {
    const created = await command(
      root,
      rootDm,
      'agent create max display-name="Max" instructions="You are Max, a pirate who loves maps." trigger=all',
    );
    expect(created.content.body).toMatch(/Created \*\*Max\*\*/);
    expect(created.content.format).toBe("org.matrix.custom.html");
    expect(
      (await command(root, rootDm, "agent set max model pirate-model-7")).content.body,
    ).toMatch(/Updated model/);
    expect((await command(root, rootDm, "agent set max temperature 0.2")).content.body).toMatch(
      /Updated temperature/,
    );

    const room = await root.createRoom({ invite: [bot], name: "crew" });
    await root.waitForJoin(room, bot);
    const max = acme.agentUserId("max");
    expect((await command(root, room, "!sb agent invite max")).content.body).toMatch(/Invited/);
    await root.waitForJoin(room, max);

    await root.sendText(room, "where is the treasure?");
    await root.waitForEvent(room, messageFrom(max));
    const request = stack.model.requests.findLast((recorded) =>
      recorded.lastUserText.endsWith("where is the treasure?"),
    )!;
    expect(request.model).toBe("pirate-model-7");
    expect(request.system).toContain("You are Max, a pirate who loves maps.");
    expect(request.body.temperature).toBe(0.2);

    // The room policy silences Max here; it is not asked again.
    expect((await command(root, room, "!sb room set max off")).content.body).toMatch(
      /now answers here: off/,
    );
    const before = stack.model.requests.length;
    await root.sendText(room, "anyone there?");
    await command(root, room, "!sb room show");
    expect(stack.model.requests.length).toBe(before);

    const audit = (await stack.database
      .knex("audit_log")
      .where({ actor: root.userId })
      .pluck("action")) as string[];
    expect(audit).toEqual(expect.arrayContaining(["agent.create", "agent.update", "room.policy"]));
  });

  it("redacts the message that carried a key, stores it encrypted, never echoes or logs it", async () => {
    const eventId = await root.sendText(rootDm, `key set openai ${SECRET_KEY}`);
    const reply = await root.waitForEvent(
      rootDm,
      (event) =>
        messageFrom(bot)(event) && String(event.content.body).includes("Stored the openai key"),
    );
    expect(reply.content.body).toContain("…c4d5");
    expect(JSON.stringify(reply.content)).not.toContain(SECRET_KEY);
    const original = await root.request<{
      content: Record<string, unknown>;
      unsigned?: { redacted_because?: unknown };
    }>(
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(rootDm)}/event/${encodeURIComponent(eventId)}`,
    );
    expect(original.content).toEqual({});
    expect(original.unsigned?.redacted_because).toBeDefined();

    const rows = (await stack.database
      .knex("provider_keys")
      .select("key_encrypted", "key_hint")) as { key_encrypted: string }[];
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(SECRET_KEY);
    // Nowhere else either: not the inbox copy of the event, not history, not the audit log.
    for (const table of ["audit_log", "messages", "inbound_events", "command_runs", "turns"]) {
      expect(JSON.stringify(await stack.database.knex(table).select()), table).not.toContain(
        SECRET_KEY,
      );
    }
    expect(logs.join("")).not.toContain(SECRET_KEY);

    // The model server does not know this key: the test call says so, with progress first.
    const rejected = await command(root, rootDm, "key test openai");
    expect(rejected.content.body).toMatch(/key was rejected/);
    await root.sendText(rootDm, `key set openai ${TEST_MODEL_KEY}`);
    await root.waitForEvent(
      rootDm,
      (event) =>
        messageFrom(bot)(event) &&
        String(event.content.body).includes(`…${TEST_MODEL_KEY.slice(-4)}`),
    );
    expect((await command(root, rootDm, "key test openai")).content.body).toMatch(/works/);
    expect((await command(root, rootDm, "providers")).content.body).toMatch(/openai.*own key `…/);
  });

  it("a non-admin is refused admin commands but can see, export and erase their own memory", async () => {
    const refused = await command(guest, guestDm, "agent create sneaky");
    expect(refused.content.msgtype).toBe("m.notice");
    expect(refused.content.body).toMatch(/only tenant admins/);
    expect((await command(guest, guestDm, `memory show ${root.userId}`)).content.body).toMatch(
      /only see and change what is remembered about \*\*you\*\*/,
    );

    const ada = acme.agentUserId("ada");
    const withAda = await guest.openDm(ada);
    await guest.sendText(withAda, "remember that my favourite food is sushi");
    await guest.waitForEvents(withAda, messageFrom(ada), 1);

    expect((await command(guest, guestDm, "memory show me")).content.body).toContain(
      "my favourite food is sushi",
    );
    const exported = await command(guest, guestDm, "memory export");
    expect(exported.content.body).toMatch(/1 fact/);
    const file = await guest.waitForEvent(
      guestDm,
      (event) => messageFrom(bot)(event) && event.content.msgtype === "m.file",
    );
    const [server, mediaId] = String(file.content.url).replace("mxc://", "").split("/");
    const download = await guest.request<{ facts: { content: string }[] }>(
      "GET",
      `/_matrix/client/v1/media/download/${server!}/${mediaId!}`,
    );
    expect(download.facts.map((fact) => fact.content)).toContain("my favourite food is sushi");

    expect((await command(guest, guestDm, "memory forget-all me")).content.body).toMatch(/confirm/);
    expect((await command(guest, guestDm, "memory forget-all me confirm")).content.body).toMatch(
      /Erased 1 fact/,
    );
    await guest.sendText(withAda, "what food do I like?");
    await guest.waitForEvents(withAda, messageFrom(ada), 2);
    const asked = stack.model.requests.findLast(
      (recorded) => recorded.lastUserText === "what food do I like?",
    )!;
    expect(asked.system).not.toContain("sushi");
  });

  it("answers malformed, unicode, very long and injection-looking commands with clear notices and keeps working", async () => {
    const cases: [string, RegExp][] = [
      ["agnet list", /Did you mean `agent list`/],
      ["agent create", /name: required[\s\S]*Usage: `agent create <name>/],
      ["agent create 🤖robot", /name: must be 1-32 characters: lowercase letters/],
      ["agent create x'; drop table agents;--", /name: must be 1-32 characters: lowercase letters/],
      [`agent set ada display-name ${"x".repeat(5000)}`, /too long|at most|4000/i],
      ["agent set ada temperature hot", /temperature: must be a number/],
      ['agent create "unterminated', /quote/i],
      ["agent show nobody", /agent "nobody" not found/],
      ["room set ada sometimes", /policy: must be one of/],
      ["memory forget not-a-uuid", /is not a fact id/],
    ];
    for (const [text, expected] of cases) {
      const reply = await command(root, rootDm, text);
      expect(reply.content.msgtype, text).toBe("m.notice");
      expect(String(reply.content.body), text).toMatch(expected);
    }
    const agents = (await stack.database.knex("agents").pluck("name")) as string[];
    expect(agents.sort()).toEqual(["ada", "max"]);
    expect((await command(root, rootDm, "help agent set")).content.body).toMatch(
      /agent set <name> <field> <value/,
    );
    expect((await command(root, rootDm, "agent list")).content.body).toMatch(/Max/);
  });
});
