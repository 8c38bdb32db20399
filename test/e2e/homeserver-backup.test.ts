import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sqliteHomeserverDatabases } from "../../src/provisioning/homeserver-database-backup.ts";
import { loginWithPassword } from "../../src/synapse/admin-api.ts";
import { startTestHomeserver, type TestHomeserver } from "../support/synapse.ts";

/** Synapse's first start (schema creation) takes a few seconds on SQLite. */
const SYNAPSE_TIMEOUT_MS = 120_000;

describe("a running Synapse's SQLite database, backed up and restored", () => {
  let hs: TestHomeserver;
  let out: string;

  beforeAll(async () => {
    hs = await startTestHomeserver({ database: "sqlite" });
    out = await mkdtemp(join(tmpdir(), "switchboard-hs-backup-"));
  }, SYNAPSE_TIMEOUT_MS);
  afterAll(async () => {
    await hs.stop();
    await rm(out, { recursive: true, force: true });
  });

  it(
    "dumps while Synapse runs; after a restore the homeserver has exactly the backup's users",
    async () => {
      const alice = await hs.registerUser("alice");
      // The local driver's layout: <homeservers>/<slug>/homeserver.db.
      const databases = sqliteHomeserverDatabases(dirname(hs.dataDir));
      const tenant = { id: "00000000-0000-4000-8000-000000000001", slug: basename(hs.dataDir) };
      expect(await databases.dump(tenant, out)).toBe("homeserver.db");

      const bob = await hs.registerUser("bob");
      await hs.synapse.stop();
      await databases.restore(tenant, join(out, "homeserver.db"));
      await hs.synapse.start();

      const again = await loginWithPassword(hs.clientUrl, alice.userId, alice.password);
      expect(again.userId).toBe(alice.userId);
      await expect(loginWithPassword(hs.clientUrl, bob.userId, bob.password)).rejects.toThrow();
    },
    SYNAPSE_TIMEOUT_MS,
  );
});
