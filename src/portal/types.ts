import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { Knex } from "knex";
import type { AccountService } from "../accounts/service.ts";
import type { Account } from "../accounts/types.ts";
import type { Mailer } from "../accounts/mailer.ts";
import type { AgentAvatars } from "../agents/avatar.ts";
import type { AgentService } from "../agents/service.ts";
import type { Billing } from "../billing/service.ts";
import type { BridgeService } from "../bridges/service.ts";
import type { TenantBackups } from "../provisioning/backups.ts";
import type { Config } from "../config/schema.ts";
import type { MemoryService } from "../memory/service.ts";
import type { SecretCipher } from "../secrets/cipher.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type { ApiTokens } from "../tenants/api-tokens.ts";
import type { HomeserverAdmins } from "../tenants/homeserver-admin.ts";
import type { MemberService } from "../tenants/members.ts";
import type { TenantOnboarding } from "../tenants/onboarding.ts";
import type { ProviderKeys } from "../tenants/provider-keys.ts";
import type { TenantRepository } from "../tenants/repository.ts";
import type { TenantService } from "../tenants/service.ts";
import type { SessionStore } from "./auth/sessions.ts";
import type { Registry } from "prom-client";

/** The portal's Fastify instance, typed by its Zod schemas. */
export type PortalApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

/** Who is making a request: a signed-in account (cookie) or an API token (bearer). */
export type Principal =
  | { readonly kind: "account"; readonly account: Account; readonly sessionIdSha256: string }
  | {
      readonly kind: "token";
      readonly tokenId: string;
      readonly tenantId: TenantId;
      readonly name: string;
    };

/** What the portal's routes work with; built once in the composition root. */
export interface PortalDeps {
  readonly config: Readonly<Config>;
  readonly log: Logger;
  readonly db: Knex;
  readonly cipher: SecretCipher;
  readonly mailer: Mailer;
  readonly accounts: AccountService;
  readonly sessions: SessionStore;
  readonly apiTokens: ApiTokens;
  readonly tenants: TenantService;
  readonly tenantRepository: TenantRepository;
  /** Creating tenants from the portal and their overview. */
  readonly onboarding: TenantOnboarding;
  /** Members, roles, linked Matrix IDs and invitations. */
  readonly members: MemberService;
  readonly agents: AgentService;
  readonly providerKeys: ProviderKeys;
  readonly memory: MemoryService;
  /** Agent avatars: uploaded to the tenant's homeserver, then set on the agent. */
  readonly avatars: AgentAvatars;
  /** Plans and Stripe billing (checkout, customer portal, webhooks); off without Stripe keys. */
  readonly billing: Billing;
  readonly homeserverAdmins: HomeserverAdmins;
  /** Connecting, inspecting and disconnecting Slack, Discord and Telegram. */
  readonly bridges: BridgeService;
  /** Per-tenant backups: the admin area's last backup and "back up now". */
  readonly backups: TenantBackups;
  /** Registries whose metrics /metrics serves beside the portal's own (e.g. the runtime's). */
  readonly metricsRegistries: readonly Registry[];
  /** The portal's base URL as people reach it. */
  readonly publicUrl: string;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the auth hook; null for anonymous requests. */
    principal: Principal | null;
    /** The browser's random id (the sb_csrf cookie) that CSRF tokens are bound to. */
    browserId: string;
  }
}
