import type { ChildProcess } from "node:child_process";

/** How a child process ended: an exit code, a signal, or a failure to spawn at all. */
export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly error?: Error;
}

/**
 * Every child this Node process started (homeservers and bridges) that is
 * still alive. On a normal exit they are killed here; if Node dies
 * abruptly, the kernel kills them (they are spawned under
 * setpriv --pdeathsig), so no child outlives its owner.
 */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Tracks a freshly spawned child until it ends and resolves (never rejects)
 * with how it ended. Call it right after spawn, before any await: "error"
 * and "exit" may come on the next tick, and an unheard "error" would be
 * thrown.
 */
export function trackChild(child: ChildProcess): Promise<ExitStatus> {
  liveChildren.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const live of liveChildren) live.kill("SIGKILL");
    });
  }
  return new Promise<ExitStatus>((resolveExit) => {
    child.once("error", (error) => {
      liveChildren.delete(child);
      resolveExit({ code: null, signal: null, error });
    });
    child.once("exit", (code, signal) => {
      liveChildren.delete(child);
      resolveExit({ code, signal });
    });
  });
}

/** The end of a process as a predicate: "<program> could not be started (…)" and so on. */
export function describeExit(status: ExitStatus): string {
  if (status.error !== undefined) return `could not be started (${status.error.message})`;
  if (status.signal !== null) return `was killed by ${status.signal}`;
  return `exited with code ${String(status.code)}`;
}
