import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import pg from "pg";
import { AppError } from "../shared/errors.ts";

/**
 * A tenant homeserver's database and owner role on the shared PostgreSQL
 * server. The role's password is sent as a SCRAM-SHA-256 verifier computed
 * here, so the plaintext never reaches the server (nor its statement log);
 * the plaintext is derived from the tenant's encrypted shared secret
 * (docker-stack.ts databasePassword), so nothing new is stored.
 */

const SCRAM_ITERATIONS = 4096;
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const DUPLICATE_DATABASE = "42P04";
const DUPLICATE_OBJECT = "42710";

function quoteIdentifier(name: string): string {
  if (!IDENTIFIER.test(name)) throw new AppError("bad_request", `invalid database name "${name}"`);
  return `"${name}"`;
}

/** PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5803 layout). */
export function scramVerifier(password: string, salt = randomBytes(16)): string {
  const salted = pbkdf2Sync(password, salt, SCRAM_ITERATIONS, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${SCRAM_ITERATIONS}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

function pgCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error
    ? String(error.code)
    : undefined;
}

/** Runs `run` on a connection to the shared server as its admin; the error never names the URL. */
export async function withAdmin<T>(
  adminUrl: string,
  run: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  try {
    await client.connect();
  } catch (error) {
    // The URL may carry a password: name the failure, not the URL.
    throw new AppError(
      "unavailable",
      "cannot connect to the PostgreSQL server for tenant databases",
      {
        cause: error,
      },
    );
  }
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** Creates the role and database if absent and (re)sets the role's password. Idempotent. */
export async function ensureTenantDatabase(
  adminUrl: string,
  name: string,
  password: string,
): Promise<{ created: boolean }> {
  const id = quoteIdentifier(name);
  // The verifier holds only base64, digits, "$" and ":": safe inside a literal (DDL takes no parameters).
  const verifier = scramVerifier(password);
  return withAdmin(adminUrl, async (client) => {
    try {
      await client.query(`CREATE ROLE ${id} LOGIN PASSWORD '${verifier}'`);
    } catch (error) {
      if (pgCode(error) !== DUPLICATE_OBJECT) throw error;
      await client.query(`ALTER ROLE ${id} LOGIN PASSWORD '${verifier}'`);
    }
    const existing = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (existing.rowCount !== null && existing.rowCount > 0) return { created: false };
    try {
      // Synapse refuses databases whose collation is not C.
      await client.query(
        `CREATE DATABASE ${id} OWNER ${id} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
      );
      return { created: true };
    } catch (error) {
      if (pgCode(error) === DUPLICATE_DATABASE) return { created: false };
      throw error;
    }
  });
}

/** Drops the database (disconnecting its sessions) and its role. Absent is fine. */
export async function dropTenantDatabase(adminUrl: string, name: string): Promise<void> {
  const id = quoteIdentifier(name);
  await withAdmin(adminUrl, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${id} WITH (FORCE)`);
    await client.query(`DROP ROLE IF EXISTS ${id}`);
  });
}
