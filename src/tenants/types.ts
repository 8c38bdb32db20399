import type { TenantId } from "../shared/ids.ts";

/** provisioning: its homeserver is being set up; active: running; suspended: agents stopped, data kept. */
export type TenantStatus = "provisioning" | "active" | "suspended";

export interface Tenant {
  readonly id: TenantId;
  /** URL-safe short name; unique. */
  readonly slug: string;
  readonly name: string;
  readonly status: TenantStatus;
  /** A plan id from config.plans. */
  readonly plan: string;
  /** Set once deletion was requested: the data is erased after this time. */
  readonly deleteAfter: Date | null;
  readonly createdAt: Date;
}

/** The tenant's homeserver as the runtime needs it, with secrets decrypted. */
export interface TenantHomeserver {
  readonly tenantId: TenantId;
  readonly serverName: string;
  /** Client-server API base URL reachable from the runtime. */
  readonly clientUrl: string;
  readonly registrationId: string;
  readonly asToken: string;
  readonly hsToken: string;
  readonly hsTokenSha256: string;
}
