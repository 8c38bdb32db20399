import { describe, expect, it } from "vitest";
import type { IncomingMessage } from "../../src/agents/ports.ts";
import {
  chooseResponders,
  stripAddress,
  type RoutingInput,
  type ServiceAccounts,
} from "../../src/agents/routing.ts";
import { BRIDGE_NETWORKS, NETWORKS } from "../../src/bridges/networks.ts";
import type { Agent, AgentIdentity } from "../../src/agents/types.ts";
import type { AgentId, EventId, MatrixUserId, RoomId, TenantId } from "../../src/shared/ids.ts";

const SERVER = "acme.test";
const ALICE = `@alice:${SERVER}` as MatrixUserId;
const ACCOUNTS: ServiceAccounts = {
  serverName: SERVER,
  botUserId: `@switchboard:${SERVER}` as MatrixUserId,
  relayUserId: `@switchboard-relay:${SERVER}` as MatrixUserId,
};

function identity(name: string, overrides: Partial<Agent> = {}): AgentIdentity {
  const agent: Agent = {
    id: `agent-${name}` as AgentId,
    tenantId: "tenant-1" as TenantId,
    name,
    displayName: name.charAt(0).toUpperCase() + name.slice(1),
    avatarUrl: null,
    instructions: "",
    provider: "openai",
    model: "gpt-4o-mini",
    baseUrl: null,
    temperature: 0.7,
    maxTokens: 1024,
    keySource: "managed",
    triggerPolicy: "mentions",
    memoryScope: "shared",
    status: "active",
    ...overrides,
  };
  return { agent, userId: `@ai_${name}:${SERVER}` as MatrixUserId };
}

function message(body: string, overrides: Partial<IncomingMessage> = {}): IncomingMessage {
  return {
    eventId: "$event" as EventId,
    roomId: `!room:${SERVER}` as RoomId,
    sender: ALICE,
    msgtype: "m.text",
    body,
    formattedBody: null,
    threadRootId: null,
    replyToEventId: null,
    mentionedUserIds: null,
    sentAt: new Date(0),
    ...overrides,
  };
}

function route(
  body: string,
  agents: readonly AgentIdentity[],
  options: {
    isDirect?: boolean;
    repliedToSender?: MatrixUserId | null;
    message?: Partial<IncomingMessage>;
  } = {},
): string[] {
  const input: RoutingInput = {
    message: message(body, options.message),
    agents,
    isDirect: options.isDirect ?? false,
    repliedToSender: options.repliedToSender ?? null,
    serviceAccounts: ACCOUNTS,
  };
  return chooseResponders(input).map((chosen) => chosen.agent.name);
}

const ada = identity("ada");
const bob = identity("bob");

describe("chooseResponders in a DM", () => {
  it("the agent answers a message that does not name it", () => {
    expect(route("what is the weather like?", [ada], { isDirect: true })).toEqual(["ada"]);
  });

  it("a paused agent does not answer even in a DM", () => {
    const paused = identity("ada", { status: "paused" });
    expect(route("hello", [paused], { isDirect: true })).toEqual([]);
  });

  it("notices are never answered, even in a DM", () => {
    expect(route("hello ada", [ada], { isDirect: true, message: { msgtype: "m.notice" } })).toEqual(
      [],
    );
  });

  it("emotes are answered", () => {
    expect(route("waves", [ada], { isDirect: true, message: { msgtype: "m.emote" } })).toEqual([
      "ada",
    ]);
  });
});

describe("chooseResponders in a group room", () => {
  it("nobody answers a message that addresses no agent", () => {
    expect(route("lunch at noon?", [ada, bob])).toEqual([]);
  });

  it("an agent listed in m.mentions answers", () => {
    expect(
      route("can you check this", [ada, bob], { message: { mentionedUserIds: [ada.userId] } }),
    ).toEqual(["ada"]);
  });

  it("an empty m.mentions does not address anyone", () => {
    expect(route("can you check this", [ada, bob], { message: { mentionedUserIds: [] } })).toEqual(
      [],
    );
  });

  it("an agent named by its name, case-insensitively, as a whole word answers", () => {
    expect(route("ada, what do you think?", [ada, bob])).toEqual(["ada"]);
    expect(route("What do you think, ADA?", [ada, bob])).toEqual(["ada"]);
    expect(route("thanks @ada", [ada, bob])).toEqual(["ada"]);
  });

  it("an agent named by its display name answers", () => {
    const helper = identity("helper", { displayName: "Dr. Watson" });
    expect(route("dr. watson: any idea?", [helper, bob])).toEqual(["helper"]);
    expect(route("Watson?", [helper, bob])).toEqual([]);
  });

  it("an agent named by its full Matrix ID answers", () => {
    expect(route(`${ada.userId}: ping`, [ada, bob])).toEqual(["ada"]);
  });

  it("a name inside another word does not count", () => {
    expect(route("that was an adamant refusal", [ada, bob])).toEqual([]);
    expect(route("nevada is hot", [ada, bob])).toEqual([]);
    expect(route("ada_lovelace wrote it", [ada, bob])).toEqual([]);
    expect(route("bobsled team", [ada, bob])).toEqual([]);
  });

  it("a name next to non-ASCII letters is inside a word too", () => {
    expect(route("adaé", [ada])).toEqual([]);
    expect(route("éada", [ada])).toEqual([]);
  });

  it("a matrix.to pill in the formatted body addresses the agent", () => {
    const html = `<a href="https://matrix.to/#/${ada.userId}">Assistant</a>: please look`;
    expect(
      route("Assistant: please look", [ada, bob], { message: { formattedBody: html } }),
    ).toEqual(["ada"]);
  });

  it("pills match the exact Matrix ID, percent-encoded or not", () => {
    const encoded = `<a href="https://matrix.to/#/${encodeURIComponent(ada.userId)}">A</a> hi`;
    expect(route("A hi", [ada, bob], { message: { formattedBody: encoded } })).toEqual(["ada"]);
    const longerServer = `<a href="https://matrix.to/#/${ada.userId}ing">A</a> hi`;
    expect(route("A hi", [ada, bob], { message: { formattedBody: longerServer } })).toEqual([]);
    const broken = `<a href="https://matrix.to/#/%E0%A4%A">A</a> hi`;
    expect(route("A hi", [ada, bob], { message: { formattedBody: broken } })).toEqual([]);
  });

  it("room overrides replace the agent's policy: off silences, all answers everything, dms agents stay out of groups", () => {
    const max = identity("max", { triggerPolicy: "dms" });
    const policies = new Map([
      [ada.agent.id, "off" as const],
      [bob.agent.id, "all" as const],
    ]);
    const input = (body: string, isDirect = false): RoutingInput => ({
      message: message(body),
      agents: [ada, bob, max],
      isDirect,
      repliedToSender: null,
      roomPolicies: policies,
      serviceAccounts: ACCOUNTS,
    });
    expect(chooseResponders(input("ada, max: hello")).map((chosen) => chosen.agent.name)).toEqual(
      [],
    );
    expect(
      chooseResponders(input("nobody in particular")).map((chosen) => chosen.agent.name),
    ).toEqual(["bob"]);
    expect(chooseResponders(input("hello", true)).map((chosen) => chosen.agent.name)).toEqual([
      "bob",
      "max",
    ]);
  });

  it("a pill to someone else does not address the agent", () => {
    const html = `<a href="https://matrix.to/#/${ALICE}">Alice</a>: please look`;
    expect(route("Alice: please look", [ada, bob], { message: { formattedBody: html } })).toEqual(
      [],
    );
  });

  it("a reply to the agent's message addresses it", () => {
    expect(route("and then?", [ada, bob], { repliedToSender: ada.userId })).toEqual(["ada"]);
  });

  it("a reply to a person's message addresses nobody", () => {
    expect(route("and then?", [ada, bob], { repliedToSender: ALICE })).toEqual([]);
  });

  it("with two agents, only the one mentioned answers", () => {
    expect(route("bob, can you summarise?", [ada, bob])).toEqual(["bob"]);
    expect(route("summarise", [ada, bob], { message: { mentionedUserIds: [bob.userId] } })).toEqual(
      ["bob"],
    );
  });

  it("both answer when both are named", () => {
    expect(route("ada and bob: compare notes", [ada, bob])).toEqual(["ada", "bob"]);
  });

  it('an agent with trigger policy "all" answers every message', () => {
    const chatty = identity("chatty", { triggerPolicy: "all" });
    expect(route("lunch at noon?", [ada, chatty])).toEqual(["chatty"]);
  });

  it('when another agent is addressed, the "all" agent stays quiet', () => {
    const chatty = identity("chatty", { triggerPolicy: "all" });
    expect(route("ada, lunch at noon?", [ada, chatty])).toEqual(["ada"]);
  });

  it("a paused agent never answers, even when mentioned or with policy all", () => {
    const paused = identity("ada", { status: "paused" });
    const pausedAll = identity("chatty", { status: "paused", triggerPolicy: "all" });
    expect(
      route("ada!", [paused, pausedAll], {
        message: { mentionedUserIds: [paused.userId] },
        repliedToSender: paused.userId,
      }),
    ).toEqual([]);
    expect(route("anyone?", [paused, pausedAll])).toEqual([]);
  });

  it("a notice never gets an answer, even when it mentions the agent", () => {
    const chatty = identity("chatty", { triggerPolicy: "all" });
    expect(
      route("ada: build failed", [ada, chatty], {
        message: { msgtype: "m.notice", mentionedUserIds: [ada.userId] },
      }),
    ).toEqual([]);
  });

  it("names with regex characters are matched literally", () => {
    const dotted = identity("a.b");
    expect(route("a.b, hello", [dotted])).toEqual(["a.b"]);
    expect(route("axb, hello", [dotted])).toEqual([]);
  });
});

describe("stripAddress", () => {
  it("removes a leading name, display name or Matrix ID with its punctuation", () => {
    expect(stripAddress("ada, what is 2+2?", ada)).toBe("what is 2+2?");
    expect(stripAddress("Ada: what is 2+2?", ada)).toBe("what is 2+2?");
    expect(stripAddress("@ada what is 2+2?", ada)).toBe("what is 2+2?");
    expect(stripAddress(`  ${ada.userId}: what is 2+2?`, ada)).toBe("what is 2+2?");
  });

  it("leaves names in the middle of the text alone", () => {
    expect(stripAddress("tell bob that ada says hi", ada)).toBe("tell bob that ada says hi");
    expect(stripAddress("what do you think, ada?", ada)).toBe("what do you think, ada?");
  });

  it("does not cut a name off the front of a longer word", () => {
    expect(stripAddress("adamant people worry me", ada)).toBe("adamant people worry me");
    expect(stripAddress("Ada_lovelace wrote the first program", ada)).toBe(
      "Ada_lovelace wrote the first program",
    );
  });

  it("leaves text without an address unchanged (apart from trimming)", () => {
    expect(stripAddress("  hello there  ", ada)).toBe("hello there");
  });
});

describe("chooseResponders never answers software", () => {
  const everyone = identity("eve", { triggerPolicy: "all" });
  const msgtypes = ["m.text", "m.emote", "m.notice"] as const;

  it.each(BRIDGE_NETWORKS)("the %s bridge bot is not answered, whatever it sends", (network) => {
    const bot = `@${NETWORKS[network].botLocalpart}:${SERVER}` as MatrixUserId;
    for (const msgtype of msgtypes) {
      expect(
        route(`ada: You're not logged in`, [ada, everyone], {
          isDirect: true,
          message: { sender: bot, msgtype, mentionedUserIds: [ada.userId] },
        }),
      ).toEqual([]);
    }
  });

  it("the relay account and the service bot are not answered, even addressing an agent in a DM", () => {
    for (const sender of [ACCOUNTS.relayUserId, ACCOUNTS.botUserId]) {
      for (const msgtype of msgtypes) {
        expect(
          route("ada, hello", [ada, everyone], { isDirect: true, message: { sender, msgtype } }),
        ).toEqual([]);
      }
    }
  });

  it("another agent is not answered, even when it names one", () => {
    expect(
      route("ada, what do you think?", [ada, bob], { message: { sender: bob.userId } }),
    ).toEqual([]);
    expect(route("hello", [everyone, bob], { message: { sender: bob.userId } })).toEqual([]);
  });

  it("bridge ghosts are people and are answered; a bot's localpart on another server is someone else", () => {
    const ghost = `@${NETWORKS.slack.ghostPrefix}T1-U1:${SERVER}` as MatrixUserId;
    expect(route("ada, hello", [ada], { message: { sender: ghost } })).toEqual(["ada"]);
    const elsewhere = `@${NETWORKS.telegram.botLocalpart}:elsewhere.test` as MatrixUserId;
    expect(route("ada, hello", [ada], { message: { sender: elsewhere } })).toEqual(["ada"]);
  });
});
