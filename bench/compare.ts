/**
 * Prints each bench's latest figures beside the figures recorded in
 * BENCHMARKS.md, with the change in % and the regressions (worse by more
 * than 20 %). Exits 1 when there is a regression, 2 on a usage error.
 *
 *   npm run bench -- compare [runtime|portal|provisioning|memory|density ...]
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compareFigures, formatComparison, readResult, RESULTS_DIR } from "./results.ts";

const { positionals } = parseArgs({ allowPositionals: true });
const [command, ...named] = positionals;
if (command !== "compare") {
  process.stderr.write("usage: npm run bench -- compare [bench ...]\n");
  process.exit(2);
}

const recordedBenches = readdirSync(RESULTS_DIR)
  .map((file) => /^recorded-(.+)\.json$/.exec(file)?.[1])
  .filter((bench) => bench !== undefined)
  .sort();
const benches = named.length > 0 ? named : recordedBenches;

let regressions = 0;
for (const bench of benches) {
  const recorded = readResult(join(RESULTS_DIR, `recorded-${bench}.json`));
  if (recorded === undefined) {
    process.stderr.write(
      `${bench}: nothing recorded (benches with recorded figures: ${recordedBenches.join(", ")})\n`,
    );
    process.exitCode = 2;
    continue;
  }
  const latest = readResult(join(RESULTS_DIR, `latest-${bench}.json`));
  if (latest === undefined) {
    process.stdout.write(`${bench}: no latest figures yet (run npm run bench:${bench})\n\n`);
    continue;
  }
  const rows = compareFigures(latest.figures, recorded.figures);
  regressions += rows.filter((row) => row.regression).length;
  process.stdout.write(`${formatComparison(bench, latest, recorded, rows)}\n`);
}
if (regressions > 0) process.exitCode = 1;
