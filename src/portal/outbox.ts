import { join } from "node:path";
import type { Config } from "../config/schema.ts";

/** Where mails go when no SMTP server is configured. */
export function outboxDir(config: Readonly<Config>): string {
  return join(config.dataDir, "outbox");
}
