import type { Knex } from "knex";
import type { BridgeNetwork } from "../../src/bridges/networks.ts";
import { bridgeStore } from "../../src/bridges/repository.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import type { SecretCipher } from "../../src/secrets/cipher.ts";
import type { TenantId } from "../../src/shared/ids.ts";

/**
 * A bridge row as BridgeService.connect leaves it, for tests of what
 * happens after (the relay account, bridged rooms): placeholder credentials
 * and tokens, encrypted with `cipher` (or stored as given without one, for
 * tests that never decrypt them).
 */
export async function seedBridgeRow(
  db: Knex,
  tenantId: TenantId,
  network: BridgeNetwork,
  cipher?: SecretCipher,
): Promise<void> {
  const seal = (value: string): string => cipher?.encrypt(value) ?? value;
  await withTenant(db, tenantId, (trx) =>
    bridgeStore.upsertCredentials(trx, {
      tenantId,
      network,
      credentialsEncrypted: seal("{}"),
      fresh: { asToken: seal("as"), hsToken: seal("hs"), provisioningSecret: seal("provisioning") },
    }),
  );
}
