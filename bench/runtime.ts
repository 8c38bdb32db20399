/**
 * Runtime benchmark: how many messages a second a room full of people can
 * get answered, and how long each answer takes, against two floors measured
 * on the same Synapse in the same run.
 *
 *   synapse      a client sends a message and waits for it in its own /sync
 *   echo         a bare matrix-bot-sdk Appservice (own registration, own port)
 *                answers every message with its text
 *   switchboard  a Switchboard agent answers in a DM through the zero-latency
 *                fake model (the whole app: inbox, turn ledger, history, usage)
 *
 * Each phase runs at several concurrencies (rooms, each with one message
 * outstanding: send, wait for the reply in /sync, repeat). Latency is from the
 * start of the client's send request to the /sync response that carries the
 * reply. Everything except Synapse and PostgreSQL runs in this process: the
 * clients, the echo appservice, the Switchboard runtime and the fake model.
 *
 *   node bench/runtime.ts [--rooms 1,10,100] [--messages 300] [--seconds 40]
 *                         [--warmup 1] [--phases synapse,echo,switchboard]
 *                         [--edit-throttle-ms 700] [--no-typing]
 *
 * Progress goes to stderr, the tables to stdout. See bench/README.md.
 */
import { execFileSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import {
  Appservice,
  getRequestFn,
  MemoryStorageProvider,
  setRequestFn,
  type IAppserviceRegistration,
} from "matrix-bot-sdk";
import pg from "pg";
import { stringify as stringifyYaml } from "yaml";
import { MatrixGateway } from "../src/matrix/gateway.ts";
import { DATA_DIR_LAYOUT } from "../src/synapse/homeserver-config.ts";
import { TEST_POSTGRES_URL } from "../test/support/database.ts";
import { echoResponder } from "../test/support/fake-models.ts";
import { startStack, type StackTenant, type TestStack } from "../test/support/stack.ts";
import { freePort } from "../test/support/synapse.ts";
import { writeLatest, type Figure } from "./results.ts";

// --- Options -------------------------------------------------------------------

const PHASES = ["synapse", "echo", "switchboard"] as const;
type Phase = (typeof PHASES)[number];
const PHASE_TITLES: Record<Phase, string> = {
  synapse: "A  Synapse alone",
  echo: "B  bare echo appservice",
  switchboard: "S  Switchboard agent",
};

const { values: args } = parseArgs({
  options: {
    rooms: { type: "string", default: "1,10,100" },
    messages: { type: "string", default: "300" },
    seconds: { type: "string", default: "40" },
    warmup: { type: "string", default: "1" },
    phases: { type: "string", default: PHASES.join(",") },
    "edit-throttle-ms": { type: "string", default: "700" },
    "no-typing": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});

if (args.help) {
  console.log(
    "usage: node bench/runtime.ts [--rooms 1,10,100] [--messages 300] [--seconds 40] [--warmup 1]\n" +
      "                             [--phases synapse,echo,switchboard] [--edit-throttle-ms 700] [--no-typing]",
  );
  process.exit(0);
}

function positiveInt(name: string, text: string, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new Error(`--${name} must be an integer from 0 to ${max}, got "${text}"`);
  }
  return value;
}

const ROOM_COUNTS = args.rooms.split(",").map((part) => positiveInt("rooms", part.trim(), 500));
if (ROOM_COUNTS.some((count) => count === 0)) throw new Error("--rooms entries must be at least 1");
/** Measured messages per point, over all its rooms. */
const MESSAGES = positiveInt("messages", args.messages, 100_000);
/** A point stops after this long even if not all its messages were sent. */
const POINT_SECONDS = positiveInt("seconds", args.seconds, 600);
/** Unmeasured round trips per room before each point (first turn in a room does one-off work). */
const WARMUP = positiveInt("warmup", args.warmup, 100);
/** Ablation: agents send no typing notices (MatrixGateway.setTyping patched to do nothing). */
const NO_TYPING = args["no-typing"];
const EDIT_THROTTLE_MS = positiveInt("edit-throttle-ms", args["edit-throttle-ms"], 10_000);
const SELECTED: Phase[] = args.phases.split(",").map((part) => {
  const phase = part.trim() as Phase;
  if (!PHASES.includes(phase))
    throw new Error(`--phases takes ${PHASES.join(", ")}; got "${part}"`);
  return phase;
});

const MAX_ROOMS = Math.max(...ROOM_COUNTS);
/** A reply that has not shown up after this long counts as lost. */
const ROUND_TRIP_TIMEOUT_MS = 30_000;
const SYNC_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 60_000;
const MAX_RATE_LIMIT_RETRIES = 20;
/** Parallel registrations (bcrypt on Synapse) and room set-ups. */
const SETUP_CONCURRENCY = 6;
const RSS_SAMPLE_MS = 250;
const SETTLE_MS = 300;
const CLOCK_TICKS = clockTicksPerSecond();

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// --- Counters shared by the whole process ----------------------------------------

/** M_LIMIT_EXCEEDED answers seen by the bench clients and by appservices (matrix-bot-sdk). */
const limits = { client: 0, appservice: 0 };
/** Requests appservices made to Synapse through matrix-bot-sdk, by method and endpoint. */
const appserviceCalls = new Map<string, number>();
/** SQL statements Switchboard ran, by statement shape. */
const dbStatements = new Map<string, number>();
/** Statements timed from knex's query event to its response: the wall time Switchboard waits on one. */
const sqlTiming = { count: 0, totalMs: 0 };
/** Waits for a connection from Switchboard's pool (tarn's acquire events). */
const poolTiming = { count: 0, totalMs: 0 };
/** Transactions and events delivered by Synapse to the echo appservice. */
const echoInbound = { transactions: 0, events: 0 };

/**
 * Where each measured message is on its way, in performance.now() ms, keyed
 * by the marker in its text (the reply repeats it): the client's send, its
 * arrival at the appservice, the appservice's reply request, the reply in /sync.
 */
interface Stages {
  readonly sendStart: number;
  sendDone?: number;
  atAppservice?: number;
  /** Switchboard only: its typing notice (sent before the model call) and the model request. */
  typingStart?: number;
  typingDone?: number;
  atModel?: number;
  replyStart?: number;
  replyDone?: number;
  visible?: number;
}
const stages = new Map<string, Stages>();
/** The message each room is waiting on, for requests that carry no text (typing notices). */
const waitingByRoom = new Map<string, Stages>();
const MARKER = /m\d+x[0-9a-f]{6}/;

type StampField =
  "atAppservice" | "typingStart" | "typingDone" | "atModel" | "replyStart" | "replyDone";

function stamp(text: unknown, field: StampField): void {
  if (typeof text !== "string") return;
  const marker = MARKER.exec(text)?.[0];
  const entry = marker === undefined ? undefined : stages.get(marker);
  // First time only: the reply itself also reaches the appservice, and edits repeat the text.
  if (entry !== undefined && entry[field] === undefined) entry[field] = performance.now();
}

function stampRoom(roomId: string | undefined, field: "typingStart" | "typingDone"): void {
  const entry = roomId === undefined ? undefined : waitingByRoom.get(roomId);
  // Only the notice that follows the message's arrival: "typing off" of the previous turn comes later.
  if (entry?.atAppservice !== undefined && entry[field] === undefined)
    entry[field] = performance.now();
}

function increment(map: Map<string, number>, key: string, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

function endpointShape(uri: string): string {
  const path = new URL(uri).pathname
    .replace(/(\/send\/[^/]+\/)[^/]+/, "$1{txn}")
    .replace(/\/(?:!|%21|@|%40|\$|%24|#|%23)[^/]*/g, "/{id}");
  return path.replace(/^\/_matrix\/client\/(?:v3|r0|unstable)/, "");
}

type RequestCallback = (
  error: unknown,
  response: { statusCode?: number } | undefined,
  body: unknown,
) => void;
type RequestFn = (
  params: { method?: string; uri: string; body?: unknown },
  callback: RequestCallback,
) => unknown;

/** Counts every request matrix-bot-sdk makes (both appservices use it), and its 429s. */
function countAppserviceRequests(): void {
  const original = getRequestFn() as unknown as RequestFn;
  const counting: RequestFn = (params, callback) => {
    increment(appserviceCalls, `${params.method ?? "GET"} ${endpointShape(params.uri)}`);
    const isSend = params.method === "PUT" && params.uri.includes("/send/m.room.message/");
    if (isSend) stamp(params.body, "replyStart");
    const typingRoom =
      params.method === "PUT" &&
      typeof params.body === "string" &&
      params.body.includes('"typing":true')
        ? /\/rooms\/([^/]+)\/typing\//.exec(params.uri)?.[1]
        : undefined;
    const typingRoomId = typingRoom === undefined ? undefined : decodeURIComponent(typingRoom);
    stampRoom(typingRoomId, "typingStart");
    return original(params, (error, response, body) => {
      const ok = (error === null || error === undefined) && response?.statusCode === 200;
      if (response?.statusCode === 429) limits.appservice++;
      if (isSend && ok) stamp(params.body, "replyDone");
      if (ok) stampRoom(typingRoomId, "typingDone");
      callback(error, response, body);
    });
  };
  setRequestFn(counting);
}

function sqlShape(sql: string): string {
  const flat = sql.replace(/\s+/g, " ").trim();
  return flat.length > 90 ? `${flat.slice(0, 87)}...` : flat;
}

// --- Process accounting (/proc) ----------------------------------------------------

function clockTicksPerSecond(): number {
  try {
    const value = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return Number.isFinite(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
}

/** utime + stime of a process in clock ticks, or undefined when it is gone. */
function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields after the command start at field 3 (state); utime and stime are fields 14 and 15.
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/** Busy clock ticks of the whole machine, all cores. */
function hostBusyTicks(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
}

// --- A client as a person's Matrix app would be ----------------------------------------

interface SyncEvent {
  readonly event_id: string;
  readonly type: string;
  readonly sender: string;
  readonly state_key?: string;
  readonly content: Record<string, unknown>;
}

interface Arrival {
  readonly event: SyncEvent;
  /** performance.now() when the /sync response carrying it was parsed. */
  readonly at: number;
}

/** Only what the bench looks at: messages and memberships, no presence, receipts or typing. */
const SYNC_FILTER = {
  presence: { types: [] },
  account_data: { types: [] },
  room: {
    timeline: { limit: 50, types: ["m.room.message", "m.room.member"] },
    state: { types: [] },
    ephemeral: { types: [] },
    account_data: { types: [] },
  },
};
const INBOX_LIMIT = 200;

class BenchClient {
  readonly userId: string;
  readonly #clientUrl: string;
  readonly #accessToken: string;
  #since: string | undefined;
  #filterId: string | undefined;
  /** Events seen in /sync and not consumed yet, by room. */
  readonly #inbox = new Map<string, Arrival[]>();

  constructor(clientUrl: string, userId: string, accessToken: string) {
    this.#clientUrl = clientUrl;
    this.userId = userId;
    this.#accessToken = accessToken;
  }

  /** One request; M_LIMIT_EXCEEDED is counted and waited out as a client would. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(`${this.#clientUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#accessToken}`,
          "content-type": "application/json",
        },
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const json = (await response.json()) as Record<string, unknown>;
      if (response.status === 429 && attempt < MAX_RATE_LIMIT_RETRIES) {
        limits.client++;
        const retryAfter = typeof json.retry_after_ms === "number" ? json.retry_after_ms : 1000;
        await sleep(Math.min(retryAfter, 10_000));
        continue;
      }
      if (!response.ok) {
        throw new Error(
          `${method} ${path.split("?")[0] ?? path} -> ${response.status} ${JSON.stringify(json)}`,
        );
      }
      return json as T;
    }
  }

  async createRoom(options: {
    invite?: string[];
    isDirect?: boolean;
    name: string;
  }): Promise<string> {
    const { room_id } = await this.request<{ room_id: string }>(
      "POST",
      "/_matrix/client/v3/createRoom",
      {
        preset: "private_chat",
        name: options.name,
        invite: options.invite ?? [],
        is_direct: options.isDirect ?? false,
      },
    );
    return room_id;
  }

  async sendText(roomId: string, body: string): Promise<void> {
    await this.request(
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${randomUUID()}`,
      { msgtype: "m.text", body },
    );
  }

  /** Uploads the filter and takes the initial sync, so later syncs only carry news. */
  async startSyncing(): Promise<void> {
    const { filter_id } = await this.request<{ filter_id: string }>(
      "POST",
      `/_matrix/client/v3/user/${encodeURIComponent(this.userId)}/filter`,
      SYNC_FILTER,
    );
    this.#filterId = filter_id;
    await this.#sync(0);
    this.#inbox.clear();
  }

  /**
   * Long-polls /sync until an event in the room matches; returns when the
   * response carrying it was parsed, or undefined at the deadline. Consumes
   * the room's inbox up to the match.
   */
  async waitFor(
    roomId: string,
    matches: (event: SyncEvent) => boolean,
    deadline: number,
  ): Promise<number | undefined> {
    for (;;) {
      const arrivals = this.#inbox.get(roomId) ?? [];
      const index = arrivals.findIndex((arrival) => matches(arrival.event));
      if (index >= 0) {
        const at = (arrivals[index] as Arrival).at;
        this.#inbox.set(roomId, arrivals.slice(index + 1));
        return at;
      }
      const left = deadline - performance.now();
      if (left <= 0) return undefined;
      await this.#sync(Math.min(SYNC_TIMEOUT_MS, Math.ceil(left)));
    }
  }

  async #sync(timeoutMs: number): Promise<void> {
    const query = new URLSearchParams({
      timeout: String(timeoutMs),
      filter: this.#filterId ?? "",
      set_presence: "offline",
    });
    if (this.#since !== undefined) query.set("since", this.#since);
    const body = await this.request<{
      next_batch: string;
      rooms?: { join?: Record<string, { timeline?: { events?: SyncEvent[] } }> };
    }>("GET", `/_matrix/client/v3/sync?${query.toString()}`);
    const at = performance.now();
    this.#since = body.next_batch;
    for (const [roomId, room] of Object.entries(body.rooms?.join ?? {})) {
      const events = room.timeline?.events ?? [];
      if (events.length === 0) continue;
      const arrivals = this.#inbox.get(roomId) ?? [];
      arrivals.push(...events.map((event) => ({ event, at })));
      this.#inbox.set(roomId, arrivals.slice(-INBOX_LIMIT));
    }
  }
}

function isEdit(event: SyncEvent): boolean {
  const relation = event.content["m.relates_to"] as { rel_type?: string } | undefined;
  return relation?.rel_type === "m.replace";
}

// --- The bare echo appservice (floor B) ------------------------------------------------

/** matrix-bot-sdk's in-memory storage, counting the transactions it completes. */
class CountingStorage extends MemoryStorageProvider {
  override setTransactionCompleted(transactionId: string): void {
    echoInbound.transactions++;
    super.setTransactionCompleted(transactionId);
  }
}

interface EchoAppservice {
  readonly appservice: Appservice;
  readonly registrationYaml: string;
  readonly echoUserId: string;
  readonly errors: () => number;
  /** Listens; Synapse must know the registration by then (begin() registers the sender). */
  begin(): Promise<void>;
  join(roomId: string): Promise<void>;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The smallest useful appservice: one virtual user that repeats every message it sees. */
async function startEchoAppservice(
  serverName: string,
  homeserverUrl: string,
): Promise<EchoAppservice> {
  const port = await freePort();
  const registration: IAppserviceRegistration = {
    id: "bench-echo",
    url: `http://127.0.0.1:${port}`,
    as_token: randomBytes(24).toString("hex"),
    hs_token: randomBytes(24).toString("hex"),
    sender_localpart: "benchecho",
    rate_limited: false,
    namespaces: {
      users: [{ exclusive: true, regex: `@benchecho_.*:${escapeRegex(serverName)}` }],
      rooms: [],
      aliases: [],
    },
  };
  const appservice = new Appservice({
    port,
    bindAddress: "127.0.0.1",
    homeserverName: serverName,
    homeserverUrl,
    registration,
    storage: new CountingStorage(),
  });
  const echoUserId = `@benchecho_echo:${serverName}`;
  const intent = appservice.getIntentForUserId(echoUserId);
  let errors = 0;
  appservice.on("room.event", () => {
    echoInbound.events++;
  });
  appservice.on("room.message", (roomId: string, event: SyncEvent) => {
    if (event.sender === echoUserId || typeof event.content.body !== "string") return;
    stamp(event.content.body, "atAppservice");
    intent.underlyingClient
      .sendMessage(roomId, { msgtype: "m.text", body: `echo: ${event.content.body}` })
      .catch(() => {
        errors++;
      });
  });
  return {
    appservice,
    registrationYaml: stringifyYaml(registration),
    echoUserId,
    errors: () => errors,
    async begin() {
      await appservice.begin();
      await intent.ensureRegistered();
    },
    async join(roomId) {
      await intent.underlyingClient.joinRoom(roomId);
    },
  };
}

// --- Set-up ---------------------------------------------------------------------

interface Slot {
  readonly client: BenchClient;
  readonly rooms: Partial<Record<Phase, string>>;
}

interface PoolEvents {
  on(
    event: "acquireRequest" | "acquireSuccess" | "acquireFail",
    listener: (eventId: number) => void,
  ): void;
}

interface Bench {
  readonly stack: TestStack;
  readonly tenant: StackTenant;
  readonly echo: EchoAppservice;
  readonly agentUserId: string;
  readonly slots: Slot[];
  readonly pgAdmin: pg.Client;
  readonly databaseName: string;
}

async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await work(items[index] as T, index);
      }
    }),
  );
  return results;
}

/** Undo steps for what set-up started, run last first (also when set-up fails half way). */
const cleanups: (() => Promise<void>)[] = [];

async function setUp(): Promise<Bench> {
  log(
    `starting the stack (PostgreSQL database, app, runtime, fake model); editThrottleMs ${EDIT_THROTTLE_MS}`,
  );
  const stack = await startStack({ editThrottleMs: EDIT_THROTTLE_MS });
  cleanups.push(() => stack.stop());
  const databaseName = new URL(stack.database.url ?? "postgres://x/unknown").pathname.slice(1);
  const queryStarts = new Map<string, number>();
  stack.database.knex.on("query", (query: { sql?: string; __knexQueryUid?: string }) => {
    if (typeof query.sql === "string") increment(dbStatements, sqlShape(query.sql));
    if (query.__knexQueryUid !== undefined)
      queryStarts.set(query.__knexQueryUid, performance.now());
  });
  const queryDone = (_response: unknown, query: { __knexQueryUid?: string }): void => {
    const startedAt =
      query.__knexQueryUid === undefined ? undefined : queryStarts.get(query.__knexQueryUid);
    if (startedAt === undefined) return;
    queryStarts.delete(query.__knexQueryUid as string);
    sqlTiming.count++;
    sqlTiming.totalMs += performance.now() - startedAt;
  };
  stack.database.knex.on("query-response", queryDone);
  const pool = (stack.database.knex.client as { pool?: PoolEvents }).pool;
  const acquireStarts = new Map<number, number>();
  pool?.on("acquireRequest", (eventId: number) => {
    acquireStarts.set(eventId, performance.now());
  });
  const acquired = (eventId: number): void => {
    const startedAt = acquireStarts.get(eventId);
    if (startedAt === undefined) return;
    acquireStarts.delete(eventId);
    poolTiming.count++;
    poolTiming.totalMs += performance.now() - startedAt;
  };
  pool?.on("acquireSuccess", acquired);
  pool?.on("acquireFail", acquired);
  stack.database.knex.on("query-error", queryDone);

  log("starting Synapse with Switchboard's registration");
  const tenant = await stack.addTenant("bench");
  const homeserver = tenant.homeserver;
  const echo = await startEchoAppservice(tenant.serverName, homeserver.clientUrl);
  const switchboardYaml = await readFile(
    join(homeserver.dataDir, DATA_DIR_LAYOUT.appservices, "switchboard.yaml"),
    "utf8",
  );
  log("adding the echo appservice's registration and restarting Synapse");
  await homeserver.synapse.updateRegistrations({
    "switchboard.yaml": switchboardYaml,
    "bench-echo.yaml": echo.registrationYaml,
  });
  await homeserver.restart();
  await echo.begin();
  cleanups.push(() => {
    echo.appservice.stop();
    return Promise.resolve();
  });
  countAppserviceRequests();

  // Notes when a message reaches Switchboard: its inbox stores every transaction first.
  const pipeline = stack.app.runtime.pipeline;
  const accept = pipeline.accept.bind(pipeline);
  pipeline.accept = (served, txnId, events) => {
    for (const event of events)
      stamp((event as { content?: { body?: unknown } }).content?.body, "atAppservice");
    return accept(served, txnId, events);
  };

  stack.model.respondWith((request) => {
    stamp(request.lastUserText, "atModel");
    return echoResponder(request);
  });

  if (NO_TYPING) MatrixGateway.prototype.setTyping = () => Promise.resolve();

  await tenant.createAgent({ name: "bench" });
  const agentUserId = tenant.agentUserId("bench");
  // On Switchboard's database (as the superuser, so row-level security does not apply) to count
  // turns; its own backend is left out of the CPU accounting.
  const pgAdmin = new pg.Client({ connectionString: stack.database.url ?? TEST_POSTGRES_URL });
  await pgAdmin.connect();
  cleanups.push(() => pgAdmin.end());

  log(`registering ${MAX_ROOMS} users`);
  const clients = await mapLimit(
    Array.from({ length: MAX_ROOMS }, (_, index) => index),
    SETUP_CONCURRENCY,
    async (index) => {
      const session = await homeserver.registerUser(`bench${index}`);
      const client = new BenchClient(homeserver.clientUrl, session.userId, session.accessToken);
      await client.startSyncing();
      return client;
    },
  );

  log(`creating rooms for ${SELECTED.join(", ")} (${MAX_ROOMS} each)`);
  const slots = await mapLimit(clients, SETUP_CONCURRENCY, async (client, index) => {
    const rooms: Partial<Record<Phase, string>> = {};
    if (SELECTED.includes("synapse"))
      rooms.synapse = await client.createRoom({ name: `floor A ${index}` });
    if (SELECTED.includes("echo")) {
      const roomId = await client.createRoom({
        name: `floor B ${index}`,
        invite: [echo.echoUserId],
      });
      await echo.join(roomId);
      rooms.echo = roomId;
    }
    if (SELECTED.includes("switchboard")) {
      rooms.switchboard = await client.createRoom({
        name: `agent DM ${index}`,
        invite: [agentUserId],
        isDirect: true,
      });
    }
    return { client, rooms };
  });
  if (SELECTED.includes("switchboard")) {
    log("waiting for the agent to join its DMs");
    await Promise.all(
      slots.map(async (slot) => {
        const at = await slot.client.waitFor(
          slot.rooms.switchboard as string,
          (event) =>
            event.type === "m.room.member" &&
            event.state_key === agentUserId &&
            event.content.membership === "join",
          performance.now() + 120_000,
        );
        if (at === undefined)
          throw new Error(`the agent never joined ${slot.rooms.switchboard ?? "?"}`);
      }),
    );
  }
  return { stack, tenant, echo, agentUserId, slots, pgAdmin, databaseName };
}

// --- Measurement -------------------------------------------------------------------

interface Snapshot {
  readonly at: bigint;
  readonly cpu: NodeJS.CpuUsage;
  readonly synapseTicks: number;
  readonly pgTicks: Map<number, number>;
  readonly hostTicks: number;
  readonly limits: { client: number; appservice: number };
  readonly calls: Map<string, number>;
  readonly statements: Map<string, number>;
  readonly sqlTiming: { count: number; totalMs: number };
  readonly poolTiming: { count: number; totalMs: number };
  /** Finished turns by outcome ("answered", "failed: <kind>"). */
  readonly turns: Map<string, number>;
  readonly switchboardInbound: { transactions: number; events: number };
  readonly echoInbound: { transactions: number; events: number };
}

async function counterTotal(counter: {
  get(): Promise<{ values: { value: number }[] }>;
}): Promise<number> {
  return (await counter.get()).values.reduce((sum, sample) => sum + sample.value, 0);
}

async function snapshot(bench: Bench): Promise<Snapshot> {
  const { rows } = await bench.pgAdmin.query<{ pid: number }>(
    "select pid from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
    [bench.databaseName],
  );
  const pgTicks = new Map<number, number>();
  for (const { pid } of rows) {
    const ticks = processTicks(pid);
    if (ticks !== undefined) pgTicks.set(pid, ticks);
  }
  const turnRows = await bench.pgAdmin.query<{ outcome: string; count: number }>(
    "select status || coalesce(': ' || split_part(error, ':', 1), '') as outcome, count(*)::int as count " +
      "from turns where status <> 'started' group by 1",
  );
  const turns = new Map(turnRows.rows.map((row) => [row.outcome, row.count]));
  const synapsePid = bench.tenant.homeserver.synapse.pid;
  const metrics = bench.stack.app.runtime.metrics;
  return {
    at: process.hrtime.bigint(),
    cpu: process.cpuUsage(),
    synapseTicks: synapsePid === undefined ? 0 : (processTicks(synapsePid) ?? 0),
    pgTicks,
    hostTicks: hostBusyTicks(),
    limits: { ...limits },
    calls: new Map(appserviceCalls),
    statements: new Map(dbStatements),
    sqlTiming: { ...sqlTiming },
    poolTiming: { ...poolTiming },
    turns,
    switchboardInbound: {
      transactions: await counterTotal(metrics.transactions),
      events: await counterTotal(metrics.events),
    },
    echoInbound: { ...echoInbound },
  };
}

function mapDelta(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  const delta = new Map<string, number>();
  for (const [key, value] of after) {
    const change = value - (before.get(key) ?? 0);
    if (change > 0) delta.set(key, change);
  }
  return delta;
}

interface PointResult {
  readonly phase: Phase;
  readonly rooms: number;
  readonly completed: number;
  readonly lost: number;
  readonly elapsedMs: number;
  readonly latencies: number[];
  readonly stages: readonly Stages[];
  /** Wall time of the whole accounting window (measurement plus settling). */
  readonly windowMs: number;
  readonly benchCpuMs: { user: number; system: number };
  readonly synapseCpuMs: number;
  readonly pgCpuMs: number;
  readonly hostCpuMs: number;
  readonly peakRssMb: number;
  /** The kernel's high-water mark for the whole process so far. */
  readonly maxRssMb: number;
  readonly limits: { client: number; appservice: number };
  readonly calls: Map<string, number>;
  readonly statements: Map<string, number>;
  /** Turns that finished during the point, by outcome. */
  readonly turns: Map<string, number>;
  /** Mean wall time of one SQL statement, query sent to response parsed. */
  readonly sqlWaitMs: number;
  /** Mean wait for a connection from the pool (5 connections in the test stack). */
  readonly poolWaitMs: number;
  readonly inbound: { transactions: number; events: number };
  /** process.hrtime of the measurement window in microseconds, to cut a --cpu-prof profile. */
  readonly windowUs: readonly [bigint, bigint];
}

function replySender(bench: Bench, phase: Phase, slot: Slot): string {
  if (phase === "synapse") return slot.client.userId;
  return phase === "echo" ? bench.echo.echoUserId : bench.agentUserId;
}

let messageCounter = 0;

/** One message and its reply; the latency in ms, or undefined if the reply never came. */
async function roundTrip(
  bench: Bench,
  phase: Phase,
  slot: Slot,
  measured: Stages[] | undefined,
): Promise<number | undefined> {
  const roomId = slot.rooms[phase] as string;
  const marker = `m${++messageCounter}x${randomBytes(3).toString("hex")}`;
  const sender = replySender(bench, phase, slot);
  const started = performance.now();
  const entry: Stages = { sendStart: started };
  stages.set(marker, entry);
  waitingByRoom.set(roomId, entry);
  await slot.client.sendText(roomId, `benchmark message ${marker}`);
  entry.sendDone = performance.now();
  const seen = await slot.client.waitFor(
    roomId,
    (event) =>
      event.type === "m.room.message" &&
      event.sender === sender &&
      !isEdit(event) &&
      typeof event.content.body === "string" &&
      event.content.body.includes(marker),
    started + ROUND_TRIP_TIMEOUT_MS,
  );
  // Late stamps (edits, the reply's own trip back to the appservice) are not wanted.
  stages.delete(marker);
  waitingByRoom.delete(roomId);
  if (seen === undefined) return undefined;
  entry.visible = seen;
  measured?.push(entry);
  return seen - started;
}

/** Lets in-flight work finish so its CPU lands in this point, not the next. */
async function settle(bench: Bench, phase: Phase): Promise<void> {
  await sleep(SETTLE_MS);
  if (phase === "switchboard") await bench.stack.app.runtime.pipeline.drain();
}

async function runPoint(bench: Bench, phase: Phase, rooms: number): Promise<PointResult> {
  const slots = bench.slots.slice(0, rooms);
  let lost = 0;
  await Promise.all(
    slots.map(async (slot) => {
      for (let i = 0; i < WARMUP; i++)
        if ((await roundTrip(bench, phase, slot, undefined)) === undefined) lost++;
    }),
  );
  if (lost > 0) log(`  ${lost} warm-up replies never came`);
  lost = 0;
  await settle(bench, phase);

  // The fake model keeps every request it served; a benchmark does not need them.
  bench.stack.model.reset();
  const before = await snapshot(bench);
  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, RSS_SAMPLE_MS);
  const latencies: number[] = [];
  const measured: Stages[] = [];
  let tickets = MESSAGES;
  const started = performance.now();
  const stopAt = started + POINT_SECONDS * 1000;
  let lastReply = started;
  const startUs = process.hrtime.bigint() / 1000n;
  await Promise.all(
    slots.map(async (slot) => {
      while (tickets > 0 && performance.now() < stopAt) {
        tickets--;
        const latency = await roundTrip(bench, phase, slot, measured);
        if (latency === undefined) lost++;
        else {
          latencies.push(latency);
          lastReply = performance.now();
        }
      }
    }),
  );
  const endUs = process.hrtime.bigint() / 1000n;
  const elapsedMs = lastReply - started;
  await settle(bench, phase);
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  const after = await snapshot(bench);

  const cpu = process.cpuUsage(before.cpu);
  let pgTicks = 0;
  for (const [pid, ticks] of after.pgTicks) pgTicks += ticks - (before.pgTicks.get(pid) ?? 0);
  const ticksToMs = (ticks: number): number => (ticks * 1000) / CLOCK_TICKS;
  const inboundBefore = phase === "switchboard" ? before.switchboardInbound : before.echoInbound;
  const inboundAfter = phase === "switchboard" ? after.switchboardInbound : after.echoInbound;
  return {
    phase,
    rooms,
    completed: latencies.length,
    lost,
    elapsedMs,
    latencies,
    stages: measured,
    windowMs: Number(after.at - before.at) / 1e6,
    benchCpuMs: { user: cpu.user / 1000, system: cpu.system / 1000 },
    synapseCpuMs: ticksToMs(after.synapseTicks - before.synapseTicks),
    pgCpuMs: ticksToMs(pgTicks),
    hostCpuMs: ticksToMs(after.hostTicks - before.hostTicks),
    peakRssMb: peakRss / 2 ** 20,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    limits: {
      client: after.limits.client - before.limits.client,
      appservice: after.limits.appservice - before.limits.appservice,
    },
    calls: mapDelta(after.calls, before.calls),
    statements: mapDelta(after.statements, before.statements),
    turns: mapDelta(after.turns, before.turns),
    sqlWaitMs:
      (after.sqlTiming.totalMs - before.sqlTiming.totalMs) /
      Math.max(1, after.sqlTiming.count - before.sqlTiming.count),
    poolWaitMs:
      (after.poolTiming.totalMs - before.poolTiming.totalMs) /
      Math.max(1, after.poolTiming.count - before.poolTiming.count),
    inbound: {
      transactions: inboundAfter.transactions - inboundBefore.transactions,
      events: inboundAfter.events - inboundBefore.events,
    },
    windowUs: [startUs, endUs],
  };
}

// --- Reporting -----------------------------------------------------------------------

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ] as number;
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

function table(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  leftColumns = 1,
): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) =>
        column < leftColumns
          ? cell.padEnd(widths[column] ?? 0)
          : cell.padStart(widths[column] ?? 0),
      )
      .join("  ")
      .trimEnd();
  return [
    line(header),
    widths.map((width) => "-".repeat(width)).join("  "),
    ...rows.map(line),
  ].join("\n");
}

/** Per message sent in the measured window (replies plus lost ones: in overload, lost turns cost too). */
function perMessage(total: number, result: PointResult): number {
  const sent = result.completed + result.lost;
  return sent === 0 ? Number.NaN : total / sent;
}

function mainTable(results: readonly PointResult[]): string {
  const header = [
    "phase",
    "rooms",
    "msgs",
    "lost",
    "msg/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "node cpu ms/msg",
    "synapse cpu ms/msg",
    "pg cpu ms/msg",
    "other load (cores)",
    "peak rss MB",
    "429s",
  ];
  const rows = results.map((result) => {
    const sorted = [...result.latencies].sort((a, b) => a - b);
    const node = result.benchCpuMs.user + result.benchCpuMs.system;
    // Busy CPU on the machine that was neither this process, Synapse nor our PostgreSQL backends.
    const others =
      Math.max(0, result.hostCpuMs - node - result.synapseCpuMs - result.pgCpuMs) / result.windowMs;
    return [
      PHASE_TITLES[result.phase],
      String(result.rooms),
      String(result.completed),
      String(result.lost),
      fixed(result.completed / (result.elapsedMs / 1000), 1),
      fixed(percentile(sorted, 50), 1),
      fixed(percentile(sorted, 90), 1),
      fixed(percentile(sorted, 99), 1),
      fixed(sorted.at(-1) ?? Number.NaN, 1),
      fixed(perMessage(node, result), 2),
      fixed(perMessage(result.synapseCpuMs, result), 2),
      fixed(perMessage(result.pgCpuMs, result), 2),
      fixed(others, 2),
      fixed(result.peakRssMb, 0),
      `${result.limits.client}/${result.limits.appservice}`,
    ];
  });
  return table(header, rows);
}

function switchboardTable(results: readonly PointResult[]): string {
  const header = [
    "rooms",
    "msgs",
    "wall s",
    "cpu user s",
    "cpu sys s",
    "cpu % of 1 core",
    "peak rss MB",
    "max rss so far MB",
    "AS txns/msg",
    "AS events/msg",
    "SB->Synapse calls/msg",
    "SQL stmts/msg",
    "DB txns/msg",
    "ms per stmt",
    "pool wait ms",
  ];
  const rows = results
    .filter((result) => result.phase === "switchboard")
    .map((result) => {
      const cpu = result.benchCpuMs.user + result.benchCpuMs.system;
      const calls = [...result.calls.values()].reduce((sum, count) => sum + count, 0);
      const statements = [...result.statements.values()].reduce((sum, count) => sum + count, 0);
      const transactions = [...result.statements]
        .filter(([sql]) => /^begin/i.test(sql))
        .reduce((sum, [, count]) => sum + count, 0);
      return [
        String(result.rooms),
        String(result.completed),
        fixed(result.windowMs / 1000, 1),
        fixed(result.benchCpuMs.user / 1000, 2),
        fixed(result.benchCpuMs.system / 1000, 2),
        fixed((100 * cpu) / result.windowMs, 0),
        fixed(result.peakRssMb, 0),
        fixed(result.maxRssMb, 0),
        fixed(perMessage(result.inbound.transactions, result), 2),
        fixed(perMessage(result.inbound.events, result), 2),
        fixed(perMessage(calls, result), 2),
        fixed(perMessage(statements, result), 1),
        fixed(perMessage(transactions, result), 1),
        fixed(result.sqlWaitMs, 2),
        fixed(result.poolWaitMs, 2),
      ];
    });
  return table(header, rows, 0);
}

function stageTable(results: readonly PointResult[]): string {
  const header = [
    "phase",
    "rooms",
    "send->200",
    "send->at AS",
    "AS work p50",
    "AS work p90",
    "reply PUT",
    "reply->sync",
    "200->sync",
    "total",
  ];
  const rows = results.map((result) => {
    const floor = result.phase === "synapse";
    const cell = (from: keyof Stages, to: keyof Stages, p: number, show: boolean): string =>
      show ? fixed(percentile(stageDeltas(result, from, to), p), 1) : "";
    return [
      PHASE_TITLES[result.phase],
      String(result.rooms),
      cell("sendStart", "sendDone", 50, true),
      cell("sendStart", "atAppservice", 50, !floor),
      cell("atAppservice", "replyStart", 50, !floor),
      cell("atAppservice", "replyStart", 90, !floor),
      cell("replyStart", "replyDone", 50, !floor),
      cell("replyDone", "visible", 50, !floor),
      cell("sendDone", "visible", 50, floor),
      cell("sendStart", "visible", 50, true),
    ];
  });
  return table(header, rows);
}

function stageDeltas(result: PointResult, from: keyof Stages, to: keyof Stages): number[] {
  return result.stages
    .flatMap((entry) => {
      const start = entry[from];
      const end = entry[to];
      return start === undefined || end === undefined ? [] : [end - start];
    })
    .sort((a, b) => a - b);
}

/** Switchboard's part of the round trip, from the transaction's arrival to the reply request. */
function switchboardWorkTable(results: readonly PointResult[]): string {
  const header = [
    "rooms",
    "at AS->typing PUT",
    "typing PUT",
    "typing->model req",
    "model req->reply PUT",
    "at AS->reply PUT",
  ];
  const rows = results
    .filter((result) => result.phase === "switchboard")
    .map((result) => [
      String(result.rooms),
      fixed(percentile(stageDeltas(result, "atAppservice", "typingStart"), 50), 1),
      fixed(percentile(stageDeltas(result, "typingStart", "typingDone"), 50), 1),
      fixed(percentile(stageDeltas(result, "typingDone", "atModel"), 50), 1),
      fixed(percentile(stageDeltas(result, "atModel", "replyStart"), 50), 1),
      fixed(percentile(stageDeltas(result, "atAppservice", "replyStart"), 50), 1),
    ]);
  return table(header, rows, 0);
}

/** Counts per message sent, one column per point, biggest first. */
function breakdown(
  title: string,
  results: readonly PointResult[],
  counts: (result: PointResult) => Map<string, number>,
  limit: number,
): string {
  const totals = new Map<string, number>();
  for (const result of results) {
    for (const [key, count] of counts(result)) increment(totals, key, perMessage(count, result));
  }
  const keys = [...totals]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([key]) => key);
  const header = ["what", ...results.map((result) => `@${result.rooms} rooms`)];
  const rows = keys.map((key) => [
    key,
    ...results.map((result) => fixed(perMessage(counts(result).get(key) ?? 0, result), 2)),
  ]);
  return `${title}\n${table(header, rows)}`;
}

function machine(): string {
  const model = cpus()[0]?.model ?? "unknown CPU";
  const load = loadavg()
    .map((value) => value.toFixed(2))
    .join(" ");
  return `${availableParallelism()} cores (${model}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, load average ${load}`;
}

function report(bench: Bench, results: readonly PointResult[], startedAt: Date): void {
  const out: string[] = [];
  out.push(
    `Switchboard runtime benchmark, ${startedAt.toISOString()}`,
    `node ${process.version}; ${machine()}`,
    `one Synapse (SQLite) for all phases; Switchboard database: PostgreSQL (pool of 5, as the test stack opens it)`,
    `per point: ${MESSAGES} measured messages (or ${POINT_SECONDS} s), after ${WARMUP} warm-up round trip(s) per room; one client user per room, one message outstanding per room`,
    `editThrottleMs ${EDIT_THROTTLE_MS}; the fake model answers at once ("echo: <text>")` +
      (NO_TYPING ? "; ABLATION: typing notices switched off (--no-typing)" : ""),
    "",
    mainTable(results),
    "",
    "latency: client send request start -> the /sync response carrying the reply (A: the message itself).",
    "node cpu: this process (clients + echo appservice + Switchboard runtime + fake model); synapse cpu: its process;",
    "pg cpu: the backends of Switchboard's database; other load: busy cores on the machine outside those three.",
    "429s: M_LIMIT_EXCEEDED seen by the clients / by the appservices. Per-message figures divide by messages sent",
    "(replies + lost). A point with lost messages is in overload: turns left over from it run on into the next.",
    "",
    "Where the time goes: medians in ms per message, from the client's send request start (stamped by text marker)",
    stageTable(results),
    "send->200: client PUT; send->at AS: until the appservice receives the message (Switchboard: its transaction",
    "handler; echo: matrix-bot-sdk's room.message); AS work: until the appservice starts the reply PUT; reply PUT:",
    "that request; reply->sync: until the client's /sync carries the reply. Medians of parts do not add up to the total.",
  );
  const switchboard = results.filter((result) => result.phase === "switchboard");
  if (switchboard.length > 0) {
    out.push(
      "",
      "Switchboard phase, this process (runtime in-process; nothing subtracted: the clients and fake model run here too)",
      switchboardTable(results),
      "",
      "Switchboard's work per message, medians in ms: inbox and routing (DB) until the typing notice, the typing",
      "PUT to Synapse, ledger/history/memory reads until the model request, the model stream until the reply PUT",
      switchboardWorkTable(results),
    );
    out.push(
      "",
      breakdown(
        "Switchboard -> Synapse requests per message sent",
        switchboard,
        (r) => r.calls,
        12,
      ),
      "",
      breakdown("SQL statements per message sent", switchboard, (r) => r.statements, 25),
      "",
      breakdown(
        "Turns finished during the point, per message sent (failed: the turn's error kind)",
        switchboard,
        (r) => r.turns,
        6,
      ),
    );
  }
  const echo = results.filter((result) => result.phase === "echo");
  if (echo.length > 0) {
    out.push(
      "",
      breakdown("Echo appservice -> Synapse requests per message sent", echo, (r) => r.calls, 5),
      `echo appservice inbound per message sent: ${echo
        .map(
          (r) =>
            `@${r.rooms} rooms ${fixed(perMessage(r.inbound.transactions, r), 2)} transactions, ${fixed(perMessage(r.inbound.events, r), 2)} events`,
        )
        .join("; ")}; send errors ${bench.echo.errors()}`,
    );
  }
  process.stdout.write(`${out.join("\n")}\n`);
  log(`figures: ${writeLatest("runtime", runtimeFigures(results))}`);
}

/**
 * The main table's headline figures, keyed `<phase>.rooms=<n>.<figure>` (see
 * bench/results.ts), and Switchboard's p50 over the echo floor's of the same
 * run: the figure a busy shared machine moves least.
 */
function runtimeFigures(results: readonly PointResult[]): Figure[] {
  const p50 = (result: PointResult): number =>
    percentile(
      [...result.latencies].sort((a, b) => a - b),
      50,
    );
  const overFloor: Figure[] = results
    .filter((result) => result.phase === "switchboard")
    .flatMap((result) => {
      const floor = results.find((each) => each.phase === "echo" && each.rooms === result.rooms);
      if (floor === undefined) return [];
      return [
        {
          key: `switchboard.rooms=${String(result.rooms)}.p50_over_floor`,
          value: p50(result) / p50(floor),
          unit: "×",
          better: "lower",
        },
      ];
    });
  const main = results.flatMap((result) => {
    const sorted = [...result.latencies].sort((a, b) => a - b);
    const key = `${result.phase}.rooms=${String(result.rooms)}`;
    const figures: Figure[] = [
      {
        key: `${key}.msg_per_s`,
        value: result.completed / (result.elapsedMs / 1000),
        unit: "msg/s",
        better: "higher",
      },
      { key: `${key}.p50`, value: percentile(sorted, 50), unit: "ms", better: "lower" },
      { key: `${key}.p99`, value: percentile(sorted, 99), unit: "ms", better: "lower" },
      { key: `${key}.lost`, value: result.lost, unit: "messages", better: "lower" },
    ];
    if (result.phase === "switchboard")
      figures.push({
        key: `${key}.peak_rss`,
        value: result.peakRssMb,
        unit: "MB",
        better: "lower",
      });
    return figures;
  });
  return [...main, ...overFloor].filter((figure) => Number.isFinite(figure.value));
}

// --- Main -----------------------------------------------------------------------------

async function cleanUp(): Promise<void> {
  for (const undo of cleanups.splice(0).reverse()) {
    await undo().catch((error: unknown) => {
      log(`clean-up step failed: ${String(error)}`);
    });
  }
}

async function main(): Promise<void> {
  const startedAt = new Date();
  // Keep stdout for the report: Switchboard's warnings (e.g. failed model calls) show up as failed turns.
  process.env.TEST_LOG_LEVEL ??= "error";
  process.once("SIGINT", () => {
    log("interrupted; cleaning up");
    void cleanUp().finally(() => process.exit(130));
  });
  const results: PointResult[] = [];
  try {
    const bench = await setUp();
    try {
      for (const phase of SELECTED) {
        for (const rooms of ROOM_COUNTS) {
          log(`${phase} @ ${rooms} room(s): warm-up, then ${MESSAGES} messages`);
          const result = await runPoint(bench, phase, rooms);
          results.push(result);
          log(
            `  ${result.completed} replies in ${(result.elapsedMs / 1000).toFixed(1)} s, ${result.lost} lost; ` +
              `window us ${result.windowUs[0]}-${result.windowUs[1]}`,
          );
        }
      }
    } finally {
      // Whatever was measured before a failure is still worth printing.
      if (results.length > 0) report(bench, results, startedAt);
    }
  } finally {
    log("stopping");
    await cleanUp();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
