import type Docker from "dockerode";
import { AppError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { engineError, statusOf, tolerant } from "./docker-errors.ts";
import { LABEL, type ContainerBody } from "./docker-stack.ts";

/** One tenant container as the drivers want it: made from `body`, whose LABEL.specHash covers it. */
export interface WantedContainer {
  readonly name: string;
  readonly tenantId: TenantId;
  readonly body: ContainerBody;
  /** What the container runs, for log lines ("homeserver", "bridge"). */
  readonly noun: string;
}

export interface EnsuredContainer {
  readonly info: Docker.ContainerInspectInfo;
  /** True when this call went through create (also when an earlier pass had just made it: 409). */
  readonly created: boolean;
}

/**
 * Makes sure a container named `wanted.name` exists with the wanted spec
 * hash, without starting it. A container of that name made for another
 * tenant is refused (bad_request); one with another spec hash is removed
 * and made again (containers are disposable, their volumes keep the data).
 * Create is a POST with `{ _query, _body }` so nothing lands in the URL.
 */
export async function ensureContainer(
  docker: Docker,
  wanted: WantedContainer,
  log: Logger,
): Promise<EnsuredContainer> {
  const { name, body, noun } = wanted;
  const existing = await inspectContainer(docker, name);
  if (existing !== undefined) {
    if (existing.Config.Labels[LABEL.tenant] !== wanted.tenantId)
      throw new AppError(
        "bad_request",
        `docker: container ${name} exists but was not made for this tenant`,
      );
    if (existing.Config.Labels[LABEL.specHash] === body.Labels[LABEL.specHash])
      return { info: existing, created: false };
    log.info({ container: name }, `${noun} container out of date: recreating`);
    await tolerant("remove container", () => docker.getContainer(name).remove({ force: true }));
  }
  try {
    await docker.createContainer({ _query: { name }, _body: body } as never);
    log.info({ container: name, image: body.Image }, `created ${noun} container`);
  } catch (error) {
    // 409: made by an earlier pass that crashed before starting it.
    if (statusOf(error) !== 409) throw engineError("create container", error);
  }
  const info = await inspectContainer(docker, name);
  if (info === undefined)
    throw new AppError("unavailable", `docker: container ${name} vanished after create`);
  return { info, created: true };
}

function inspectContainer(
  docker: Docker,
  ref: string,
): Promise<Docker.ContainerInspectInfo | undefined> {
  return tolerant("inspect container", () => docker.getContainer(ref).inspect());
}
