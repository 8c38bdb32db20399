/**
 * The runtime process that bench/density.ts measures: the app from
 * src/main.ts with its appservice runtime started, as `switchboard start`
 * runs it, configured by the JSON in SWITCHBOARD_BENCH_CONFIG. It must run
 * with --expose-gc. Over IPC it answers "measure" with its memory after full
 * garbage collections, and "stop" by stopping.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseConfig } from "../src/config/load.ts";
import { createApp } from "../src/main.ts";

/** What the parent receives after "measure". */
export interface DensityMeasurement {
  readonly kind: "measurement";
  readonly servedTenants: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with node --expose-gc");
const send = process.send?.bind(process);
if (send === undefined) throw new Error("run as a child process with an IPC channel");

const config = parseConfig(process.env.SWITCHBOARD_BENCH_CONFIG ?? "", {}, "density config");
const app = await createApp(config);
const url = await app.runtime.start();
send({ kind: "ready", url });

process.on("message", (message: unknown) => {
  if (message === "measure") {
    void (async () => {
      // Several rounds: finalizers and weak references free more on the next one.
      for (let round = 0; round < 4; round++) {
        gc();
        await sleep(50);
      }
      const memory = process.memoryUsage();
      const measurement: DensityMeasurement = {
        kind: "measurement",
        servedTenants: app.runtime.registry.size,
        rss: memory.rss,
        heapUsed: memory.heapUsed,
        heapTotal: memory.heapTotal,
        external: memory.external,
        arrayBuffers: memory.arrayBuffers,
      };
      send(measurement);
    })();
  } else if (message === "stop") {
    void (async () => {
      await app.runtime.stop();
      await app.database.close();
      process.exit(0);
    })();
  }
});
