import { accountApi } from "./api/accounts.ts";
import { accountPages } from "./pages/accounts.ts";
import { homePages } from "./pages/home.ts";
import { adminApi } from "./api/admin.ts";
import { auditApi } from "./api/audit.ts";
import { billingApi } from "./api/billing.ts";
import { billingPages } from "./pages/billing.ts";
import { usageApi } from "./api/usage.ts";
import { apiDocs } from "./docs.ts";
import { healthRoutes } from "./health.ts";
import { portalMetrics } from "./metrics.ts";
import { adminPages } from "./pages/admin.ts";
import { auditPages } from "./pages/audit.ts";
import { usagePages } from "./pages/usage.ts";
import { agentApi } from "./api/agents.ts";
import { memoryApi } from "./api/memory.ts";
import { tenantDeletionApi } from "./api/tenant-deletion.ts";
import { agentPages } from "./pages/agents.ts";
import { bridgeApi } from "./api/bridges.ts";
import { bridgePages } from "./pages/bridges.ts";
import { memoryPages } from "./pages/memory.ts";
import { settingsPages } from "./pages/settings.ts";
import { keyApi } from "./api/keys.ts";
import { memberApi } from "./api/members.ts";
import { tenantApi } from "./api/tenants.ts";
import { keyPages } from "./pages/keys.ts";
import { memberPages } from "./pages/members.ts";
import { tenantPages } from "./pages/tenants.ts";
import type { PortalApp, PortalDeps } from "./types.ts";

/** Every feature's pages and API routes, in one place. */
const FEATURES: readonly ((app: PortalApp, deps: PortalDeps) => void)[] = [
  // First: its request hooks see every route.
  portalMetrics,
  healthRoutes,
  // Early: its hook puts the past-due banner on every tenant page.
  billingPages,
  billingApi,
  homePages,
  accountPages,
  accountApi,
  tenantPages,
  tenantApi,
  memberPages,
  memberApi,
  keyPages,
  keyApi,
  usagePages,
  usageApi,
  auditPages,
  auditApi,
  adminPages,
  adminApi,
  agentPages,
  agentApi,
  memoryPages,
  memoryApi,
  bridgePages,
  bridgeApi,
  settingsPages,
  tenantDeletionApi,
  apiDocs,
];

export function registerRoutes(app: PortalApp, deps: PortalDeps): void {
  for (const feature of FEATURES) feature(app, deps);
}
