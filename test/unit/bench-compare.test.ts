import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  compareFigures,
  formatComparison,
  parseResult,
  type BenchResult,
} from "../../bench/results.ts";

const fixture = (name: string): BenchResult => {
  const path = new URL(`../fixtures/bench-compare/${name}`, import.meta.url);
  return parseResult(readFileSync(path, "utf8"), name);
};
const recorded = fixture("recorded-runtime.json");
const latest = fixture("latest-runtime.json");

describe("comparing a bench's latest figures with the recorded ones", () => {
  const rows = compareFigures(latest.figures, recorded.figures);
  const row = (key: string) => rows.find((each) => each.key === key);

  it("gives the change in % and flags a change the worse way beyond 20 %", () => {
    // 3.5 -> 2.1 msg/s: -40 %, and fewer is worse.
    expect(row("switchboard.rooms=1.msg_per_s")?.changePercent).toBeCloseTo(-40, 5);
    expect(row("switchboard.rooms=1.msg_per_s")?.regression).toBe(true);
    // 279.6 -> 335 ms: +19.8 %, within the threshold.
    expect(row("switchboard.rooms=1.p50")?.changePercent).toBeCloseTo(19.81, 1);
    expect(row("switchboard.rooms=1.p50")?.regression).toBe(false);
    // 406.1 -> 520 ms: +28 %.
    expect(row("switchboard.rooms=1.p99")?.regression).toBe(true);
  });

  it("never flags an improvement, however large", () => {
    const better = compareFigures(
      [{ key: "p50", value: 10, unit: "ms", better: "lower" }],
      [{ key: "p50", value: 100, unit: "ms", better: "lower" }],
    );
    expect(better[0]).toMatchObject({ changePercent: -90, regression: false });
  });

  it("flags any loss over a recorded zero, without a percentage", () => {
    expect(row("switchboard.rooms=100.lost")).toMatchObject({
      latest: 3,
      recorded: 0,
      changePercent: undefined,
      regression: true,
    });
  });

  it("lists figures missing on either side without flagging them", () => {
    expect(row("switchboard.rooms=10.p50")).toMatchObject({
      latest: undefined,
      recorded: 1895,
      regression: false,
    });
    expect(row("switchboard.rooms=1.peak_rss")).toMatchObject({
      latest: 300,
      recorded: undefined,
      regression: false,
    });
    // Recorded order first, then the figures only the latest run has.
    expect(rows.map((each) => each.key).at(-1)).toBe("switchboard.rooms=1.peak_rss");
  });

  it("prints both runs' machines and dates, each figure, and the regression count", () => {
    const text = formatComparison("runtime", latest, recorded, rows);
    expect(text).toContain("2026-11-22T03:07:00.000Z");
    expect(text).toContain("AMD EPYC");
    expect(text).toMatch(
      /switchboard\.rooms=1\.msg_per_s\s+msg\/s\s+2\.1\s+3\.5\s+-40\.0 %\s+REGRESSION/,
    );
    expect(text).toMatch(/switchboard\.rooms=1\.p50\s+ms\s+335\s+279\.6\s+\+19\.8 %\n/);
    expect(text).toContain("3 regression(s)");
  });

  it("refuses a file that is not a benchmark result", () => {
    expect(() => parseResult('{"bench":"x","figures":[{"key":"a"}]}', "bad.json")).toThrow(
      /bad\.json: not a benchmark result/,
    );
  });
});
