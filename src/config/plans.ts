import { z } from "zod";

/**
 * Plans: what each tier of the product includes. Defined in config (the
 * operator can change limits and Stripe prices without a release); these
 * defaults follow the product's price list.
 */

/** A plan's limits; null means unlimited. */
export const PlanSchema = z.strictObject({
  name: z.string().min(1).max(64),
  agents: z.number().int().min(0).nullable(),
  messagesPerDay: z.number().int().min(0).nullable(),
  /** Tokens per month on the operator's managed model key. */
  managedTokensPerMonth: z.number().int().min(0).nullable(),
  storageGb: z.number().min(0).nullable(),
  /** Bridges (Slack, Discord, Telegram) the tenant may run at once. */
  bridges: z.number().int().min(0).nullable().default(0),
  /** Resources of the tenant's homeserver. */
  homeserver: z
    .strictObject({
      memoryMb: z.number().int().min(128).max(262_144),
      cpus: z.number().min(0.1).max(64),
    })
    .default({ memoryMb: 512, cpus: 0.5 }),
  /** Whether the tenant must bring its own model key. */
  requiresOwnKey: z.boolean().default(false),
  /** The Stripe price of the plan's subscription; absent for free and custom plans. */
  stripePriceId: z
    .string()
    .regex(/^price_[A-Za-z0-9_]+$/, "must be a Stripe price id (price_…)")
    .optional(),
  trialDays: z.number().int().min(0).max(730).default(0),
  /** Managed-key tokens beyond managedTokensPerMonth are billed (reported to the Stripe meter) instead of refused. */
  billsOverage: z.boolean().default(false),
});
export type Plan = z.infer<typeof PlanSchema>;

export const DEFAULT_PLANS: Record<string, Plan> = {
  free: {
    name: "Free",
    agents: 1,
    messagesPerDay: 100,
    managedTokensPerMonth: 200_000,
    storageGb: 1,
    bridges: 0,
    homeserver: { memoryMb: 512, cpus: 0.5 },
    requiresOwnKey: false,
    trialDays: 0,
    billsOverage: false,
  },
  starter: {
    name: "Starter",
    agents: 3,
    messagesPerDay: 1_000,
    managedTokensPerMonth: 2_000_000,
    storageGb: 10,
    bridges: 1,
    homeserver: { memoryMb: 1024, cpus: 1 },
    requiresOwnKey: false,
    trialDays: 14,
    billsOverage: true,
  },
  pro: {
    name: "Professional",
    agents: 10,
    messagesPerDay: 10_000,
    managedTokensPerMonth: 20_000_000,
    storageGb: 100,
    bridges: 3,
    homeserver: { memoryMb: 2048, cpus: 2 },
    requiresOwnKey: false,
    trialDays: 14,
    billsOverage: true,
  },
  enterprise: {
    name: "Enterprise",
    agents: null,
    messagesPerDay: null,
    managedTokensPerMonth: null,
    storageGb: null,
    bridges: null,
    homeserver: { memoryMb: 4096, cpus: 4 },
    requiresOwnKey: false,
    trialDays: 0,
    billsOverage: false,
  },
};
