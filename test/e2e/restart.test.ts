import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { finalText, messageFrom, type MatrixTestUser } from "../support/matrix-user.ts";
import { handOverRuntime, type RuntimeProcess } from "../support/runtime-process.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";

const ROOMS = 5;
const MESSAGES_PER_ROOM = 8;

describe("exactly once across a runtime crash", () => {
  let stack: TestStack;
  let acme: StackTenant;
  let runtime: RuntimeProcess | undefined;

  beforeAll(async () => {
    stack = await startStack();
    acme = await stack.addTenant("acme");
    await acme.createAgent({ name: "ada" });
  });

  afterAll(async () => {
    await runtime?.kill();
    await stack?.stop();
  });

  it("answers every message of a burst exactly once when the runtime is killed with SIGKILL mid-burst", async () => {
    const ada = acme.agentUserId("ada");
    const people: MatrixTestUser[] = [];
    const rooms: string[] = [];
    for (let index = 0; index < ROOMS; index++) {
      const person = await acme.user(`burst${String(index)}`);
      const roomId = await person.openDm(ada);
      people.push(person);
      rooms.push(roomId);
    }

    // Hand over from the in-process runtime to a separate process we can kill.
    const launcher = await handOverRuntime(stack, { editThrottleMs: 200 });
    // Slow answers, so the kill lands while turns are being streamed.
    stack.model.chunkDelayMs = 15;
    runtime = await launcher.start();

    const sends = people.flatMap((person, index) =>
      Array.from(
        { length: MESSAGES_PER_ROOM },
        (_, n) => () =>
          person.sendText(rooms[index] as string, `question ${String(index)}-${String(n)}`),
      ),
    );
    for (const send of sends) await send();

    // Kill once some, but not all, answers are out.
    await people[0]!.waitForEvents(rooms[0]!, messageFrom(ada), 2, 60_000);
    await runtime.kill();
    runtime = await launcher.start();

    for (const [index, person] of people.entries()) {
      const roomId = rooms[index] as string;
      const replies = await person.waitForEvents(
        roomId,
        messageFrom(ada),
        MESSAGES_PER_ROOM,
        120_000,
      );
      const timeline = person.timeline.get(roomId) ?? [];
      // Let late duplicates, if any, arrive before counting.
      await person.sync(1_000);
      const texts = replies.map((reply) => finalText(timeline, reply));
      for (let n = 0; n < MESSAGES_PER_ROOM; n++) {
        expect(
          texts.filter((text) => text === `echo: question ${String(index)}-${String(n)}`),
          `room ${String(index)} message ${String(n)}; the agent said: ${JSON.stringify(texts)}`,
        ).toHaveLength(1);
      }
      expect(person.timeline.get(roomId)!.filter(messageFrom(ada))).toHaveLength(MESSAGES_PER_ROOM);
    }
  }, 240_000);
});
