import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXTRACTION_INSTRUCTIONS } from "../../src/agents/fact-extraction.ts";
import { echoResponder } from "../support/fake-models.ts";
import { messageFrom } from "../support/matrix-user.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";

describe("the optional fact-extraction step", () => {
  let stack: TestStack;
  let acme: StackTenant;

  beforeAll(async () => {
    stack = await startStack({ extractFacts: true });
    acme = await stack.addTenant("acme");
    await acme.createAgent({ name: "ada" });
    stack.model.respondWith((request) =>
      request.system === EXTRACTION_INSTRUCTIONS
        ? {
            text: request.lastUserText.includes("vegetarian")
              ? '[{"key":"diet","content":"They are vegetarian."}]'
              : "[]",
          }
        : echoResponder(request),
    );
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it("remembers what the person stated without being asked to, and uses it in another room", async () => {
    const ada = acme.agentUserId("ada");
    const dana = await acme.user("dana");
    const first = await dana.openDm(ada);
    await dana.sendText(first, "I'm vegetarian, any lunch ideas?");
    await dana.waitForEvent(first, messageFrom(ada));
    await expect
      .poll(
        async () =>
          (await stack.database
            .knex("facts")
            .where({ source_kind: "extraction" })
            .select("content")) as { content: string }[],
        { timeout: 10_000 },
      )
      .toEqual([{ content: "They are vegetarian." }]);

    const second = await dana.openDm(ada);
    await dana.sendText(second, "what should I cook tonight?");
    await dana.waitForEvent(second, messageFrom(ada));
    const asked = stack.model.requests.findLast(
      (request) => request.lastUserText === "what should I cook tonight?",
    );
    expect(asked?.system).toContain("They are vegetarian.");
  });
});
