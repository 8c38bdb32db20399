import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPortalTest, type PortalTest } from "../support/portal.ts";

describe("portal smoke", () => {
  let t: PortalTest;
  beforeAll(async () => {
    t = await startPortalTest();
  });
  afterAll(async () => {
    await t.stop();
  });

  it("signs up, verifies, signs in and sees the home page", async () => {
    const browser = await t.signedIn("ada@example.org");
    const home = await browser.request("/");
    expect(home.statusCode).toBe(200);
    expect(home.body).toContain("Your tenants");
    expect(home.body).toContain("ada@example.org");
    const login = await t.browser().request("/login");
    expect(login.statusCode).toBe(200);
    expect(login.headers["content-security-policy"]).toContain("default-src 'self'");
  });
});
