/** One bar: its label on the x axis (e.g. a day) and its value. */
export interface ChartPoint {
  readonly label: string;
  readonly value: number;
}

export interface BarChartInput {
  /** Unique on the page: prefixes the ids that aria-labelledby points at. */
  readonly id: string;
  readonly title: string;
  /** A sentence for screen readers summarising the chart. */
  readonly description: string;
  readonly points: readonly ChartPoint[];
  readonly xLabel: string;
  readonly yLabel: string;
  /** The unit a bar's tooltip names after its value, e.g. "messages". */
  readonly unit: string;
  /** Drawn as a dashed horizontal line; null or undefined: no limit. */
  readonly limit?: number | null;
  readonly limitLabel?: string | undefined;
  readonly width?: number;
  readonly height?: number;
}

const MARGIN = { top: 16, right: 16, bottom: 44, left: 64 } as const;
const Y_TICKS = 4;
/** About this many x labels fit under a 720-pixel-wide chart without overlapping. */
const MAX_X_LABELS = 10;

export function escapeXml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** The smallest 1/2/5 × 10^n at or above `value` (axes end on round numbers). */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/** One decimal at most: short attributes and labels. */
const round = (value: number): string => String(Math.round(value * 10) / 10);

/** 1 234 567 → "1.2M": axis labels stay short. */
export function compactNumber(value: number): string {
  if (value >= 1_000_000) return `${round(value / 1_000_000)}M`;
  if (value >= 1_000) return `${round(value / 1_000)}k`;
  return round(value);
}

/**
 * An accessible SVG bar chart as a string, for server-side pages: a <title>
 * and <desc> it is labelled by, a tooltip <title> on every bar, labelled
 * axes, and the limit as a dashed line. Every text is escaped; no scripts,
 * no inline styles (the CSP allows neither): looks come from classes and
 * presentation attributes.
 */
export function barChartSvg(input: BarChartInput): string {
  const width = input.width ?? 720;
  const height = input.height ?? 240;
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = height - MARGIN.top - MARGIN.bottom;
  const values = input.points.map((point) => Math.max(0, point.value));
  const limit = input.limit ?? null;
  const yMax = niceCeiling(Math.max(1, limit ?? 0, ...values));
  const y = (value: number): number => MARGIN.top + plotHeight - (value / yMax) * plotHeight;
  const slot = input.points.length === 0 ? plotWidth : plotWidth / input.points.length;
  const barWidth = Math.max(1, slot * 0.7);
  const id = escapeXml(input.id);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 ${String(width)} ${String(height)}" width="100%" role="img" aria-labelledby="${id}-title ${id}-desc">`,
    `<title id="${id}-title">${escapeXml(input.title)}</title>`,
    `<desc id="${id}-desc">${escapeXml(input.description)}</desc>`,
  ];

  for (let tick = 0; tick <= Y_TICKS; tick++) {
    const value = (yMax / Y_TICKS) * tick;
    const at = round(y(value));
    parts.push(
      `<line class="chart-grid" x1="${String(MARGIN.left)}" x2="${String(width - MARGIN.right)}" y1="${at}" y2="${at}" stroke="#ddd" stroke-width="1"/>`,
      `<text class="chart-tick" x="${String(MARGIN.left - 6)}" y="${at}" text-anchor="end" dominant-baseline="middle" font-size="11">${escapeXml(compactNumber(value))}</text>`,
    );
  }

  const labelEvery = Math.max(1, Math.ceil(input.points.length / MAX_X_LABELS));
  input.points.forEach((point, index) => {
    const value = values[index] ?? 0;
    const x = MARGIN.left + slot * index + (slot - barWidth) / 2;
    const top = y(value);
    const label = `${point.label}: ${String(value)} ${input.unit}`;
    parts.push(
      `<rect class="chart-bar" x="${round(x)}" y="${round(top)}" width="${round(barWidth)}" height="${round(MARGIN.top + plotHeight - top)}" fill="#3b6fd8" aria-label="${escapeXml(label)}"><title>${escapeXml(label)}</title></rect>`,
    );
    // The last bar is today: always labelled, and the others count back from it.
    if ((input.points.length - 1 - index) % labelEvery === 0)
      parts.push(
        `<text class="chart-tick" x="${round(x + barWidth / 2)}" y="${String(height - MARGIN.bottom + 14)}" text-anchor="middle" font-size="11">${escapeXml(point.label)}</text>`,
      );
  });

  const axisY = String(MARGIN.top + plotHeight);
  parts.push(
    `<line class="chart-axis" x1="${String(MARGIN.left)}" x2="${String(width - MARGIN.right)}" y1="${axisY}" y2="${axisY}" stroke="#666" stroke-width="1"/>`,
  );
  if (limit !== null) {
    const at = round(y(limit));
    const text = input.limitLabel ?? `limit ${compactNumber(limit)}`;
    parts.push(
      `<line class="chart-limit" x1="${String(MARGIN.left)}" x2="${String(width - MARGIN.right)}" y1="${at}" y2="${at}" stroke="#c0392b" stroke-width="2" stroke-dasharray="6 4" aria-label="${escapeXml(text)}"><title>${escapeXml(text)}</title></line>`,
      `<text class="chart-limit-label" x="${String(width - MARGIN.right)}" y="${round(y(limit) - 4)}" text-anchor="end" font-size="11" fill="#c0392b">${escapeXml(text)}</text>`,
    );
  }
  parts.push(
    `<text class="chart-axis-label" x="${String(MARGIN.left + plotWidth / 2)}" y="${String(height - 6)}" text-anchor="middle" font-size="12">${escapeXml(input.xLabel)}</text>`,
    `<text class="chart-axis-label" x="14" y="${String(MARGIN.top + plotHeight / 2)}" text-anchor="middle" font-size="12" transform="rotate(-90 14 ${String(MARGIN.top + plotHeight / 2)})">${escapeXml(input.yLabel)}</text>`,
    "</svg>",
  );
  return parts.join("\n");
}
