import Stripe from "stripe";
import { z } from "zod";
import type { TenantId } from "../shared/ids.ts";
import {
  BillingGatewayError,
  WebhookRejected,
  type CheckoutSessionSnapshot,
  type StripeGateway,
  type SubscriptionSnapshot,
  type VerifiedEvent,
} from "./types.ts";

/** A portal click waits on Stripe; better a clear error than a hung page. */
export const STRIPE_TIMEOUT_MS = 15_000;
/** The SDK retries network failures with our idempotency keys, so retries are safe. */
const STRIPE_MAX_NETWORK_RETRIES = 2;
/** Stripe's recommended replay window for webhook signatures. */
export const WEBHOOK_TOLERANCE_SECONDS = 300;

/** Stripe object ids (sub_…, cs_…, in_…): anything else in a payload is not Stripe's, and could not be stored (a NUL). */
const STRIPE_OBJECT_ID = /^[A-Za-z0-9_]{1,255}$/;

const EventShape = z.object({
  id: z.string().regex(/^evt_[A-Za-z0-9_]{1,255}$/),
  type: z.string().regex(/^[a-z_.]{1,100}$/),
  data: z.object({
    object: z
      .object({
        id: z.string().regex(STRIPE_OBJECT_ID).optional(),
        subscription: z.unknown().optional(),
        parent: z.unknown().optional(),
      })
      .loose(),
  }),
});

export interface StripeGatewayOptions {
  readonly secretKey: string;
  readonly webhookSecret: string;
  /** Another API base (tests, mock servers); default api.stripe.com. */
  readonly apiUrl?: string | undefined;
  readonly timeoutMs?: number;
}

/** The StripeGateway over the official SDK (the only place that imports `stripe`). */
export class StripeSdkGateway implements StripeGateway {
  readonly #stripe: Stripe;
  readonly #webhookSecret: string;

  constructor(options: StripeGatewayOptions) {
    const api = options.apiUrl === undefined ? undefined : new URL(options.apiUrl);
    this.#stripe = new Stripe(options.secretKey, {
      timeout: options.timeoutMs ?? STRIPE_TIMEOUT_MS,
      maxNetworkRetries: STRIPE_MAX_NETWORK_RETRIES,
      telemetry: false,
      appInfo: { name: "switchboard" },
      ...(api === undefined
        ? {}
        : {
            host: api.hostname,
            port: api.port === "" ? (api.protocol === "https:" ? 443 : 80) : Number(api.port),
            protocol: api.protocol === "https:" ? "https" : "http",
          }),
    });
    this.#webhookSecret = options.webhookSecret;
  }

  async createCustomer(input: {
    tenantId: TenantId;
    name: string;
    email: string | null;
    idempotencyKey: string;
  }): Promise<{ customerId: string }> {
    const customer = await call(() =>
      this.#stripe.customers.create(
        {
          name: input.name,
          ...(input.email === null ? {} : { email: input.email }),
          metadata: { tenant_id: input.tenantId },
        },
        { idempotencyKey: input.idempotencyKey },
      ),
    );
    return { customerId: customer.id };
  }

  async createCheckout(input: {
    tenantId: TenantId;
    customerId: string;
    priceId: string;
    trialDays: number;
    successUrl: string;
    cancelUrl: string;
    idempotencyKey: string;
  }): Promise<{ sessionId: string; url: string }> {
    const session = await call(() =>
      this.#stripe.checkout.sessions.create(
        {
          mode: "subscription",
          customer: input.customerId,
          client_reference_id: input.tenantId,
          line_items: [{ price: input.priceId, quantity: 1 }],
          subscription_data: {
            metadata: { tenant_id: input.tenantId },
            ...(input.trialDays > 0 ? { trial_period_days: input.trialDays } : {}),
          },
          metadata: { tenant_id: input.tenantId },
          success_url: input.successUrl,
          cancel_url: input.cancelUrl,
        },
        { idempotencyKey: input.idempotencyKey },
      ),
    );
    if (session.url === null)
      throw new BillingGatewayError("Stripe returned a checkout session without a URL", {
        retryable: false,
      });
    return { sessionId: session.id, url: session.url };
  }

  async createPortalSession(input: {
    customerId: string;
    returnUrl: string;
    idempotencyKey: string;
  }): Promise<{ url: string }> {
    const session = await call(() =>
      this.#stripe.billingPortal.sessions.create(
        { customer: input.customerId, return_url: input.returnUrl },
        { idempotencyKey: input.idempotencyKey },
      ),
    );
    return { url: session.url };
  }

  async retrieveSubscription(subscriptionId: string): Promise<SubscriptionSnapshot | null> {
    const subscription = await callOrMissing(() =>
      this.#stripe.subscriptions.retrieve(subscriptionId),
    );
    if (subscription === null) return null;
    const item = subscription.items.data[0];
    const customer = subscription.customer;
    return {
      id: subscription.id,
      customerId: typeof customer === "string" ? customer : customer.id,
      status: subscription.status,
      priceId: item?.price.id ?? null,
      currentPeriodEnd:
        item?.current_period_end === undefined ? null : new Date(item.current_period_end * 1000),
      cancelAtPeriodEnd: subscription.cancel_at_period_end,
      tenantIdHint: subscription.metadata.tenant_id ?? null,
      createdAt: new Date(subscription.created * 1000),
    };
  }

  async retrieveCheckoutSession(sessionId: string): Promise<CheckoutSessionSnapshot | null> {
    const session = await callOrMissing(() => this.#stripe.checkout.sessions.retrieve(sessionId));
    if (session === null) return null;
    const idOf = (value: string | { id: string } | null): string | null =>
      value === null ? null : typeof value === "string" ? value : value.id;
    return {
      id: session.id,
      clientReferenceId: session.client_reference_id,
      customerId: idOf(session.customer),
      subscriptionId: idOf(session.subscription),
      status: session.status ?? "open",
    };
  }

  async reportMeterEvent(input: {
    eventName: string;
    customerId: string;
    value: number;
    identifier: string;
    timestamp: Date;
  }): Promise<"recorded" | "duplicate"> {
    try {
      await call(() =>
        this.#stripe.billing.meterEvents.create(
          {
            event_name: input.eventName,
            payload: { stripe_customer_id: input.customerId, value: String(input.value) },
            identifier: input.identifier,
            timestamp: Math.floor(input.timestamp.getTime() / 1000),
          },
          // The identifier already makes the event count once; the key makes a retried
          // request replay its first answer instead of meeting the duplicate check.
          { idempotencyKey: `meter:${input.identifier}` },
        ),
      );
      return "recorded";
    } catch (error) {
      if (error instanceof BillingGatewayError && error.stripeCode === "resource_already_exists")
        return "duplicate";
      throw error;
    }
  }

  async verifyWebhook(
    rawBody: Buffer,
    signatureHeader: string | undefined,
  ): Promise<VerifiedEvent> {
    if (signatureHeader === undefined || signatureHeader === "")
      throw new WebhookRejected("missing Stripe-Signature header");
    let event: unknown;
    try {
      event = await this.#stripe.webhooks.constructEventAsync(
        rawBody,
        signatureHeader,
        this.#webhookSecret,
        WEBHOOK_TOLERANCE_SECONDS,
      );
    } catch (error) {
      // The SDK says whether the signature, the timestamp or the JSON was wrong; never the secret.
      throw new WebhookRejected(
        error instanceof Stripe.errors.StripeSignatureVerificationError
          ? `signature verification failed: ${error.message.split("\n")[0]?.split(" Are you")[0] ?? ""}`
          : "the payload is not valid JSON",
      );
    }
    const parsed = EventShape.safeParse(event);
    if (!parsed.success) throw new WebhookRejected("the payload is not a Stripe event");
    const object = parsed.data.data.object;
    return {
      id: parsed.data.id,
      type: parsed.data.type,
      objectId: object.id ?? null,
      subscriptionId: subscriptionIdIn(parsed.data.type, object),
    };
  }
}

/** The subscription an event's object names: the object itself, or a session's or invoice's. */
function subscriptionIdIn(
  type: string,
  object: { id?: string | undefined; subscription?: unknown; parent?: unknown },
): string | null {
  if (type.startsWith("customer.subscription.")) return object.id ?? null;
  // A hint only (Stripe is re-read): one that is not a Stripe id is dropped.
  const idOf = (value: unknown): string | null => {
    const id = typeof value === "object" && value !== null ? (value as { id?: unknown }).id : value;
    return typeof id === "string" && STRIPE_OBJECT_ID.test(id) ? id : null;
  };
  const direct = idOf(object.subscription);
  if (direct !== null) return direct;
  // Invoices (API 2025-03 and later) name their subscription under parent.subscription_details.
  const parent = object.parent as { subscription_details?: { subscription?: unknown } } | null;
  return idOf(parent?.subscription_details?.subscription);
}

/** Runs an SDK call, turning Stripe's errors into BillingGatewayErrors (no secrets in messages). */
async function call<T>(request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (error) {
    if (error instanceof Stripe.errors.StripeError) {
      const retryable =
        error instanceof Stripe.errors.StripeConnectionError ||
        error instanceof Stripe.errors.StripeAPIError ||
        error instanceof Stripe.errors.StripeRateLimitError ||
        (error.statusCode ?? 0) >= 500;
      throw new BillingGatewayError(`Stripe: ${error.message}`, {
        retryable,
        code: error.code,
      });
    }
    throw new BillingGatewayError(
      `Stripe: ${error instanceof Error ? error.message : "request failed"}`,
      { retryable: true },
    );
  }
}

/** As call, but a missing object (404, resource_missing) is null. */
async function callOrMissing<T>(request: () => Promise<T>): Promise<T | null> {
  try {
    return await call(request);
  } catch (error) {
    if (error instanceof BillingGatewayError && error.stripeCode === "resource_missing")
      return null;
    throw error;
  }
}
