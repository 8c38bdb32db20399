import type { Knex } from "knex";
import * as m001 from "./001_foundation.ts";
import * as m002 from "./002_memory.ts";
import * as m003 from "./003_memory_indexes.ts";
import * as m004 from "./004_user_activity.ts";
import * as m005 from "./005_chat_admin.ts";
import * as m006 from "./006_portal.ts";
import * as m007 from "./007_members.ts";
import * as m008 from "./008_tenant_deletion.ts";
import * as m009 from "./009_audit_keyset.ts";
import * as m010 from "./010_billing.ts";
import * as m011 from "./011_tenant_holds.ts";
import * as m012 from "./012_managed_usage.ts";
import * as m013 from "./013_provisioning.ts";
import * as m014 from "./014_backups_health.ts";
import * as m015 from "./015_bridges.ts";
import * as m016 from "./016_same_tenant_references.ts";

interface Migration {
  readonly name: string;
  up(knex: Knex): Promise<void>;
}

/**
 * Every migration, in order. Forward-only: a migration is never edited once
 * released and never rolled back; a fix is a new, higher-numbered migration.
 */
export const MIGRATIONS: readonly Migration[] = [
  { name: "001_foundation", up: m001.up },
  { name: "002_memory", up: m002.up },
  { name: "003_memory_indexes", up: m003.up },
  { name: "004_user_activity", up: m004.up },
  { name: "005_chat_admin", up: m005.up },
  { name: "006_portal", up: m006.up },
  { name: "007_members", up: m007.up },
  { name: "008_tenant_deletion", up: m008.up },
  { name: "009_audit_keyset", up: m009.up },
  { name: "010_billing", up: m010.up },
  { name: "011_tenant_holds", up: m011.up },
  { name: "012_managed_usage", up: m012.up },
  { name: "013_provisioning", up: m013.up },
  { name: "014_backups_health", up: m014.up },
  { name: "015_bridges", up: m015.up },
  { name: "016_same_tenant_references", up: m016.up },
];
