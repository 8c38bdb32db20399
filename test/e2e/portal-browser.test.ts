import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPortalTest, TEST_PASSWORD, type PortalTest } from "../support/portal.ts";

/**
 * The portal in a real browser: Debian's Chromium (scripts/setup.sh test
 * installs it) driven by playwright-core, against the real app listening on
 * loopback. Screenshots of the main pages land in test-artifacts/screenshots/.
 */

const CHROMIUM_PATH = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const SCREENSHOT_DIR = join(import.meta.dirname, "..", "..", "test-artifacts", "screenshots");
const STEP_TIMEOUT_MS = 15_000;
/** Turns every CSP violation into a console error, which the profile records. */
const CSP_REPORTER = `document.addEventListener("securitypolicyviolation", (event) => {
  console.error("CSP violation: " + event.violatedDirective + " blocked " + event.blockedURI);
});`;

/** A browser profile that records console errors, uncaught exceptions and CSP violations. */
interface Profile {
  readonly context: BrowserContext;
  readonly page: Page;
  readonly problems: string[];
}

async function openProfile(browser: Browser, javaScriptEnabled = true): Promise<Profile> {
  const context = await browser.newContext({ javaScriptEnabled });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const problems: string[] = [];
  // Init scripts run through the DevTools protocol, outside the page's CSP
  // (a string: the tests compile without the DOM types).
  await context.addInitScript(CSP_REPORTER);
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`${page.url()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => {
    problems.push(`${page.url()}: uncaught ${error.message}`);
  });
  page.on("requestfailed", (request) => {
    problems.push(`${request.url()}: request failed (${request.failure()?.errorText ?? "?"})`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`${response.url()}: HTTP ${response.status()}`);
  });
  return { context, page, problems };
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

describe("the portal in Chromium", () => {
  let t: PortalTest;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    await mkdir(SCREENSHOT_DIR, { recursive: true });
    t = await startPortalTest({ listen: true });
    base = t.url ?? "";
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  });
  afterAll(async () => {
    await browser.close();
    await t.stop();
  });

  /** Sign-up form → outbox → verification link: ends on the login page with the flash. */
  async function signUpAndVerify(page: Page, email: string, shots = false): Promise<void> {
    await page.goto(`${base}/signup`);
    await page.getByLabel("Your name").fill("Ada Lovelace");
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(TEST_PASSWORD);
    if (shots) await screenshot(page, "signup");
    await page.getByRole("button", { name: "Sign up" }).click();
    await page.getByRole("heading", { name: "Check your email" }).waitFor();
    await page.getByText(email).first().waitFor();

    await page.goto(`${base}/outbox`);
    await page.getByRole("row", { name: email }).getByRole("link").click();
    await page.waitForURL(/\/outbox\/[^/]+$/);
    if (shots) await screenshot(page, "outbox-mail");
    await page.locator("a.mail-link").first().click();
    await page.waitForURL(`${base}/login`);
    await page.getByText("Your email is verified.").waitFor();
  }

  async function signIn(page: Page, email: string): Promise<void> {
    if (!page.url().endsWith("/login")) await page.goto(`${base}/login`);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(TEST_PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(`${base}/`);
    await page.getByRole("heading", { name: "Your tenants" }).waitFor();
  }

  async function signOut(page: Page): Promise<void> {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(`${base}/login`);
    await page.getByText("You are signed out.").waitFor();
  }

  it("signs up, verifies by the outbox link, signs in and out and back in", async () => {
    const { context, page, problems } = await openProfile(browser);
    try {
      const email = "ada@example.org";
      await signUpAndVerify(page, email, true);
      await screenshot(page, "login");
      await signIn(page, email);
      await expect(page.locator(".who").textContent()).resolves.toBe(email);
      await screenshot(page, "home");

      await signOut(page);
      // Signed out, the front page sends the browser to the login page again.
      await page.goto(`${base}/`);
      await page.waitForURL(`${base}/login`);
      await signIn(page, email);
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("signs up and in with JavaScript disabled (the forms need no script)", async () => {
    const { context, page, problems } = await openProfile(browser, false);
    try {
      const email = "grace@example.org";
      await signUpAndVerify(page, email);
      await signIn(page, email);
      await signOut(page);
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("shows the error in the form on a refused login", async () => {
    const { context, page, problems } = await openProfile(browser);
    try {
      await page.goto(`${base}/login`);
      await page.getByLabel("Email").fill("nobody@example.org");
      await page.getByLabel("Password").fill("not the password");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("alert").waitFor();
      expect(page.url()).toBe(`${base}/login`);
      // The refused login answers 4xx (and Chromium logs that): nothing else went wrong.
      const others = problems.filter(
        (problem) => !/\/login: (HTTP 4\d\d|Failed to load resource: .* 4\d\d)/.test(problem),
      );
      expect(others).toEqual([]);
      expect(problems.length).toBeGreaterThan(0);
    } finally {
      await context.close();
    }
  });
});
