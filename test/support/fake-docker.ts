import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A Docker Engine API server for tests on a temporary UNIX socket, speaking
 * the wire protocol dockerode uses: optional `/v1.NN` path prefix, JSON
 * bodies, `filters` as a JSON query parameter, errors as `{ message }` with
 * the engine's status codes (201 created, 204 done, 304 already
 * started/stopped, 404 no such object, 409 name conflict or in use).
 * It keeps networks, volumes, images and containers in memory, records every
 * request for assertions, and lets tests play container states (health,
 * exit, disappearance) and inject engine errors.
 */

export interface RecordedDockerRequest {
  readonly method: string;
  /** Path with query string, as sent (including the version prefix). */
  readonly url: string;
  /** Path without the version prefix and query, e.g. /containers/create. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Parsed JSON body, or undefined (archives are kept in `rawBody` only). */
  readonly body: unknown;
  readonly rawBody: Buffer;
  readonly status: number;
}

export type FakeHealth = "starting" | "healthy" | "unhealthy";

export interface FakeContainer {
  readonly Id: string;
  Name: string;
  Created: string;
  Config: Record<string, unknown> & { Image: string; Labels: Record<string, string> };
  HostConfig: Record<string, unknown>;
  NetworkingConfig: Record<string, unknown> | undefined;
  State: {
    Status: "created" | "running" | "exited" | "restarting";
    Running: boolean;
    ExitCode: number;
    OOMKilled: boolean;
    Health?: { Status: FakeHealth; FailingStreak: number; Log: { Output: string }[] };
  };
  RestartCount: number;
  /** Files uploaded with PUT /containers/{id}/archive, by absolute path. */
  readonly files: Map<string, { content: string; mode: number; uid: number }>;
}

interface FakeObject {
  readonly Id: string;
  readonly Name: string;
  readonly Labels: Record<string, string>;
  readonly body: Record<string, unknown>;
}

interface InjectedFailure {
  readonly method: string;
  readonly path: RegExp;
  readonly status: number;
  readonly message: string;
}

export interface FakeDockerOptions {
  /** Images already present (pulls are not needed for them). */
  readonly images?: readonly string[];
  /** Health a container with a health check gets when it starts (default healthy). */
  readonly healthOnStart?: FakeHealth;
}

class EngineError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const hexId = (): string => randomBytes(32).toString("hex");

function matchesLabelFilters(labels: Record<string, string>, query: URLSearchParams): boolean {
  const raw = query.get("filters");
  if (raw === null) return true;
  const filters = JSON.parse(raw) as Record<string, string[] | Record<string, boolean>>;
  const wanted = filters.label ?? [];
  const list = Array.isArray(wanted) ? wanted : Object.keys(wanted);
  return list.every((filter) => {
    const [key, ...rest] = filter.split("=");
    if (key === undefined) return false;
    return rest.length === 0 ? Object.hasOwn(labels, key) : labels[key] === rest.join("=");
  });
}

/** Reads the regular files of a ustar archive (what docker's archive endpoint accepts). */
function readTar(archive: Buffer): { path: string; content: string; mode: number; uid: number }[] {
  const files = [];
  let offset = 0;
  while (offset + 512 <= archive.length) {
    const header = archive.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) break;
    const field = (start: number, length: number): string =>
      header
        .subarray(start, start + length)
        .toString("utf8")
        .replace(/\0.*$/s, "");
    const name = field(0, 100);
    const prefix = field(345, 155);
    const size = Number.parseInt(field(124, 12).trim() || "0", 8);
    const type = field(156, 1);
    offset += 512;
    if (type === "0" || type === "") {
      files.push({
        path: prefix === "" ? name : `${prefix}/${name}`,
        content: archive.subarray(offset, offset + size).toString("utf8"),
        mode: Number.parseInt(field(100, 8).trim(), 8),
        uid: Number.parseInt(field(108, 8).trim(), 8),
      });
    }
    offset += Math.ceil(size / 512) * 512;
  }
  return files;
}

export class FakeDockerEngine {
  readonly socketPath: string;
  readonly requests: RecordedDockerRequest[] = [];
  readonly containers = new Map<string, FakeContainer>();
  readonly networks = new Map<string, FakeObject>();
  readonly volumes = new Map<string, FakeObject>();
  readonly images = new Set<string>();
  healthOnStart: FakeHealth;
  readonly #server: Server;
  readonly #dir: string;
  readonly #failures: InjectedFailure[] = [];

  private constructor(dir: string, options: FakeDockerOptions) {
    this.#dir = dir;
    this.socketPath = join(dir, "docker.sock");
    for (const image of options.images ?? []) this.images.add(image);
    this.healthOnStart = options.healthOnStart ?? "healthy";
    this.#server = createServer((request, response) => void this.#handle(request, response));
  }

  static async start(options: FakeDockerOptions = {}): Promise<FakeDockerEngine> {
    const dir = await mkdtemp(join(tmpdir(), "fake-docker-"));
    const engine = new FakeDockerEngine(dir, options);
    await new Promise<void>((resolve) => engine.#server.listen(engine.socketPath, resolve));
    return engine;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await rm(this.#dir, { recursive: true, force: true });
  }

  /** The container by id, id prefix or name (with or without the leading slash). */
  container(ref: string): FakeContainer | undefined {
    const name = ref.startsWith("/") ? ref : `/${ref}`;
    for (const container of this.containers.values()) {
      if (container.Name === name || container.Id === ref) return container;
      if (ref.length >= 12 && container.Id.startsWith(ref)) return container;
    }
    return undefined;
  }

  setHealth(ref: string, status: FakeHealth, output = ""): void {
    const container = this.#mustContainer(ref);
    container.State.Health = {
      Status: status,
      FailingStreak: status === "unhealthy" ? 3 : 0,
      Log: [{ Output: output }],
    };
  }

  /** The process ends (crash, OOM); with `restarting` the engine keeps restarting it. */
  exit(ref: string, exitCode: number, restarting = false): void {
    const container = this.#mustContainer(ref);
    container.State = {
      Status: restarting ? "restarting" : "exited",
      Running: false,
      ExitCode: exitCode,
      OOMKilled: exitCode === 137,
    };
    if (restarting) container.RestartCount += 5;
  }

  /** Someone removed the container behind the driver's back. */
  disappear(ref: string): void {
    this.containers.delete(this.#mustContainer(ref).Id);
  }

  /** The next request matching method and path fails with this status and message. */
  failNext(method: string, path: RegExp, status: number, message: string): void {
    this.#failures.push({ method, path, status, message });
  }

  /** Requests whose method and unversioned path match. */
  requestsTo(method: string, path: RegExp): RecordedDockerRequest[] {
    return this.requests.filter((r) => r.method === method && path.test(r.path));
  }

  #mustContainer(ref: string): FakeContainer {
    const container = this.container(ref);
    if (container === undefined) throw new Error(`fake docker: no container ${ref}`);
    return container;
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const rawBody = Buffer.concat(chunks);
    const url = new URL(request.url ?? "/", "http://docker");
    const path = url.pathname.replace(/^\/v\d+\.\d+/, "");
    const method = request.method ?? "GET";
    const isJson = (request.headers["content-type"] ?? "").includes("json");
    const body: unknown = isJson && rawBody.length > 0 ? JSON.parse(rawBody.toString()) : undefined;
    let status = 500;
    let payload: unknown;
    let stream: string[] | undefined;
    try {
      const failure = this.#failures.findIndex((f) => f.method === method && f.path.test(path));
      if (failure >= 0) {
        const [injected] = this.#failures.splice(failure, 1);
        throw new EngineError(injected?.status ?? 500, injected?.message ?? "injected");
      }
      const result = this.#route(method, path, url.searchParams, body, rawBody);
      status = result.status;
      payload = result.payload;
      stream = result.stream;
    } catch (error) {
      status = error instanceof EngineError ? error.status : 500;
      payload = { message: error instanceof Error ? error.message : String(error) };
    }
    this.requests.push({
      method,
      url: request.url ?? "",
      path,
      query: url.searchParams,
      body,
      rawBody,
      status,
    });
    if (stream !== undefined) {
      response.writeHead(status, { "Content-Type": "application/json" });
      for (const line of stream) response.write(`${line}\n`);
      response.end();
      return;
    }
    if (payload === undefined) {
      response.writeHead(status).end();
      return;
    }
    response.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(payload));
  }

  #route(
    method: string,
    path: string,
    query: URLSearchParams,
    body: unknown,
    rawBody: Buffer,
  ): { status: number; payload?: unknown; stream?: string[] } {
    const input = (body ?? {}) as Record<string, unknown>;
    const labelsOf = (value: unknown): Record<string, string> =>
      (value ?? {}) as Record<string, string>;
    let match: RegExpExecArray | null;

    if (method === "GET" && path === "/_ping") return { status: 200, payload: "OK" };

    // Images
    if (method === "POST" && path === "/images/create") {
      const image = `${query.get("fromImage") ?? ""}:${query.get("tag") ?? "latest"}`;
      if (image.includes("does-not-exist")) {
        throw new EngineError(404, `pull access denied for ${image}, repository does not exist`);
      }
      this.images.add(image);
      const layers = ["a1b2c3", "d4e5f6"];
      const lines = [{ status: `Pulling from ${query.get("fromImage")}`, id: query.get("tag") }];
      for (const id of layers) {
        for (const current of [0, 512, 1024])
          lines.push({
            status: "Downloading",
            progressDetail: { current, total: 1024 },
            id,
          } as never);
        lines.push({ status: "Pull complete", id });
      }
      if (image.includes("broken-pull")) {
        // The engine has already answered 200 when a layer fails: the error is the stream's last line.
        const error = "unexpected EOF";
        lines.push({ error, errorDetail: { message: error } } as never);
        this.images.delete(image);
      } else {
        lines.push({ status: `Status: Downloaded newer image for ${image}`, id: null });
      }
      return { status: 200, stream: lines.map((line) => JSON.stringify(line)) };
    }
    if (method === "GET" && (match = /^\/images\/(.+)\/json$/.exec(path))) {
      const name = decodeURIComponent(match[1] ?? "");
      if (!this.images.has(name)) throw new EngineError(404, `No such image: ${name}`);
      return { status: 200, payload: { Id: `sha256:${hexId()}`, RepoTags: [name] } };
    }

    // Networks and volumes share one shape: create, inspect, list, remove.
    for (const [kind, store] of [
      ["networks", this.networks],
      ["volumes", this.volumes],
    ] as const) {
      if (method === "POST" && path === `/${kind}/create`) {
        const name = typeof input.Name === "string" ? input.Name : "";
        const existing = store.get(name);
        if (existing !== undefined) {
          // Volumes are created idempotently by the engine; networks conflict.
          if (kind === "volumes") return { status: 201, payload: this.#volumeJson(existing) };
          throw new EngineError(409, `network with name ${name} already exists`);
        }
        const object = { Id: hexId(), Name: name, Labels: labelsOf(input.Labels), body: input };
        store.set(name, object);
        return {
          status: 201,
          payload: kind === "volumes" ? this.#volumeJson(object) : { Id: object.Id, Warning: "" },
        };
      }
      if (method === "GET" && path === `/${kind}`) {
        const listed = [...store.values()].filter((o) => matchesLabelFilters(o.Labels, query));
        return kind === "volumes"
          ? {
              status: 200,
              payload: { Volumes: listed.map((o) => this.#volumeJson(o)), Warnings: [] },
            }
          : { status: 200, payload: listed.map((o) => this.#networkJson(o)) };
      }
      if ((match = new RegExp(`^/${kind}/([^/]+)$`).exec(path))) {
        const ref = decodeURIComponent(match[1] ?? "");
        const object = [...store.values()].find((o) => o.Name === ref || o.Id === ref);
        const noun = kind === "volumes" ? "volume" : "network";
        if (object === undefined) throw new EngineError(404, `no such ${noun}: ${ref}`);
        if (method === "GET") {
          return {
            status: 200,
            payload: kind === "volumes" ? this.#volumeJson(object) : this.#networkJson(object),
          };
        }
        if (method === "DELETE") {
          const users = [...this.containers.values()].filter((c) =>
            JSON.stringify([c.HostConfig, c.NetworkingConfig]).includes(`"${object.Name}`),
          );
          if (users.length > 0) throw new EngineError(409, `${noun} ${ref} is in use`);
          store.delete(object.Name);
          return { status: 204 };
        }
      }
    }

    // Containers
    if (method === "POST" && path === "/containers/create") {
      const name = query.get("name") ?? "";
      const taken = this.container(name);
      if (taken !== undefined) {
        throw new EngineError(
          409,
          `Conflict. The container name "/${name}" is already in use by container "${taken.Id}". You have to remove (or rename) that container to be able to reuse that name.`,
        );
      }
      const image = typeof input.Image === "string" ? input.Image : "";
      if (!this.images.has(image)) throw new EngineError(404, `No such image: ${image}`);
      const { HostConfig, NetworkingConfig, ...config } = input;
      const container: FakeContainer = {
        Id: hexId(),
        Name: `/${name}`,
        Created: new Date().toISOString(),
        Config: { ...config, Image: image, Labels: labelsOf(config.Labels) },
        HostConfig: { ...(HostConfig as Record<string, unknown> | undefined) },
        NetworkingConfig: NetworkingConfig as Record<string, unknown> | undefined,
        State: { Status: "created", Running: false, ExitCode: 0, OOMKilled: false },
        RestartCount: 0,
        files: new Map(),
      };
      this.containers.set(container.Id, container);
      return { status: 201, payload: { Id: container.Id, Warnings: [] } };
    }
    if (method === "GET" && path === "/containers/json") {
      const all = query.get("all") === "true" || query.get("all") === "1";
      const listed = [...this.containers.values()].filter(
        (c) => (all || c.State.Running) && matchesLabelFilters(c.Config.Labels, query),
      );
      return {
        status: 200,
        payload: listed.map((c) => ({
          Id: c.Id,
          Names: [c.Name],
          Image: c.Config.Image,
          Labels: c.Config.Labels,
          State: c.State.Status,
          Status: c.State.Running ? `Up (${c.State.Health?.Status ?? ""})` : "Exited",
        })),
      };
    }
    match = /^\/containers\/([^/]+)(\/[a-z]+)?$/.exec(path);
    if (match !== null) {
      const ref = decodeURIComponent(match[1] ?? "");
      const action = match[2] ?? "";
      const container = this.container(ref);
      if (container === undefined) throw new EngineError(404, `No such container: ${ref}`);
      const state = container.State;
      if (method === "GET" && action === "/json") {
        const json = {
          Id: container.Id,
          Name: container.Name,
          Created: container.Created,
          Config: container.Config,
          HostConfig: container.HostConfig,
          State: container.State,
          RestartCount: container.RestartCount,
        };
        const networking = container.NetworkingConfig;
        const networks = (networking?.EndpointsConfig ?? {}) as Record<string, unknown>;
        return { status: 200, payload: { ...json, NetworkSettings: { Networks: networks } } };
      }
      if (method === "POST" && action === "/start") {
        if (state.Running) return { status: 304 };
        const healthcheck = container.Config.Healthcheck;
        container.State = {
          Status: "running",
          Running: true,
          ExitCode: 0,
          OOMKilled: false,
          ...(healthcheck === undefined
            ? {}
            : { Health: { Status: this.healthOnStart, FailingStreak: 0, Log: [] } }),
        };
        return { status: 204 };
      }
      if (method === "POST" && action === "/stop") {
        if (!state.Running) return { status: 304 };
        container.State = { Status: "exited", Running: false, ExitCode: 0, OOMKilled: false };
        return { status: 204 };
      }
      if (method === "POST" && action === "/update") {
        Object.assign(container.HostConfig, input);
        return { status: 200, payload: { Warnings: [] } };
      }
      if (method === "PUT" && action === "/archive") {
        const dir = query.get("path") ?? "/";
        for (const file of readTar(rawBody)) {
          const { path: name, ...rest } = file;
          container.files.set(`${dir.replace(/\/$/, "")}/${name}`, rest);
        }
        return { status: 200 };
      }
      if (method === "DELETE" && action === "") {
        const force = query.get("force") === "true" || query.get("force") === "1";
        if (state.Running && !force) {
          throw new EngineError(
            409,
            `You cannot remove a running container ${container.Id}. Stop the container before attempting removal or force remove`,
          );
        }
        this.containers.delete(container.Id);
        return { status: 204 };
      }
    }
    throw new EngineError(404, `page not found: ${method} ${path}`);
  }

  #volumeJson(volume: FakeObject): Record<string, unknown> {
    return {
      Name: volume.Name,
      Driver: "local",
      Mountpoint: `/var/lib/docker/volumes/${volume.Name}/_data`,
      Labels: volume.Labels,
      Scope: "local",
    };
  }

  #networkJson(network: FakeObject): Record<string, unknown> {
    return {
      Name: network.Name,
      Id: network.Id,
      Driver: network.body.Driver ?? "bridge",
      Internal: network.body.Internal ?? false,
      Labels: network.Labels,
      Scope: "local",
    };
  }
}
