import { describe, expect, it } from "vitest";
import { retryRateLimited, transactionIdFor } from "../../src/matrix/gateway.ts";

const limited = (retryAfterMs: number) =>
  Object.assign(new Error("M_LIMIT_EXCEEDED: Too Many Requests"), {
    errcode: "M_LIMIT_EXCEEDED",
    statusCode: 429,
    retryAfterMs,
  });

describe("retryRateLimited", () => {
  it("waits the delay the homeserver asks for and repeats the same request", async () => {
    const started = Date.now();
    let calls = 0;
    const result = await retryRateLimited(() => {
      calls++;
      return calls < 3 ? Promise.reject(limited(20)) : Promise.resolve("sent");
    });
    expect(result).toBe("sent");
    expect(calls).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(40);
  });

  it("does not retry other errors", async () => {
    let calls = 0;
    const forbidden = Object.assign(new Error("M_FORBIDDEN"), {
      errcode: "M_FORBIDDEN",
      statusCode: 403,
    });
    await expect(
      retryRateLimited(() => {
        calls++;
        return Promise.reject(forbidden);
      }),
    ).rejects.toBe(forbidden);
    expect(calls).toBe(1);
  });

  it("gives up after a bounded number of attempts", async () => {
    let calls = 0;
    await expect(
      retryRateLimited(() => {
        calls++;
        return Promise.reject(limited(1));
      }),
    ).rejects.toMatchObject({ errcode: "M_LIMIT_EXCEEDED" });
    expect(calls).toBe(6);
  });
});

describe("transactionIdFor", () => {
  it("is stable for a key, distinct across keys, URL-safe and bounded", () => {
    expect(transactionIdFor("$e/agent/post")).toBe(transactionIdFor("$e/agent/post"));
    expect(transactionIdFor("$e/agent/post")).not.toBe(transactionIdFor("$e/agent/final"));
    expect(transactionIdFor("x".repeat(10_000))).toMatch(/^sb\.[A-Za-z0-9_-]{32}$/);
  });
});
