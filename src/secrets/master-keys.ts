import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../shared/logger.ts";
import { SecretCipher } from "./cipher.ts";

const GENERATED_KEYS_FILE = "master-keys.json";

/**
 * The cipher for secrets at rest. Configured keys win; without any (the
 * embedded mode), a key is generated once into <dataDir>/master-keys.json
 * (mode 0600) so a fresh machine works and restarts can still decrypt.
 */
export async function loadCipher(config: Readonly<Config>, log: Logger): Promise<SecretCipher> {
  const { masterKeys, activeKeyId } = config.secrets;
  const ids = Object.keys(masterKeys);
  if (ids.length > 0) return new SecretCipher(masterKeys, activeKeyId ?? (ids[0] as string));

  const file = join(config.dataDir, GENERATED_KEYS_FILE);
  try {
    const stored = JSON.parse(await readFile(file, "utf8")) as {
      activeKeyId: string;
      keys: Record<string, string>;
    };
    return new SecretCipher(stored.keys, stored.activeKeyId);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const keys = { local: randomBytes(32).toString("base64") };
  await mkdir(config.dataDir, { recursive: true });
  await writeFile(file, JSON.stringify({ activeKeyId: "local", keys }, null, 2), {
    mode: 0o600,
    flag: "wx",
  });
  log.warn(
    { file },
    "no master key configured: generated one for this data directory (set SWITCHBOARD_MASTER_KEY in production)",
  );
  return new SecretCipher(keys, "local");
}
