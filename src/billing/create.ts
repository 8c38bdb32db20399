import type { Knex } from "knex";
import type { Mailer } from "../accounts/mailer.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../shared/logger.ts";
import { tenantHolds } from "../tenants/holds.ts";
import { BillingNotices } from "./notices.ts";
import { Billing } from "./service.ts";
import { StripeSdkGateway } from "./stripe-gateway.ts";
import type { PlanChanger } from "./types.ts";

/** Billing as the composition root wires it: on with billing.stripe.secretKey, off without. */
export function createBilling(deps: {
  readonly config: Readonly<Config>;
  readonly db: Knex;
  readonly log: Logger;
  readonly mailer: Mailer;
  readonly publicUrl: string;
  readonly planChanges: PlanChanger;
}): Billing {
  const stripe = deps.config.billing.stripe;
  const gateway =
    stripe.secretKey === undefined || stripe.webhookSecret === undefined
      ? null
      : new StripeSdkGateway({
          secretKey: stripe.secretKey,
          webhookSecret: stripe.webhookSecret,
          apiUrl: stripe.apiUrl,
        });
  return new Billing({
    config: deps.config,
    db: deps.db,
    log: deps.log,
    publicUrl: deps.publicUrl,
    gateway,
    holds: tenantHolds,
    planChanges: deps.planChanges,
    notices: new BillingNotices(deps),
  });
}
