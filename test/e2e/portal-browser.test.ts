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
    const reason = request.failure()?.errorText ?? "?";
    // A request still in flight when the page navigates away (e.g. the favicon) is aborted: normal.
    if (reason !== "net::ERR_ABORTED")
      problems.push(`${request.url()}: request failed (${reason})`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`${response.url()}: HTTP ${response.status()}`);
  });
  return { context, page, problems };
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

// A whole journey is some twenty page loads and several argon2id hashes: generous on a busy two-core machine.
describe("the portal in Chromium", { timeout: 120_000 }, () => {
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

  /** From the home page: the new-tenant form; ends on the tenant's overview. */
  async function createTenant(
    page: Page,
    name: string,
    slug: string,
    shots = false,
  ): Promise<void> {
    await page.getByRole("link", { name: "New tenant" }).click();
    await page.waitForURL(`${base}/tenants/new`);
    await page.getByRole("textbox", { name: /^Name\b/ }).fill(name);
    await page.getByLabel("Short name").fill(slug);
    if (shots) await screenshot(page, "tenant-new");
    await page.getByRole("button", { name: "Create tenant" }).click();
    await page.waitForURL(`${base}/t/${slug}`);
    await page.getByRole("heading", { name, level: 1 }).waitFor();
    await page.getByText(`${name} is created`).waitFor();
  }

  /** The tenant nav's Agents page, with the agent's row in its table. */
  async function agentRow(page: Page, displayName: string) {
    await page
      .getByRole("navigation", { name: "Tenant" })
      .getByRole("link", { name: "Agents" })
      .click();
    await page.waitForURL(/\/agents$/);
    const row = page
      .getByRole("row")
      .filter({ has: page.getByRole("link", { name: displayName }) });
    await row.waitFor();
    return row;
  }

  it("signs up, verifies by the outbox link, creates a tenant and an agent, signs out and back in", async () => {
    const { context, page, problems } = await openProfile(browser);
    try {
      const email = "ada@example.org";
      await signUpAndVerify(page, email, true);
      await screenshot(page, "login");
      await signIn(page, email);
      await expect(page.locator(".who").textContent()).resolves.toBe(email);
      await screenshot(page, "home-empty");

      await createTenant(page, "Acme Research", "acme", true);
      await screenshot(page, "tenant-overview");

      await page
        .getByRole("navigation", { name: "Tenant" })
        .getByRole("link", { name: "Agents" })
        .click();
      await page.waitForURL(`${base}/t/acme/agents`);
      await page.getByRole("link", { name: "New agent" }).first().click();
      await page.waitForURL(`${base}/t/acme/agents/new`);
      await page.getByRole("textbox", { name: /^Name\b/ }).fill("helper");
      await page.getByLabel("Display name").fill("Helper");
      await page
        .getByLabel("Instructions and persona")
        .fill("You answer questions about Acme's lab schedule.");
      await screenshot(page, "agent-form");
      await page.getByRole("button", { name: "Create agent" }).click();
      await page.waitForURL(`${base}/t/acme/agents/helper`);
      await page.getByText("Created Helper.").waitFor();

      const row = await agentRow(page, "Helper");
      await expect(row.textContent()).resolves.toContain("@ai_helper:acme.example.test");
      await screenshot(page, "agents");

      await signOut(page);
      // Signed out, tenant pages send the browser to the login page.
      await page.goto(`${base}/t/acme/agents`);
      await page.waitForURL(/\/login/);
      await signIn(page, email);
      await screenshot(page, "home");
      await page.getByRole("link", { name: "Acme Research" }).click();
      await page.waitForURL(`${base}/t/acme`);
      await agentRow(page, "Helper");
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("signs up, signs in and creates a tenant with JavaScript disabled (the forms need no script)", async () => {
    const { context, page, problems } = await openProfile(browser, false);
    try {
      const email = "grace@example.org";
      await signUpAndVerify(page, email);
      await signIn(page, email);
      await createTenant(page, "Grace's Lab", "grace-lab");
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
