import { describe, expect, it } from "vitest";
import { parseExtractedFacts } from "../../src/agents/fact-extraction.ts";

describe("parseExtractedFacts", () => {
  it("takes a JSON array, even wrapped in prose or a code fence", () => {
    expect(
      parseExtractedFacts('```json\n[{"key":"Diet","content":"Dana is vegetarian."}]\n```'),
    ).toEqual([{ key: "diet", content: "Dana is vegetarian." }]);
    expect(parseExtractedFacts('Sure: [{"content":"Dana lives in Lyon."}] done')).toEqual([
      { key: null, content: "Dana lives in Lyon." },
    ]);
  });

  it("yields nothing for garbage, wrong shapes, empty arrays and oversized facts", () => {
    expect(parseExtractedFacts("no facts here")).toEqual([]);
    expect(parseExtractedFacts("[{broken json")).toEqual([]);
    expect(parseExtractedFacts('[{"content": 42}]')).toEqual([]);
    expect(parseExtractedFacts("[]")).toEqual([]);
    expect(parseExtractedFacts(JSON.stringify([{ content: "x".repeat(301) }]))).toEqual([]);
  });

  it("keeps at most five facts", () => {
    const many = Array.from({ length: 9 }, (_, index) => ({
      content: `Fact number ${String(index)}.`,
    }));
    expect(parseExtractedFacts(JSON.stringify(many))).toHaveLength(5);
  });
});
