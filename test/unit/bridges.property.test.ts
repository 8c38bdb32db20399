import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BRIDGE_NETWORKS, type BridgeNetwork } from "../../src/bridges/networks.ts";
import { parseBridgeCredentials } from "../../src/bridges/service.ts";
import type { CommandServices } from "../../src/commands/define.ts";
import { bridgeCommands } from "../../src/commands/definitions/bridges.ts";
import { parseCommand } from "../../src/commands/parser.ts";
import type { CommandContext } from "../../src/commands/types.ts";
import { isAppError } from "../../src/shared/errors.ts";

const FIELDS = ["botToken", "appToken", "apiId", "apiHash", "network", "credentials"];

/** Secret-looking values: long enough that finding one in a reply can only mean it was echoed. */
const secret = fc.oneof(
  fc.stringMatching(/^xox[bp]-[A-Za-z0-9-]{12,60}$/),
  fc.stringMatching(/^xapp-[A-Za-z0-9-]{12,60}$/),
  fc.stringMatching(/^\d{3,12}:[A-Za-z0-9_-]{30,40}$/),
  fc.stringMatching(/^[A-Za-z0-9_-]{20,30}\.[A-Za-z0-9_-]{4,8}\.[A-Za-z0-9_-]{20,30}$/),
  fc.stringMatching(/^[0-9a-f]{30,34}$/),
  fc.string({ unit: "binary", minLength: 24, maxLength: 80 }).map((s) => `Z${s}Q`),
);
const junk = fc.oneof(fc.anything(), fc.jsonValue(), secret);
const credentials = fc.oneof(
  fc.record(
    {
      botToken: junk,
      appToken: junk,
      apiId: fc.oneof(fc.integer(), fc.double(), junk),
      apiHash: junk,
      network: junk,
      extra: junk,
      __proto__: junk,
      constructor: junk,
    },
    { requiredKeys: [] },
  ),
  junk,
);

/** The long strings anywhere inside `value`: none may show up in an answer. */
function secretsIn(value: unknown, found: string[] = []): string[] {
  if (typeof value === "string" && value.trim().length >= 20) found.push(value.trim());
  else if (typeof value === "object" && value !== null)
    for (const child of Object.values(value)) secretsIn(child, found);
  return found;
}

describe("bridge credentials from arbitrary input", () => {
  it("are parsed or refused naming the field, never quoting a value", () => {
    fc.assert(
      fc.property(fc.constantFrom(...BRIDGE_NETWORKS), credentials, (network, input) => {
        try {
          const parsed = parseBridgeCredentials(network, input);
          expect(parsed.network).toBe(network);
        } catch (error) {
          if (!isAppError(error)) throw error;
          expect(error.code).toBe("bad_request");
          for (const problem of error.message.split("; "))
            expect(FIELDS).toContain(problem.slice(0, problem.indexOf(":")));
          for (const value of secretsIn(input)) expect(error.message).not.toContain(value);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("bridge connect in chat with arbitrary words", () => {
  const connected: unknown[] = [];
  const commands = bridgeCommands({
    portalUrl: "http://portal.test",
    bridges: {
      connect: (_tenantId: string, network: BridgeNetwork, input: unknown) => {
        const parsed = parseBridgeCredentials(network, input);
        connected.push(parsed);
        return Promise.resolve({ displayName: network, network });
      },
    },
  } as unknown as CommandServices);
  const context = {
    tenant: { id: "t1", slug: "acme" },
    by: { id: "@admin:acme.test", via: "chat" },
  } as unknown as CommandContext;

  it("answers with a refusal naming the field or the count, never echoing a token", async () => {
    const word = fc.oneof(secret, fc.string({ unit: "binary", maxLength: 30 }));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...BRIDGE_NETWORKS, "Slack", "irc"),
        fc.array(word, { maxLength: 5 }),
        fc.constantFrom(" ", "\n", "\t"),
        async (network, words, space) => {
          const line = ["bridge", "connect", network, ...words].join(space);
          const tokens = words.map((w) => w.trim()).filter((w) => w.length >= 20);
          const parsed = parseCommand(line, commands);
          let answer: string;
          if (parsed.kind === "command") {
            try {
              answer = (await parsed.command.run(context, parsed.args)).text;
            } catch (error) {
              if (!isAppError(error)) throw error;
              expect(error.code).toBe("bad_request");
              expect(error.message).toMatch(
                /^(botToken|appToken|apiId|apiHash|credentials): |takes </,
              );
              answer = error.message;
            }
          } else {
            answer = JSON.stringify(parsed);
            if (parsed.kind === "invalid") answer = parsed.problems.join("\n");
            else if (parsed.kind !== "unknown") throw new Error(`unexpected ${parsed.kind}`);
          }
          for (const token of tokens) expect(answer).not.toContain(token);
        },
      ),
      { numRuns: 1500 },
    );
  });
});

// Regression: zod's unknown-key message quoted the key, and a token pasted as a key came back.
it("does not quote a token pasted as a field name", () => {
  const token = "xoxb-1111111111-2222222222-AbCdEfGhIjKl";
  try {
    parseBridgeCredentials("slack", { [token]: "x", bot_token: "y" });
  } catch (error) {
    if (!isAppError(error)) throw error;
    expect(error.message).toContain("credentials: unknown field (not shown), bot_token");
    expect(error.message).not.toContain(token);
    return;
  }
  throw new Error("accepted");
});
