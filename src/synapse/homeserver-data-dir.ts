import { randomBytes } from "node:crypto";
import {
  chmod,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { AppError } from "../shared/errors.ts";
import {
  DATA_DIR_LAYOUT,
  renderHomeserverConfig,
  validateRegistrationFileName,
  type HomeserverSecrets,
  type HomeserverSpec,
} from "./homeserver-config.ts";

/**
 * The files in a homeserver's data directory that Switchboard owns. Synapse
 * owns the rest (signing key, SQLite database, media store).
 */

const SECRET_BYTES = 32;
/** Config, secrets and registrations hold credentials: owner-only. */
const PRIVATE_FILE_MODE = 0o600;
const PRIVATE_DIR_MODE = 0o700;

function isMissing(error: unknown): boolean {
  return error instanceof Error && "code" in error && error.code === "ENOENT";
}

/** Writes through a temporary file so a crash never leaves a half-written file behind. */
async function writePrivateFile(path: string, text: string): Promise<void> {
  const temporary = `${path}.tmp-${process.pid}`;
  await writeFile(temporary, text, { mode: PRIVATE_FILE_MODE });
  await chmod(temporary, PRIVATE_FILE_MODE);
  await rename(temporary, path);
}

function parseSecrets(text: string, path: string): HomeserverSecrets {
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed === "object" && parsed !== null) {
    const { macaroonSecretKey, formSecret } = parsed as Record<string, unknown>;
    if (typeof macaroonSecretKey === "string" && typeof formSecret === "string") {
      return { macaroonSecretKey, formSecret };
    }
  }
  throw new AppError("internal", `${path} does not hold macaroonSecretKey and formSecret`);
}

/**
 * The homeserver's secrets, generated on first use and then read back, so
 * that access tokens stay valid across restarts.
 */
export async function loadOrCreateSecrets(dataDir: string): Promise<HomeserverSecrets> {
  const path = join(dataDir, DATA_DIR_LAYOUT.secrets);
  try {
    return parseSecrets(await readFile(path, "utf8"), path);
  } catch (error) {
    if (!isMissing(error)) throw error;
  }
  const secrets: HomeserverSecrets = {
    macaroonSecretKey: randomBytes(SECRET_BYTES).toString("base64url"),
    formSecret: randomBytes(SECRET_BYTES).toString("base64url"),
  };
  await writePrivateFile(path, `${JSON.stringify(secrets, null, 2)}\n`);
  return secrets;
}

/**
 * Makes the registration directory hold exactly the given files: new and
 * changed ones are written, files of removed registrations are deleted.
 */
export async function writeRegistrations(
  dataDir: string,
  registrations: Readonly<Record<string, string>>,
): Promise<void> {
  for (const name of Object.keys(registrations)) validateRegistrationFileName(name);
  const dir = join(dataDir, DATA_DIR_LAYOUT.appservices);
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  for (const [name, text] of Object.entries(registrations))
    await writePrivateFile(join(dir, name), text);
  for (const name of await readdir(dir)) {
    if (name.endsWith(".yaml") && !Object.hasOwn(registrations, name))
      await rm(join(dir, name), { force: true });
  }
}

/**
 * Brings the data directory up to date for a start: directories, secrets,
 * registrations, logging config and a freshly rendered homeserver.yaml.
 * The template directory holds homeserver.yaml and log.yaml.
 */
export async function prepareDataDir(
  spec: HomeserverSpec,
  registrations: Readonly<Record<string, string>>,
  templateDir: string,
): Promise<void> {
  await mkdir(spec.dataDir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await mkdir(join(spec.dataDir, DATA_DIR_LAYOUT.mediaStore), { recursive: true });
  const [template, logConfig, secrets] = await Promise.all([
    readFile(join(templateDir, "homeserver.yaml"), "utf8"),
    readFile(join(templateDir, "log.yaml"), "utf8"),
    loadOrCreateSecrets(spec.dataDir),
  ]);
  await writeRegistrations(spec.dataDir, registrations);
  const config = renderHomeserverConfig(
    template,
    { ...spec, appserviceRegistrations: registrations },
    secrets,
  );
  await writePrivateFile(join(spec.dataDir, DATA_DIR_LAYOUT.config), config);
  await writeFile(join(spec.dataDir, DATA_DIR_LAYOUT.logConfig), logConfig);
}

/** Size of a file in bytes, 0 when it does not exist yet. */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if (isMissing(error)) return 0;
    throw error;
  }
}

/** Bytes of log read to find the last lines; Synapse lines are rarely longer than 1 KiB. */
const LOG_TAIL_MAX_BYTES = 64 * 1024;

/** The last `maxLines` lines written to the log after byte `fromOffset`. */
export async function readLogTail(
  path: string,
  fromOffset: number,
  maxLines: number,
): Promise<string[]> {
  const size = await fileSize(path);
  const start = Math.max(fromOffset, size - LOG_TAIL_MAX_BYTES);
  if (size <= start) return [];
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(size - start);
    await handle.read(buffer, 0, buffer.length, start);
    return buffer.toString("utf8").trimEnd().split("\n").slice(-maxLines);
  } finally {
    await handle.close();
  }
}
