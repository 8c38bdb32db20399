import type { Logger } from "../shared/logger.ts";

/** One JSON line of the engine's image pull stream. */
export interface PullEvent {
  readonly id?: string;
  readonly status?: string;
  /** Set on the last line of a pull that failed after it started (the HTTP status was already 200). */
  readonly error?: string;
  readonly progressDetail?: { readonly current?: number; readonly total?: number };
}

/** A pull reports every chunk of every layer; the log gets one summary line per interval. */
export const PULL_LOG_INTERVAL_MS = 2_000;

/**
 * Aggregates pull progress across layers and logs it at most once per
 * PULL_LOG_INTERVAL_MS (a large image sends thousands of events).
 */
export function pullProgressLogger(
  log: Logger,
  image: string,
): { onProgress: (event: PullEvent) => void; layerCount: () => number } {
  const layers = new Map<string, { current: number; total: number }>();
  let lastLogMs = 0;
  const onProgress = (event: PullEvent): void => {
    if (event.id !== undefined && event.progressDetail?.total !== undefined) {
      layers.set(event.id, {
        current: event.progressDetail.current ?? 0,
        total: event.progressDetail.total,
      });
    }
    const now = Date.now();
    if (layers.size === 0 || now - lastLogMs < PULL_LOG_INTERVAL_MS) return;
    lastLogMs = now;
    let downloadedBytes = 0;
    let totalBytes = 0;
    for (const layer of layers.values()) {
      downloadedBytes += layer.current;
      totalBytes += layer.total;
    }
    log.info(
      { image, layers: layers.size, downloadedBytes, totalBytes },
      "pulling image: progress",
    );
  };
  return { onProgress, layerCount: () => layers.size };
}
