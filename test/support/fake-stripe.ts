import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import Stripe from "stripe";

/**
 * A Stripe API server for tests, speaking Stripe's REST wire protocol for
 * exactly what Switchboard calls: form-encoded bodies with bracket notation
 * in, JSON objects shaped like Stripe's out, `Idempotency-Key` honoured (the
 * same key replays the first response; the same key with other parameters
 * is an `idempotency_error`), errors as `{ error: { type, message, code } }`.
 * The app reaches it through the real `stripe` SDK (billing.stripe.apiUrl).
 *
 * Tests drive the subscription's life with the controls below (complete a
 * checkout, change status or price, cancel, pause) and send webhooks signed
 * with the SDK's own `generateTestHeaderString`, as Stripe signs them.
 */

export const FAKE_STRIPE_SECRET_KEY = "sk_test_fakestripe";
export const FAKE_STRIPE_WEBHOOK_SECRET = "whsec_fakestripe";

export type FakeSubscriptionStatus =
  "trialing" | "active" | "past_due" | "unpaid" | "canceled" | "paused" | "incomplete";

/** One request the fake answered, for assertions (params decoded from the form body). */
export interface RecordedStripeRequest {
  readonly method: string;
  readonly path: string;
  readonly params: Record<string, unknown>;
  readonly idempotencyKey: string | undefined;
  /** True when the response was replayed from an earlier request with the same key. */
  readonly replayed: boolean;
  readonly status: number;
}

export type StripeObject = Record<string, unknown> & { id: string };

interface StoredResponse {
  readonly fingerprint: string;
  readonly status: number;
  readonly body: unknown;
}

class StripeHttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | undefined;
  readonly param: string | undefined;

  constructor(status: number, type: string, message: string, code?: string, param?: string) {
    super(message);
    this.status = status;
    this.type = type;
    this.code = code;
    this.param = param;
  }
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);
const newId = (prefix: string): string =>
  `${prefix}_${randomBytes(12).toString("base64url").replace(/[-_]/g, "x")}`;
const DAY_SECONDS = 86_400;
const MONTH_SECONDS = 30 * DAY_SECONDS;

/** Decodes Stripe's form encoding: `a[b][0][c]=v` → { a: { b: [ { c: "v" } ] } }. */
export function decodeStripeForm(body: string): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [name, value] of new URLSearchParams(body)) {
    const head = /^[^[]+/.exec(name)?.[0];
    if (head === undefined) continue;
    const path = [
      head,
      ...[...name.slice(head.length).matchAll(/\[([^\]]*)\]/g)].map((m) => m[1] ?? ""),
    ];
    let node: Record<string, unknown> = root;
    for (const [index, segment] of path.entries()) {
      const key = segment === "" ? String(Object.keys(node).length) : segment;
      if (index === path.length - 1) node[key] = value;
      else {
        const next = node[key];
        if (typeof next !== "object" || next === null) node[key] = {};
        node = node[key] as Record<string, unknown>;
      }
    }
  }
  return arraysFromIndexedObjects(root) as Record<string, unknown>;
}

function arraysFromIndexedObjects(value: unknown): unknown {
  if (typeof value !== "object" || value === null) return value;
  const entries = Object.entries(value as Record<string, unknown>).map(
    ([key, inner]) => [key, arraysFromIndexedObjects(inner)] as const,
  );
  const indexed = entries.length > 0 && entries.every(([key]) => /^\d+$/.test(key));
  if (indexed) return entries.sort(([a], [b]) => Number(a) - Number(b)).map(([, inner]) => inner);
  return Object.fromEntries(entries);
}

const str = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);

function required(params: Record<string, unknown>, name: string): string {
  const value = str(params[name]);
  if (value === undefined || value === "")
    throw new StripeHttpError(
      400,
      "invalid_request_error",
      `Missing required param: ${name}.`,
      "parameter_missing",
      name,
    );
  return value;
}

export interface SendEventOptions {
  /** Sign with this secret instead of the endpoint's (a forged signature). */
  readonly secret?: string;
  /** Signature timestamp in seconds (a stale one to test replay protection). */
  readonly timestamp?: number;
  /** Send this header verbatim; null sends none. */
  readonly signatureHeader?: string | null;
  /** Send this body instead of the event's JSON (signed as given, unless signatureHeader is set). */
  readonly rawPayload?: string;
  /** Reuse an event id (Stripe retries a delivery with the same id). */
  readonly eventId?: string;
}

export interface DeliveryResult {
  readonly eventId: string;
  readonly status: number;
  readonly body: string;
}

export class FakeStripe {
  readonly customers = new Map<string, StripeObject>();
  readonly checkoutSessions = new Map<string, StripeObject>();
  readonly portalSessions = new Map<string, StripeObject>();
  readonly subscriptions = new Map<string, StripeObject>();
  readonly meterEvents: StripeObject[] = [];
  readonly requests: RecordedStripeRequest[] = [];
  /** Where webhooks are POSTed (our /api/v1/billing/webhook). */
  webhookUrl: string | undefined;
  readonly #idempotent = new Map<string, StoredResponse>();
  readonly #server: Server;
  #dropResponses = 0;
  #url = "";

  private constructor() {
    this.#server = createServer((request, response) => {
      void this.#handle(request, response);
    });
  }

  /** Starts a fake Stripe on a free loopback port. */
  static async start(): Promise<FakeStripe> {
    const fake = new FakeStripe();
    await new Promise<void>((resolve) => fake.#server.listen(0, "127.0.0.1", resolve));
    const { port } = fake.#server.address() as AddressInfo;
    fake.#url = `http://127.0.0.1:${String(port)}`;
    return fake;
  }

  /** The API base URL (billing.stripe.apiUrl). */
  get url(): string {
    return this.#url;
  }

  /** Config for the app: billing on against this fake. */
  billingConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      stripe: {
        secretKey: FAKE_STRIPE_SECRET_KEY,
        webhookSecret: FAKE_STRIPE_WEBHOOK_SECRET,
        apiUrl: this.#url,
      },
      ...extra,
    };
  }

  /**
   * The next `count` POSTs are carried out (and remembered under their
   * idempotency key) but their connection is cut before the answer: the
   * client sees a network error although Stripe did the work.
   */
  loseNextResponses(count: number): void {
    this.#dropResponses = count;
  }

  /** Forgets every idempotency key, as Stripe does after 24 hours. */
  forgetIdempotencyKeys(): void {
    this.#idempotent.clear();
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---- test controls: the subscription's life as Stripe would change it ----

  /**
   * The customer pays on the checkout page: a subscription is created on
   * the session's price (trialing when the session asked for trial days),
   * and the session completes.
   */
  completeCheckout(
    sessionId: string,
    options: { readonly status?: FakeSubscriptionStatus } = {},
  ): { session: StripeObject; subscription: StripeObject } {
    const session = this.checkoutSessions.get(sessionId);
    if (session === undefined) throw new Error(`no checkout session ${sessionId}`);
    let customer = str(session.customer);
    if (customer === undefined) {
      customer = this.#createCustomer({}).id;
      session.customer = customer;
    }
    const trialDays = Number(
      (session.subscription_data as { trial_period_days?: string } | undefined)
        ?.trial_period_days ?? 0,
    );
    const subscription = this.createSubscription({
      customer,
      priceId: str(session.price_id) ?? "",
      status: options.status ?? (trialDays > 0 ? "trialing" : "active"),
      metadata: (session.subscription_data as { metadata?: Record<string, string> } | undefined)
        ?.metadata,
    });
    if (trialDays > 0) subscription.trial_end = nowSeconds() + trialDays * DAY_SECONDS;
    Object.assign(session, {
      status: "complete",
      payment_status: "paid",
      subscription: subscription.id,
    });
    return { session, subscription };
  }

  createSubscription(options: {
    readonly customer: string;
    readonly priceId: string;
    readonly status?: FakeSubscriptionStatus;
    readonly metadata?: Record<string, string> | undefined;
  }): StripeObject {
    const id = newId("sub");
    const start = nowSeconds();
    const subscription: StripeObject = {
      id,
      object: "subscription",
      customer: options.customer,
      status: options.status ?? "active",
      cancel_at_period_end: false,
      canceled_at: null,
      ended_at: null,
      created: start,
      start_date: start,
      trial_end: null,
      pause_collection: null,
      livemode: false,
      metadata: options.metadata ?? {},
      items: {
        object: "list",
        data: [
          {
            id: newId("si"),
            object: "subscription_item",
            price: { id: options.priceId, object: "price", active: true },
            quantity: 1,
            current_period_start: start,
            current_period_end: start + MONTH_SECONDS,
          },
        ],
        has_more: false,
        url: `/v1/subscription_items?subscription=${id}`,
      },
    };
    this.subscriptions.set(id, subscription);
    return subscription;
  }

  updateSubscription(
    id: string,
    change: {
      readonly status?: FakeSubscriptionStatus;
      readonly priceId?: string;
      readonly currentPeriodEnd?: number;
      readonly cancelAtPeriodEnd?: boolean;
    },
  ): StripeObject {
    const subscription = this.subscriptions.get(id);
    if (subscription === undefined) throw new Error(`no subscription ${id}`);
    const item = (subscription.items as { data: Record<string, unknown>[] }).data[0];
    if (change.status !== undefined) subscription.status = change.status;
    if (change.priceId !== undefined && item !== undefined)
      item.price = { id: change.priceId, object: "price", active: true };
    if (change.currentPeriodEnd !== undefined && item !== undefined)
      item.current_period_end = change.currentPeriodEnd;
    if (change.cancelAtPeriodEnd !== undefined)
      subscription.cancel_at_period_end = change.cancelAtPeriodEnd;
    return subscription;
  }

  cancelSubscription(id: string): StripeObject {
    const subscription = this.updateSubscription(id, { status: "canceled" });
    subscription.canceled_at = nowSeconds();
    subscription.ended_at = nowSeconds();
    return subscription;
  }

  pauseSubscription(id: string): StripeObject {
    return this.updateSubscription(id, { status: "paused" });
  }

  resumeSubscription(id: string): StripeObject {
    return this.updateSubscription(id, { status: "active" });
  }

  /** The checkout session the app created last (tests then complete it). */
  lastCheckoutSession(): StripeObject {
    const sessions = [...this.checkoutSessions.values()];
    const last = sessions[sessions.length - 1];
    if (last === undefined) throw new Error("no checkout session was created");
    return last;
  }

  /** Meter events as recorded for one customer (the sum is what Stripe would bill). */
  meterTotal(customer: string): number {
    return this.meterEvents
      .filter((event) => (event.payload as Record<string, string>).stripe_customer_id === customer)
      .reduce((sum, event) => sum + Number((event.payload as Record<string, string>).value), 0);
  }

  // ---- webhooks ----

  /** A Stripe event object around a snapshot of `object`. */
  event(type: string, object: Record<string, unknown>, eventId?: string): StripeObject {
    return {
      id: eventId ?? newId("evt"),
      object: "event",
      api_version: "2026-10-28.endive",
      created: nowSeconds(),
      type,
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      data: { object: structuredClone(object) },
    };
  }

  /** An invoice of a subscription, as invoice.* events carry it. */
  invoice(subscriptionId: string, status: "paid" | "open" = "open"): StripeObject {
    const subscription = this.subscriptions.get(subscriptionId);
    return {
      id: newId("in"),
      object: "invoice",
      customer: subscription?.customer ?? null,
      status,
      parent: {
        type: "subscription_details",
        quote_details: null,
        subscription_details: { subscription: subscriptionId, metadata: {} },
      },
    };
  }

  /** Signs and POSTs an event to webhookUrl, as Stripe delivers it. */
  async send(
    type: string,
    object: Record<string, unknown>,
    options: SendEventOptions = {},
  ): Promise<DeliveryResult> {
    const event = this.event(type, object, options.eventId);
    const payload = options.rawPayload ?? JSON.stringify(event, null, 2);
    const header =
      options.signatureHeader !== undefined
        ? options.signatureHeader
        : Stripe.webhooks.generateTestHeaderString({
            payload,
            secret: options.secret ?? FAKE_STRIPE_WEBHOOK_SECRET,
            ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
          });
    if (this.webhookUrl === undefined) throw new Error("FakeStripe.webhookUrl is not set");
    const headers: Record<string, string> = {
      "content-type": "application/json; charset=utf-8",
      "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    };
    if (header !== null) headers["stripe-signature"] = header;
    const response = await fetch(this.webhookUrl, { method: "POST", headers, body: payload });
    return { eventId: event.id, status: response.status, body: await response.text() };
  }

  /** Sends customer.subscription.<suffix> with the subscription as it is now. */
  sendSubscriptionEvent(
    suffix: string,
    subscriptionId: string,
    options: SendEventOptions = {},
  ): Promise<DeliveryResult> {
    const subscription = this.subscriptions.get(subscriptionId);
    if (subscription === undefined) throw new Error(`no subscription ${subscriptionId}`);
    return this.send(`customer.subscription.${suffix}`, subscription, options);
  }

  // ---- the HTTP side ----

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const url = new URL(request.url ?? "/", this.#url);
    const method = request.method ?? "GET";
    const params =
      method === "GET" ? decodeStripeForm(url.searchParams.toString()) : decodeStripeForm(body);
    const idempotencyKey = str(request.headers["idempotency-key"]);
    const fingerprint = createHash("sha256")
      .update(`${method} ${url.pathname} ${body}`)
      .digest("hex");
    const record = (status: number, replayed: boolean): void => {
      this.requests.push({ method, path: url.pathname, params, idempotencyKey, replayed, status });
    };
    const send = (status: number, payload: unknown, headers: Record<string, string> = {}): void => {
      response.writeHead(status, {
        "content-type": "application/json",
        "request-id": newId("req"),
        ...(idempotencyKey === undefined ? {} : { "idempotency-key": idempotencyKey }),
        ...headers,
      });
      response.end(JSON.stringify(payload));
    };

    const auth = request.headers.authorization ?? "";
    const key = auth.startsWith("Bearer ")
      ? auth.slice(7)
      : Buffer.from(auth.replace(/^Basic /, ""), "base64")
          .toString()
          .replace(/:$/, "");
    if (key !== FAKE_STRIPE_SECRET_KEY) {
      record(401, false);
      send(401, {
        error: {
          type: "invalid_request_error",
          message: `Invalid API Key provided: ${key.slice(0, 8)}…`,
        },
      });
      return;
    }

    if (method === "POST" && idempotencyKey !== undefined) {
      const stored = this.#idempotent.get(idempotencyKey);
      if (stored !== undefined) {
        if (stored.fingerprint !== fingerprint) {
          record(400, false);
          send(400, {
            error: {
              type: "idempotency_error",
              message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
            },
          });
          return;
        }
        record(stored.status, true);
        if (this.#dropResponses > 0) {
          this.#dropResponses -= 1;
          request.socket.destroy();
          return;
        }
        send(stored.status, stored.body, { "idempotent-replayed": "true" });
        return;
      }
    }

    let status = 200;
    let result: unknown;
    try {
      result = this.#route(method, url.pathname, params);
    } catch (error) {
      if (!(error instanceof StripeHttpError)) throw error;
      status = error.status;
      result = {
        error: {
          type: error.type,
          message: error.message,
          ...(error.code === undefined ? {} : { code: error.code }),
          ...(error.param === undefined ? {} : { param: error.param }),
        },
      };
    }
    // Stripe saves the result of a request that began executing, errors included.
    if (method === "POST" && idempotencyKey !== undefined)
      this.#idempotent.set(idempotencyKey, { fingerprint, status, body: result });
    record(status, false);
    if (method === "POST" && this.#dropResponses > 0) {
      this.#dropResponses -= 1;
      request.socket.destroy();
      return;
    }
    send(status, result);
  }

  #route(method: string, path: string, params: Record<string, unknown>): unknown {
    let match: RegExpExecArray | null;
    if (method === "POST" && path === "/v1/customers") return this.#createCustomer(params);
    if (method === "GET" && (match = /^\/v1\/customers\/([^/]+)$/.exec(path)))
      return this.#find(this.customers, match[1] ?? "", "customer");
    if (method === "POST" && path === "/v1/checkout/sessions")
      return this.#createCheckoutSession(params);
    if (method === "GET" && (match = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(path)))
      return this.#find(this.checkoutSessions, match[1] ?? "", "checkout.session");
    if (method === "POST" && path === "/v1/billing_portal/sessions")
      return this.#createPortalSession(params);
    if (method === "GET" && (match = /^\/v1\/subscriptions\/([^/]+)$/.exec(path)))
      return this.#find(this.subscriptions, match[1] ?? "", "subscription");
    if (method === "POST" && path === "/v1/billing/meter_events")
      return this.#createMeterEvent(params);
    throw new StripeHttpError(
      404,
      "invalid_request_error",
      `Unrecognized request URL (${method}: ${path}).`,
    );
  }

  #find(map: Map<string, StripeObject>, id: string, kind: string): StripeObject {
    const found = map.get(id);
    if (found === undefined)
      throw new StripeHttpError(
        404,
        "invalid_request_error",
        `No such ${kind}: '${id}'`,
        "resource_missing",
        "id",
      );
    return found;
  }

  #createCustomer(params: Record<string, unknown>): StripeObject {
    const customer: StripeObject = {
      id: newId("cus"),
      object: "customer",
      email: str(params.email) ?? null,
      name: str(params.name) ?? null,
      metadata: params.metadata ?? {},
      created: nowSeconds(),
      livemode: false,
    };
    this.customers.set(customer.id, customer);
    return customer;
  }

  #createCheckoutSession(params: Record<string, unknown>): StripeObject {
    const mode = required(params, "mode");
    if (mode !== "subscription" && mode !== "payment" && mode !== "setup")
      throw new StripeHttpError(
        400,
        "invalid_request_error",
        `Invalid mode: ${mode}`,
        "parameter_invalid_string",
        "mode",
      );
    const successUrl = required(params, "success_url");
    const lineItems = params.line_items as { price?: unknown; quantity?: unknown }[] | undefined;
    const priceId = str(lineItems?.[0]?.price);
    if (priceId === undefined)
      throw new StripeHttpError(
        400,
        "invalid_request_error",
        "Missing required param: line_items[0][price].",
        "parameter_missing",
        "line_items[0][price]",
      );
    const customer = str(params.customer);
    if (customer !== undefined) this.#find(this.customers, customer, "customer");
    const id = newId("cs_test");
    const session: StripeObject = {
      id,
      object: "checkout.session",
      mode,
      status: "open",
      payment_status: "unpaid",
      client_reference_id: str(params.client_reference_id) ?? null,
      customer: customer ?? null,
      subscription: null,
      success_url: successUrl,
      cancel_url: str(params.cancel_url) ?? null,
      metadata: params.metadata ?? {},
      subscription_data: params.subscription_data ?? null,
      // Not a Stripe field; kept so completeCheckout knows what was bought.
      price_id: priceId,
      url: `${this.#url}/c/pay/${id}`,
      livemode: false,
      created: nowSeconds(),
      expires_at: nowSeconds() + DAY_SECONDS,
    };
    this.checkoutSessions.set(id, session);
    return session;
  }

  #createPortalSession(params: Record<string, unknown>): StripeObject {
    const customer = required(params, "customer");
    this.#find(this.customers, customer, "customer");
    const id = newId("bps");
    const session: StripeObject = {
      id,
      object: "billing_portal.session",
      customer,
      return_url: str(params.return_url) ?? null,
      url: `${this.#url}/p/session/${id}`,
      livemode: false,
      created: nowSeconds(),
    };
    this.portalSessions.set(id, session);
    return session;
  }

  #createMeterEvent(params: Record<string, unknown>): StripeObject {
    const eventName = required(params, "event_name");
    const payload = params.payload as Record<string, unknown> | undefined;
    const customer = str(payload?.stripe_customer_id);
    const value = str(payload?.value);
    if (customer === undefined || value === undefined || !/^\d+$/.test(value))
      throw new StripeHttpError(
        400,
        "invalid_request_error",
        "The payload must contain stripe_customer_id and an integer value.",
        "parameter_invalid_string",
        "payload",
      );
    const identifier = str(params.identifier) ?? newId("mev");
    if (this.meterEvents.some((event) => event.identifier === identifier))
      throw new StripeHttpError(
        400,
        "invalid_request_error",
        `An event with identifier ${identifier} already exists.`,
        "resource_already_exists",
        "identifier",
      );
    const event: StripeObject = {
      id: identifier,
      object: "billing.meter_event",
      created: nowSeconds(),
      event_name: eventName,
      identifier,
      payload: { stripe_customer_id: customer, value },
      timestamp: Number(str(params.timestamp) ?? nowSeconds()),
      livemode: false,
    };
    this.meterEvents.push(event);
    return event;
  }
}
