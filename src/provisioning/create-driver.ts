import type { Config } from "../config/schema.ts";
import { AppError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { HomeserverDriver } from "./driver.ts";
import { ComposeDriver } from "./compose-driver.ts";
import { LocalDriver } from "./local-driver.ts";

/**
 * What docker-driver.ts exports for this factory: a driver built from the
 * whole config (provisioning.docker.* keys belong to it) and a logger.
 */
export type DockerDriverFactory = (config: Readonly<Config>, logger: Logger) => HomeserverDriver;

/**
 * The driver provisioning.driver names. The docker driver is loaded only
 * when chosen (dockerode stays out of processes that do not use it), through
 * its `createDockerDriver` export; a build without it is a config error that
 * names the key.
 */
export async function createDriver(
  config: Readonly<Config>,
  logger: Logger,
): Promise<HomeserverDriver> {
  const { provisioning } = config;
  if (provisioning.driver === "local") {
    return new LocalDriver({
      dataDir: config.dataDir,
      chrootDir: config.synapse.chrootDir,
      bindHost: provisioning.local.bindHost,
      portRangeStart: provisioning.local.portRangeStart,
      portRangeEnd: provisioning.local.portRangeEnd,
      bridgeCommands: provisioning.local.bridgeCommands,
      logger,
    });
  }
  if (provisioning.driver === "compose") {
    const { compose } = provisioning;
    const adminUrl = compose.postgresAdminUrl ?? config.database.url;
    if (adminUrl === undefined)
      throw new AppError(
        "bad_request",
        "provisioning.driver compose needs PostgreSQL: set DATABASE_URL (or provisioning.compose.postgresAdminUrl)",
      );
    return new ComposeDriver({
      filesDir: compose.filesDir,
      homeserverUrl: compose.homeserverUrl,
      postgres: { adminUrl, host: compose.postgresHost, port: compose.postgresPort },
      logger,
    });
  }
  // A computed specifier: the module is optional at type-check time too.
  const specifier = new URL("./docker-driver.ts", import.meta.url).href;
  let factory: unknown;
  try {
    const module = (await import(specifier)) as { createDockerDriver?: unknown };
    factory = module.createDockerDriver;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ERR_MODULE_NOT_FOUND") throw error;
  }
  if (typeof factory !== "function")
    throw new AppError(
      "bad_request",
      'provisioning.driver: "docker" is not available in this build; use "local"',
    );
  return (factory as DockerDriverFactory)(config, logger);
}
