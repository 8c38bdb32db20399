import { describe, expect, it } from "vitest";
import { barChartSvg, compactNumber, escapeXml, niceCeiling } from "../../src/portal/charts.ts";
import { schemaSummary, summariseOpenApi } from "../../src/portal/openapi-summary.ts";

const days = (values: readonly number[]) =>
  values.map((value, index) => ({ label: `05-${String(index + 1).padStart(2, "0")}`, value }));

const base = {
  id: "c",
  title: "Messages per day",
  description: "Ten days of messages.",
  xLabel: "Day (UTC)",
  yLabel: "Messages",
  unit: "messages",
};

describe("barChartSvg", () => {
  it("is labelled for screen readers and has one bar with a tooltip per point", () => {
    const svg = barChartSvg({ ...base, points: days([1, 2, 3]) });
    expect(svg).toMatch(/^<svg [^>]*role="img"[^>]*aria-labelledby="c-title c-desc"/);
    expect(svg).toContain('<title id="c-title">Messages per day</title>');
    expect(svg).toContain('<desc id="c-desc">Ten days of messages.</desc>');
    expect(svg.match(/<rect class="chart-bar"/g)).toHaveLength(3);
    expect(svg).toContain("<title>05-03: 3 messages</title>");
    expect(svg).toContain(">Day (UTC)</text>");
    expect(svg).toContain(">Messages</text>");
    expect(svg).not.toContain("style=");
    expect(svg).not.toContain("<script");
  });

  it("scales bars to a round axis maximum", () => {
    const svg = barChartSvg({ ...base, points: days([0, 50, 100]), height: 240 });
    const heights = [...svg.matchAll(/class="chart-bar"[^>]*height="([\d.]+)"/g)].map((m) =>
      Number(m[1]),
    );
    // Plot height is 240 - 16 - 44 = 180; the axis ends at 100.
    expect(heights).toEqual([0, 90, 180]);
    expect(svg).toContain(">100</text>");
  });

  it("draws the limit as a dashed line, and the axis reaches it", () => {
    const svg = barChartSvg({
      ...base,
      points: days([5, 10]),
      limit: 100,
      limitLabel: "daily limit 100",
    });
    expect(svg).toMatch(/<line class="chart-limit"[^>]*stroke-dasharray/);
    expect(svg).toContain("<title>daily limit 100</title>");
    expect(svg).toContain('aria-label="daily limit 100"');
    const limitY = /class="chart-limit" x1="\d+" x2="\d+" y1="([\d.]+)"/.exec(svg)?.[1];
    expect(Number(limitY)).toBe(16);
  });

  it("draws no limit line for unlimited plans", () => {
    const svg = barChartSvg({ ...base, points: days([5]), limit: null });
    expect(svg).not.toContain("chart-limit");
  });

  it("escapes every text it is given", () => {
    const svg = barChartSvg({
      ...base,
      id: 'x"y',
      title: "<script>alert(1)</script>",
      points: [{ label: "<b>&", value: 1 }],
    });
    expect(svg).not.toContain("<script>");
    expect(svg).not.toContain("<b>");
    expect(svg).toContain("&lt;script&gt;");
    expect(svg).toContain("&lt;b&gt;&amp;");
    expect(svg).toContain('id="x&quot;y-title"');
  });

  it("copes with no points and with all zeros", () => {
    expect(barChartSvg({ ...base, points: [] })).toContain("</svg>");
    const zeros = barChartSvg({ ...base, points: days([0, 0, 0]) });
    expect(zeros).not.toContain("NaN");
    expect(zeros).not.toContain("Infinity");
  });

  it("labels today and thins the other day labels so they do not overlap", () => {
    const points = days(Array.from({ length: 30 }, () => 1));
    const svg = barChartSvg({ ...base, points });
    const labels = [
      ...svg.matchAll(/<text class="chart-tick"[^>]*text-anchor="middle"[^>]*>([^<]+)</g),
    ].map((m) => m[1]);
    expect(labels.length).toBeLessThanOrEqual(10);
    expect(labels).toContain("05-30");
  });
});

describe("chart helpers", () => {
  it("rounds axis maxima up to 1, 2 or 5 times a power of ten", () => {
    expect(niceCeiling(0)).toBe(1);
    expect(niceCeiling(7)).toBe(10);
    expect(niceCeiling(101)).toBe(200);
    expect(niceCeiling(450)).toBe(500);
    expect(niceCeiling(1000)).toBe(1000);
  });
  it("writes big numbers short", () => {
    expect(compactNumber(950)).toBe("950");
    expect(compactNumber(2500)).toBe("2.5k");
    expect(compactNumber(20_000_000)).toBe("20M");
  });
  it("escapes XML", () => {
    expect(escapeXml(`<a href="x">'&'</a>`)).toBe(
      "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;",
    );
  });
});

describe("OpenAPI summaries", () => {
  it("writes schemas as one readable line", () => {
    expect(
      schemaSummary({
        type: "object",
        properties: {
          email: { type: "string", format: "email" },
          tags: { type: "array", items: { type: "string" } },
          role: { enum: ["admin", "member"] },
          note: { anyOf: [{ type: "string" }, { type: "null" }] },
        },
        required: ["email", "role"],
      }),
    ).toBe(
      '{ email: string(email), tags?: string[], role: "admin" | "member", note?: string | null }',
    );
    expect(schemaSummary({ $ref: "#/components/schemas/X" }, { X: { type: "integer" } })).toBe(
      "integer",
    );
  });

  it("groups operations by tag with parameters, body and responses", () => {
    const groups = summariseOpenApi({
      paths: {
        "/api/v1/b": {
          put: {
            tags: ["b"],
            summary: "Put b",
            parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
            requestBody: {
              content: {
                "application/json": {
                  schema: { type: "object", properties: { x: { type: "number" } } },
                },
              },
            },
            responses: {
              200: {
                description: "ok",
                content: { "application/json": { schema: { type: "boolean" } } },
              },
              204: { description: "Nothing" },
            },
          },
        },
        "/api/v1/a": { get: { tags: ["a"], summary: "Get a", responses: {} } },
      },
    });
    expect(groups.map((group) => group.tag)).toEqual(["a", "b"]);
    expect(groups[1]?.operations[0]).toEqual({
      method: "PUT",
      path: "/api/v1/b",
      summary: "Put b",
      parameters: [{ name: "id", in: "path", required: true, type: "string", description: "" }],
      requestBody: "{ x?: number }",
      responses: [
        { status: "200", type: "boolean" },
        { status: "204", type: "Nothing" },
      ],
    });
  });
});
