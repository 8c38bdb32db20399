import { describe, expect, it } from "vitest";
import { deriveKey, parseMemoryIntent } from "../../src/memory/intents.ts";
import { trigramWords } from "../../src/memory/retrieval.ts";
import { estimateTokens } from "../../src/memory/tokens.ts";

describe("parseMemoryIntent", () => {
  it.each([
    [
      "remember that my favourite colour is green",
      { kind: "remember", content: "my favourite colour is green", key: "favourite colour" },
    ],
    ["remember: I'm vegetarian", { kind: "remember", content: "I'm vegetarian", key: null }],
    ["please remember I work at Acme", { kind: "remember", content: "I work at Acme", key: null }],
    [
      "REMEMBER THAT MY Favourite  Colour IS BLUE!",
      { kind: "remember", content: "MY Favourite  Colour IS BLUE", key: "favourite colour" },
    ],
    [
      "Hey, could you please remember that my dog's name is Rex?",
      { kind: "remember", content: "my dog's name is Rex", key: "dog's name" },
    ],
    [
      "don't forget that our office is in Berlin.",
      { kind: "remember", content: "our office is in Berlin", key: "office" },
    ],
    [
      "  , remember - my kids are Tom and Ann",
      { kind: "remember", content: "my kids are Tom and Ann", key: "kids" },
    ],
    ["forget that I like jazz", { kind: "forget", matching: "I like jazz" }],
    ["Forget my address, please", { kind: "forget", matching: "my address" }],
    ["remember I'm vegan, thanks!", { kind: "remember", content: "I'm vegan", key: null }],
    ["forget everything about me", { kind: "forget_all" }],
    ["Forget about me.", { kind: "forget_all" }],
    ["can you forget everything you know about me?", { kind: "forget_all" }],
    ["please forget all my data", { kind: "forget_all" }],
  ])("%s", (message, expected) => {
    expect(parseMemoryIntent(message)).toEqual(expected);
  });

  it.each([
    "what is my favourite colour?",
    "do you remember my favourite colour?",
    "remember when we went to Paris?",
    "remember when we went to Paris",
    "remember me?",
    "remember that",
    "forget it",
    "forget about it!",
    "I remembered to buy milk",
    "remembering is hard",
    "forgetful me",
    "",
    "   ",
    "!!!",
  ])("no intent in %j", (message) => {
    expect(parseMemoryIntent(message)).toBeNull();
  });

  it("ignores messages far too long to be a request", () => {
    expect(parseMemoryIntent(`remember that ${"a".repeat(5_000)}`)).toBeNull();
  });
});

describe("deriveKey", () => {
  it.each([
    ["my favourite colour is green", "favourite colour"],
    ["My favourite colour is blue, which is nice", "favourite colour"],
    ["the wifi password is hunter2", "wifi password"],
    ["our kids are Tom and Ann", "kids"],
    ["my “nick name” was Bobby", "nick name"],
  ])("%s → %s", (content, key) => {
    expect(deriveKey(content)).toBe(key);
  });

  it.each([
    "I'm vegetarian",
    "she is nice",
    "it is raining",
    "I work at Acme",
    "my very long list of all the things that I like most is long",
  ])("no key in %j", (content) => {
    expect(deriveKey(content)).toBeNull();
  });
});

describe("estimateTokens", () => {
  it("counts about four characters per token", () => {
    expect(estimateTokens("")).toBe(0);
    expect(estimateTokens("abc")).toBe(1);
    expect(estimateTokens("abcd")).toBe(1);
    expect(estimateTokens("abcde")).toBe(2);
    expect(estimateTokens("x".repeat(400))).toBe(100);
  });
});

describe("trigramWords", () => {
  it("keeps the longest distinct topical words", () => {
    expect(trigramWords("What is my favorite color? Do you know my favorite COLOR")).toEqual([
      "favorite",
      "color",
    ]);
    expect(trigramWords("is it a an of")).toEqual([]);
  });
});
