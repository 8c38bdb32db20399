import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/main.ts";
import { TEST_POSTGRES_URL } from "../support/database.ts";
import { finalText, messageFrom, type MatrixTestUser } from "../support/matrix-user.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

const ROOMS = 4;
/** Pace of the steady stream (one message every this long, rooms in turn): load, not a wait. */
const SEND_INTERVAL_MS = 60;
/** Messages Synapse must accept in each phase (before, between and after the faults). */
const MESSAGES_PER_PHASE = 24;
/** How long PostgreSQL stays cut for the app: the length of the injected fault, not a wait for an event. */
const DATABASE_OUTAGE_MS = 10_000;

interface Sent {
  readonly room: number;
  readonly body: string;
}

/**
 * Sends `message <room>-<n>` round the rooms until stopped. A send Synapse
 * answered with an event id is `accepted`; one that failed (Synapse down)
 * is `uncertain`: Synapse may have stored it before the connection broke.
 */
function steadyStream(people: readonly MatrixTestUser[], rooms: readonly string[]) {
  const accepted: Sent[] = [];
  const uncertain: Sent[] = [];
  let stopped = false;
  const running = (async () => {
    for (let n = 0; !stopped; n++) {
      const room = n % people.length;
      const sent = { room, body: `message ${String(room)}-${String(n)}` };
      try {
        await people[room]!.sendText(rooms[room]!, sent.body);
        accepted.push(sent);
      } catch {
        uncertain.push(sent);
      }
      await delay(SEND_INTERVAL_MS);
    }
  })();
  return {
    accepted,
    uncertain,
    /** Resolves once `count` more messages than now have been accepted. */
    async acceptedMore(count: number): Promise<void> {
      const target = accepted.length + count;
      while (accepted.length < target) await delay(SEND_INTERVAL_MS);
    },
    async stop(): Promise<void> {
      stopped = true;
      await running;
    },
  };
}

describe("Synapse restarted and PostgreSQL cut under a steady stream of messages", () => {
  let proxy: TcpProxy;
  let stack: TestStack;
  let acme: StackTenant;

  beforeAll(async () => {
    const server = new URL(TEST_POSTGRES_URL);
    proxy = await startTcpProxy({
      host: server.hostname,
      port: server.port === "" ? 5432 : Number(server.port),
    });
    stack = await startStack({ portal: true, appDatabaseUrl: (url) => proxy.rewrite(url) });
    acme = await stack.addTenant("acme");
    await acme.createAgent({ name: "ada" });
  }, 120_000);

  afterAll(async () => {
    await proxy?.restore();
    await stack?.stop();
    await proxy?.close();
  });

  it("answers every accepted message exactly once, and the runtime and portal recover by themselves", async () => {
    const ada = acme.agentUserId("ada");
    const people: MatrixTestUser[] = [];
    const rooms: string[] = [];
    for (let index = 0; index < ROOMS; index++) {
      const person = await acme.user(`steady${String(index)}`);
      rooms.push(await person.openDm(ada));
      people.push(person);
    }
    const runtimeApp: App = stack.app;
    const stream = steadyStream(people, rooms);

    await stream.acceptedMore(MESSAGES_PER_PHASE);
    await acme.homeserver.restart();
    await stream.acceptedMore(MESSAGES_PER_PHASE);

    await proxy.cut();
    const outageEnds = delay(DATABASE_OUTAGE_MS);
    // While the database is down the portal says so, quickly, and stays alive.
    const signal = AbortSignal.timeout(30_000);
    const ready = await fetch(`${stack.portalUrl!}/readyz`, { signal });
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: { database: string } }).checks.database).toMatch(
      /^failed/,
    );
    expect((await fetch(`${stack.portalUrl!}/healthz`, { signal })).status).toBe(200);
    await outageEnds;
    await proxy.restore();

    await stream.acceptedMore(MESSAGES_PER_PHASE);
    await stream.stop();

    // Both came back without help: the portal is ready again, the runtime is the same one.
    await expect
      .poll(async () => (await fetch(`${stack.portalUrl!}/readyz`)).status, { timeout: 30_000 })
      .toBe(200);
    expect(stack.app).toBe(runtimeApp);
    expect((await fetch(`${stack.runtimeUrl}/healthz`)).status).toBe(200);

    for (const [index, person] of people.entries()) {
      const roomId = rooms[index]!;
      const mine = stream.accepted.filter((sent) => sent.room === index).map((sent) => sent.body);
      const maybe = stream.uncertain.filter((sent) => sent.room === index).map((sent) => sent.body);
      // On a timeout, the checks below name the messages left unanswered.
      await person.waitForEvents(roomId, messageFrom(ada), mine.length, 180_000).catch(() => []);
      // Let late duplicates, if any, arrive before counting.
      await person.sync(1_000);
      const timeline = person.timeline.get(roomId) ?? [];
      const texts = timeline.filter(messageFrom(ada)).map((reply) => finalText(timeline, reply));
      const said = JSON.stringify(texts);
      for (const body of mine)
        expect(
          texts.filter((text) => text === `echo: ${body}`),
          `${body}; ada said ${said}`,
        ).toHaveLength(1);
      for (const body of maybe)
        expect(texts.filter((text) => text === `echo: ${body}`).length, body).toBeLessThanOrEqual(
          1,
        );
      expect(texts, said).toHaveLength(
        mine.length + maybe.filter((body) => texts.includes(`echo: ${body}`)).length,
      );
    }
    // Each turn is recorded once, as answered: none failed, none left started.
    const turns = (await stack.database
      .knex("turns")
      .select("status")
      .count({ count: "*" })
      .groupBy("status")) as { status: string; count: number }[];
    expect(
      turns.filter((row) => row.status !== "answered"),
      JSON.stringify(turns),
    ).toEqual([]);
    expect(turns[0]?.count).toBeGreaterThanOrEqual(stream.accepted.length);
  }, 480_000);
});
