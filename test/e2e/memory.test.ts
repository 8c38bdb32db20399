import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { messageFrom, type MatrixTestUser } from "../support/matrix-user.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";

/** Sends a message and waits for the agent's answer; returns what the model was shown. */
async function ask(
  stack: TestStack,
  user: MatrixTestUser,
  roomId: string,
  agentUserId: string,
  text: string,
) {
  const before = user.timeline.get(roomId)?.filter(messageFrom(agentUserId)).length ?? 0;
  await user.sendText(roomId, text);
  await user.waitForEvents(roomId, messageFrom(agentUserId), before + 1);
  const request = stack.model.requests.findLast((recorded) => recorded.lastUserText === text);
  if (request === undefined) throw new Error(`the model never saw "${text}"`);
  return request;
}

describe("persistent memory across rooms, identities and tenants", () => {
  let stack: TestStack;
  let acme: StackTenant;
  let globex: StackTenant;

  beforeAll(async () => {
    stack = await startStack();
    [acme, globex] = await Promise.all([stack.addTenant("acme"), stack.addTenant("globex")]);
    // Same agent name and same people's localparts in both tenants.
    await acme.createAgent({ name: "ada" });
    await globex.createAgent({ name: "ada" });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it("remembers a fact told in one room when asked in another and on a linked second Matrix ID, never in another tenant", async () => {
    const ada = acme.agentUserId("ada");
    const alice = await acme.user("alice");
    const kitchen = await alice.openDm(ada);
    await ask(stack, alice, kitchen, ada, "remember that my favourite colour is green");

    const lounge = await alice.createRoom({ invite: [ada], isDirect: true, name: "lounge" });
    await alice.waitForJoin(lounge, ada);
    const inLounge = await ask(stack, alice, lounge, ada, "which colour do I like best?");
    expect(inLounge.system).toContain("favourite colour is green");
    // The other room's conversation is memory, not history: it is not replayed here.
    expect(JSON.stringify(inLounge.body.messages)).not.toContain(
      "remember that my favourite colour",
    );

    const phone = await acme.user("alice-phone");
    await stack.app.memory.link(acme.tenant.id, alice.userId, phone.userId, {
      id: "test",
      via: "cli",
    });
    const fromPhone = await ask(
      stack,
      phone,
      await phone.openDm(ada),
      ada,
      "what colour do I like?",
    );
    expect(fromPhone.system).toContain("favourite colour is green");

    // A stranger in the same tenant is not told Alice's facts.
    const bob = await acme.user("bob");
    const fromBob = await ask(
      stack,
      bob,
      await bob.openDm(ada),
      ada,
      "what is my favourite colour?",
    );
    expect(fromBob.system).not.toContain("green");

    // Another tenant, same agent name, same localpart: nothing crosses.
    const globexAda = globex.agentUserId("ada");
    const otherAlice = await globex.user("alice");
    const elsewhere = await ask(
      stack,
      otherAlice,
      await otherAlice.openDm(globexAda),
      globexAda,
      "what is my favourite colour, alice here?",
    );
    expect(elsewhere.system).not.toContain("green");
    expect(JSON.stringify(elsewhere.body)).not.toContain("lounge");
  });

  it("stores what the model asks to remember through its tool, with provenance, and supersedes an older value", async () => {
    const ada = acme.agentUserId("ada");
    const carol = await acme.user("carol");
    const room = await carol.openDm(ada);
    stack.model.enqueue(
      {
        kind: "reply",
        toolCalls: [
          {
            name: "remember",
            arguments: { about: "person", key: "employer", content: "Carol works at Initech." },
          },
        ],
      },
      { kind: "reply", text: "Noted, Initech." },
    );
    const told = await ask(stack, carol, room, ada, "I just started at Initech");
    expect(told.toolNames).toEqual(expect.arrayContaining(["remember", "forget"]));

    stack.model.enqueue(
      {
        kind: "reply",
        toolCalls: [
          {
            name: "remember",
            arguments: { about: "person", key: "employer", content: "Carol works at Globochem." },
          },
        ],
      },
      { kind: "reply", text: "Congratulations on Globochem." },
    );
    await ask(stack, carol, room, ada, "I moved to Globochem");

    const later = await ask(stack, carol, await carol.openDm(ada), ada, "where do I work?");
    expect(later.system).toContain("Carol works at Globochem.");
    expect(later.system).not.toContain("Initech");

    const exported = await stack.app.memory.exportFor(acme.tenant.id, carol.userId);
    const initech = exported?.facts.find((fact) => fact.content === "Carol works at Initech.");
    expect(initech?.supersededBy).toBeTruthy();
    expect(initech).toMatchObject({ source: "tool", sourceEventId: expect.stringMatching(/^\$/) });
  });
});
