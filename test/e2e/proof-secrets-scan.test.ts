import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readOutbox } from "../../src/accounts/mailer.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { memberships } from "../../src/tenants/memberships.ts";
import { BILLING_PLANS, waitFor } from "../support/billing.ts";
import { FakeStripe } from "../support/fake-stripe.ts";
import { messageFrom, type ClientEvent } from "../support/matrix-user.ts";
import { accountIdOf } from "../support/ops-fixtures.ts";
import { Browser, signUpAndIn, TEST_PASSWORD } from "../support/portal.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";

/**
 * One journey through the whole service at debug log level (a real Synapse,
 * PostgreSQL, the runtime and the listening portal, Stripe and the model
 * played by fakes over HTTP), then a scan of every log line, every table
 * (all columns, as text) and the mail outbox's neighbours for the plaintext
 * of every secret the journey handled. Hashes and ciphertexts are fine;
 * the plaintext must be nowhere but where it is handed to its owner.
 */

const OWNER = "owner@example.org";
/** Well-formed Slack credentials (the bridge's own patterns), random so that nothing else can contain them. */
const SLACK_BOT = `xoxb-1111111111-2222222222-${randomBytes(18).toString("base64url").replace(/[-_]/g, "x")}`;
const SLACK_APP = `xapp-1-A0123456789-1234567890123-${randomBytes(16).toString("hex")}`;
const BYOK_KEY = `sk-byok-${randomBytes(18).toString("hex")}`;
const WRONG_PASSWORD = `wrong ${randomBytes(8).toString("hex")} password`;
const NEW_PASSWORD = `new ${randomBytes(8).toString("hex")} passphrase`;

describe("secrets in logs and in the database, after a full journey", () => {
  let fake: FakeStripe;
  let stack: TestStack;
  let acme: StackTenant;
  let owner: Browser;
  const logLines: string[] = [];
  /** Every secret the journey handled, by what it is. */
  const secrets = new Map<string, string>();

  const knex = () => stack.database.knex;
  const tenantId = () => acme.tenant.id;
  const api = () => `/api/v1/tenants/${tenantId()}`;
  /** The parsed body of a response that must have succeeded. */
  const ok = (response: { statusCode: number; body: string }, what: string) => {
    expect(response.statusCode, `${what}: ${response.body}`).toBeLessThan(300);
    return JSON.parse(response.body === "" ? "null" : response.body) as Record<string, unknown>;
  };
  const tokenInMail = async (to: string, subject: RegExp): Promise<string> => {
    const mail = (await readOutbox(stack.outboxDir, 500)).find(
      (m) => m.to === to && subject.test(m.subject),
    );
    const link = /https?:\/\/\S+/.exec(mail?.text ?? "")?.[0];
    return new URL(link ?? "http://x/").searchParams.get("token") ?? "";
  };

  beforeAll(async () => {
    const sink = new PassThrough();
    sink.on("data", (chunk: Buffer) => logLines.push(chunk.toString("utf8")));
    fake = await FakeStripe.start();
    stack = await startStack({
      portal: true,
      logSink: sink,
      defaultPlan: "starter",
      config: {
        plans: { ...BILLING_PLANS, starter: { ...BILLING_PLANS.starter, bridges: 1 } },
        billing: fake.billingConfig(),
      },
    });
    fake.webhookUrl = `${stack.portalUrl ?? ""}/api/v1/billing/webhook`;
    acme = await stack.addTenant("acme");
  }, 180_000);
  afterAll(async () => {
    await stack?.stop();
    await fake?.close();
  });

  it("runs the journey: sign-up, tenant, BYOK key, API token, Slack bridge, Stripe, a conversation", async () => {
    const portal = await stack.app.portal.app();
    // Sign up, verify, sign in (the verification token comes by mail).
    owner = await signUpAndIn(portal, stack.outboxDir, OWNER);
    secrets.set("first session cookie", owner.cookies.get("sb_session") ?? "");
    secrets.set("verification token", await tokenInMail(OWNER, /verify|confirm/i));
    secrets.set("password", TEST_PASSWORD);
    const failed = await owner.request("/api/v1/session", {
      json: { email: OWNER, password: WRONG_PASSWORD },
    });
    expect(failed.statusCode).toBe(401);
    secrets.set("wrong password", WRONG_PASSWORD);
    const accountId = await accountIdOf(owner);
    await withTenant(knex(), tenantId(), (trx) =>
      memberships.add(trx, tenantId(), accountId, "owner"),
    );

    // A tenant made through the portal (its provisioning waits for a provisioner).
    ok(
      await owner.request("/api/v1/tenants", { json: { name: "Globex", slug: "globex" } }),
      "create tenant",
    );

    // BYOK: the model accepts only this key for the agent that uses it.
    stack.model.acceptKeys([BYOK_KEY]);
    ok(
      await owner.request(`${api()}/keys/openai`, { method: "PUT", json: { key: BYOK_KEY } }),
      "store BYOK key",
    );
    secrets.set("BYOK key", BYOK_KEY);

    // An API token, used once.
    const token = ok(
      await owner.request(`${api()}/tokens`, { json: { name: "ci" } }),
      "API token",
    ) as { plaintext: string };
    secrets.set("API token", token.plaintext);
    ok(
      await new Browser(portal).request(`${api()}/agents`, {
        headers: { authorization: `Bearer ${token.plaintext}` },
      }),
      "API token use",
    );

    // Slack, through the API.
    ok(
      await owner.request(`${api()}/bridges/slack`, {
        method: "PUT",
        json: { botToken: SLACK_BOT, appToken: SLACK_APP },
      }),
      "connect Slack",
    );
    secrets.set("Slack bot token", SLACK_BOT);
    secrets.set("Slack app token", SLACK_APP);

    // An invitation and a password reset (their tokens travel by mail only).
    ok(
      await owner.request(`${api()}/invitations`, {
        json: { email: "carol@example.org", role: "member" },
      }),
      "invite",
    );
    secrets.set("invitation token", await tokenInMail("carol@example.org", /invit/i));
    ok(await owner.request("/api/v1/password-reset", { json: { email: OWNER } }), "reset request");
    const resetToken = await tokenInMail(OWNER, /reset|password/i);
    secrets.set("reset token", resetToken);
    ok(
      await new Browser(portal).request("/api/v1/password-reset/confirm", {
        json: { token: resetToken, password: NEW_PASSWORD },
      }),
      "reset",
    );
    secrets.set("new password", NEW_PASSWORD);
    ok(
      await owner.request("/api/v1/session", { json: { email: OWNER, password: NEW_PASSWORD } }),
      "sign in again",
    );
    secrets.set("session cookie", owner.cookies.get("sb_session") ?? "");

    // Stripe: a checkout through the API, its webhook signed and delivered to the listener.
    ok(await owner.request(`${api()}/billing/checkout`, { json: { plan: "pro" } }), "checkout");
    const completed = fake.completeCheckout(fake.lastCheckoutSession().id);
    const delivery = await fake.send("checkout.session.completed", completed.session);
    expect(delivery.status, delivery.body).toBe(200);
    await waitFor("the Stripe event to be processed", async () => {
      const row = (await knex()("stripe_events")
        .where({ id: delivery.eventId })
        .first("status")) as { status: string } | undefined;
      return row === undefined || row.status === "pending" ? undefined : row.status;
    });
    secrets.set("Stripe secret key", String(stack.config.billing.stripe?.secretKey));
    secrets.set("Stripe webhook secret", String(stack.config.billing.stripe?.webhookSecret));

    // A conversation with an agent on the tenant's own key.
    await acme.createAgent({ name: "ada", keySource: "own" });
    const ada = acme.agentUserId("ada");
    const alice = await acme.user("alice");
    const roomId = await alice.openDm(ada);
    stack.model.enqueue({ kind: "reply", text: "Hello Alice." });
    await alice.sendText(roomId, "hello Ada");
    await alice.waitForEvent(
      roomId,
      (event: ClientEvent) => messageFrom(ada)(event) && event.content.body === "Hello Alice.",
    );
    expect(stack.model.requests.at(-1)?.apiKey).toBe(BYOK_KEY);

    // Failures log more than successes: a key the provider refuses, a model error, a forged webhook.
    stack.model.acceptKeys([`sk-other-${randomBytes(8).toString("hex")}`]);
    await alice.sendText(roomId, "are you there?");
    const failedTurns = async (): Promise<number> => {
      const [row] = (await knex()("turns")
        .where({ tenant_id: tenantId(), status: "failed" })
        .count({ n: "*" })) as { n: string | number }[];
      return Number(row?.n);
    };
    await waitFor("the refused key's turn to be recorded as failed", async () =>
      (await failedTurns()) >= 1 ? true : undefined,
    );
    stack.model.acceptKeys(undefined);
    stack.model.enqueue({ kind: "error", status: 500 });
    await alice.sendText(roomId, "and now?");
    await waitFor("the model error's turn to be recorded as failed", async () =>
      (await failedTurns()) >= 2 ? true : undefined,
    );
    const forged = await fake.send("checkout.session.completed", completed.session, {
      secret: "whsec_forged_by_someone_else",
    });
    expect(forged.status).toBe(400);

    // The service's own secrets: the master key, and what the cipher guards in the tables.
    for (const [id, key] of Object.entries(stack.config.secrets.masterKeys))
      secrets.set(`master key ${id}`, key);
    // Everything the cipher guards, in whichever table: registration tokens, provisioning
    // secrets, the BYOK key, bridge credentials; each one's plaintext is a secret too.
    const encrypted = (
      (await knex().raw(
        "select table_name, column_name from information_schema.columns where table_schema = 'public' and column_name like '%\\_encrypted' order by 1, 2",
      )) as { rows: { table_name: string; column_name: string }[] }
    ).rows;
    expect(encrypted.length).toBeGreaterThanOrEqual(8);
    for (const { table_name: table, column_name: column } of encrypted)
      for (const value of (await knex()(table).whereNotNull(column).pluck(column)) as string[])
        secrets.set(`${table}.${column} (${value.slice(-6)})`, stack.app.cipher.decrypt(value));
    expect([...secrets.keys()].filter((what) => what.startsWith("homeservers."))).toHaveLength(4);
    expect([...secrets.keys()].filter((what) => what.startsWith("bridges."))).toHaveLength(4);
    for (const [what, value] of secrets) expect(value.length, what).toBeGreaterThanOrEqual(8);
  }, 240_000);

  it("finds no secret's plaintext in any log line", () => {
    const logs = logLines.join("");
    // Every part of the service logged into the sink, failures included.
    for (const module of ["portal", "runtime", "appservice-http", "accounts", "bridges", "billing"])
      expect(logs, module).toContain(`"module":"${module}"`);
    expect(logs).toMatch(/"level":(40|50)/);
    const leaks = [...secrets].filter(([, value]) => logs.includes(value)).map(([what]) => what);
    expect(leaks).toEqual([]);
  });

  it("finds no secret's plaintext in any column of any table", async () => {
    const tables = (
      (await knex().raw(
        "select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by 1",
      )) as { rows: { table_name: string }[] }
    ).rows.map((row) => row.table_name);
    expect(tables.length).toBeGreaterThan(30);
    const leaks: string[] = [];
    for (const table of tables) {
      const rows = (
        (await knex().raw(`select row_to_json(t)::text as row from "${table}" t`)) as {
          rows: { row: string }[];
        }
      ).rows.map((row) => row.row);
      const dump = rows.join("\n");
      for (const [what, value] of secrets)
        if (dump.includes(value) || dump.includes(Buffer.from(value).toString("hex")))
          leaks.push(`${what} in ${table}`);
    }
    expect(leaks).toEqual([]);
  });
});
