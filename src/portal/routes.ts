import { accountApi } from "./api/accounts.ts";
import { accountPages } from "./pages/accounts.ts";
import { homePages } from "./pages/home.ts";
import type { PortalApp, PortalDeps } from "./types.ts";

/** Every feature's pages and API routes, in one place. */
const FEATURES: readonly ((app: PortalApp, deps: PortalDeps) => void)[] = [
  homePages,
  accountPages,
  accountApi,
];

export function registerRoutes(app: PortalApp, deps: PortalDeps): void {
  for (const feature of FEATURES) feature(app, deps);
}
