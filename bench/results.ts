/**
 * Benchmark figures in machine-readable form, and their comparison with the
 * figures recorded in BENCHMARKS.md. Every bench writes
 * `bench/results/latest-<bench>.json`; `bench/results/recorded-<bench>.json`
 * holds the published figures; `bench/compare.ts` prints one beside the other.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "results");

/** A worse-than-recorded change beyond this fraction is flagged as a regression. */
export const REGRESSION_THRESHOLD = 0.2;

/** One measured number; `key` is stable across runs so figures can be matched. */
export interface Figure {
  readonly key: string;
  readonly value: number;
  readonly unit: string;
  /** Which direction is an improvement. */
  readonly better: "lower" | "higher";
}

export interface BenchResult {
  readonly bench: string;
  /** A one-line description of where it ran (cores, CPU, memory, Node). */
  readonly machine: string;
  /** ISO 8601, UTC. */
  readonly date: string;
  readonly figures: readonly Figure[];
}

export function describeMachine(): string {
  const cpu = cpus();
  const model = (cpu[0]?.model ?? "unknown CPU").replace(/\s+/g, " ").trim();
  const gib = (totalmem() / 1024 ** 3).toFixed(1);
  return `${String(cpu.length)} cores (${model}), ${gib} GiB RAM, Node ${process.versions.node}`;
}

/** Writes the run's figures as `latest-<bench>.json` and returns the path. */
export function writeLatest(bench: string, figures: readonly Figure[]): string {
  const result: BenchResult = {
    bench,
    machine: describeMachine(),
    date: new Date().toISOString(),
    figures,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `latest-${bench}.json`);
  writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}

/** Reads a result file; undefined when it does not exist. */
export function readResult(path: string): BenchResult | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return parseResult(text, path);
}

/** Parses and checks a result file's content; throws with the file's name when it is malformed. */
export function parseResult(text: string, source: string): BenchResult {
  const data = JSON.parse(text) as Partial<BenchResult>;
  const ok =
    typeof data.bench === "string" &&
    typeof data.machine === "string" &&
    typeof data.date === "string" &&
    Array.isArray(data.figures) &&
    data.figures.every(
      (figure: Partial<Figure>) =>
        typeof figure.key === "string" &&
        typeof figure.value === "number" &&
        Number.isFinite(figure.value) &&
        typeof figure.unit === "string" &&
        (figure.better === "lower" || figure.better === "higher"),
    );
  if (!ok) throw new Error(`${source}: not a benchmark result (bench, machine, date, figures)`);
  return data as BenchResult;
}

export interface ComparedFigure {
  readonly key: string;
  readonly unit: string;
  readonly latest: number | undefined;
  readonly recorded: number | undefined;
  /** (latest − recorded) / |recorded|, in %; undefined when either side is missing or recorded is 0. */
  readonly changePercent: number | undefined;
  /** Worse than recorded by more than REGRESSION_THRESHOLD (from a recorded 0: worse at all). */
  readonly regression: boolean;
}

/**
 * Matches figures by key: every recorded figure in recorded order, then
 * figures only the latest run has. A change counts as a regression when it
 * goes the worse way by more than the threshold.
 */
export function compareFigures(
  latest: readonly Figure[],
  recorded: readonly Figure[],
): ComparedFigure[] {
  const latestByKey = new Map(latest.map((figure) => [figure.key, figure]));
  const recordedKeys = new Set(recorded.map((figure) => figure.key));
  const rows = recorded.map((old) => compareOne(old.key, latestByKey.get(old.key), old));
  for (const figure of latest)
    if (!recordedKeys.has(figure.key)) rows.push(compareOne(figure.key, figure, undefined));
  return rows;
}

function compareOne(
  key: string,
  latest: Figure | undefined,
  recorded: Figure | undefined,
): ComparedFigure {
  const unit = (latest ?? recorded)?.unit ?? "";
  const better = (latest ?? recorded)?.better ?? "lower";
  if (latest === undefined || recorded === undefined) {
    return {
      key,
      unit,
      latest: latest?.value,
      recorded: recorded?.value,
      changePercent: undefined,
      regression: false,
    };
  }
  // No percentage of zero (e.g. lost messages): any move the worse way regresses.
  if (recorded.value === 0) {
    const worse = better === "lower" ? latest.value > 0 : latest.value < 0;
    return {
      key,
      unit,
      latest: latest.value,
      recorded: 0,
      changePercent: undefined,
      regression: worse,
    };
  }
  const change = (latest.value - recorded.value) / Math.abs(recorded.value);
  const worse = better === "lower" ? change : -change;
  return {
    key,
    unit,
    latest: latest.value,
    recorded: recorded.value,
    changePercent: change * 100,
    regression: worse > REGRESSION_THRESHOLD,
  };
}

/** A plain-text table of a comparison, with a closing line counting regressions. */
export function formatComparison(
  bench: string,
  latest: BenchResult,
  recorded: BenchResult,
  rows: readonly ComparedFigure[],
): string {
  const number = (value: number | undefined): string =>
    value === undefined ? "–" : String(Number(value.toPrecision(4)));
  const table = [
    ["figure", "unit", "latest", "recorded", "change", ""],
    ...rows.map((row) => [
      row.key,
      row.unit,
      number(row.latest),
      number(row.recorded),
      row.changePercent === undefined
        ? "–"
        : `${row.changePercent >= 0 ? "+" : ""}${row.changePercent.toFixed(1)} %`,
      row.regression ? "REGRESSION" : "",
    ]),
  ];
  const widths = table[0]?.map((_, column) =>
    Math.max(...table.map((line) => (line[column] ?? "").length)),
  ) as number[];
  const lines = table.map((line) =>
    line
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join("  ")
      .trimEnd(),
  );
  const regressions = rows.filter((row) => row.regression).length;
  return [
    `${bench}: latest ${latest.date} (${latest.machine})`,
    `${" ".repeat(bench.length)}  recorded ${recorded.date} (${recorded.machine})`,
    ...lines,
    regressions === 0
      ? `no regressions (worse by > ${String(REGRESSION_THRESHOLD * 100)} %)`
      : `${String(regressions)} regression(s): worse by > ${String(REGRESSION_THRESHOLD * 100)} %`,
    "",
  ].join("\n");
}
