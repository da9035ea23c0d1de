// A stacked bar chart (SVG): one bar per time bucket, one colour per series (a flow), a legend,
// and a <title> on every segment; the page shows the same figures in a table for screen readers.

import { h, s } from "./dom.js";

const WIDTH = 960;
const HEIGHT = 300;
const LEFT = 70;
const BOTTOM = 40;
const TOP = 12;

/** The top of the axis: four equal steps of a round size (1, 2 or 5 times a power of ten). */
function niceMax(value) {
  if (value <= 0) return 4;
  const raw = value / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  return 4 * [1, 2, 5, 10].map((m) => m * power).find((m) => m >= raw);
}

/** buckets: [{label, values: {series: number}}]; series: names in legend order. */
export function stackedBars(buckets, series, format, title) {
  const totals = buckets.map((b) => series.reduce((sum, name) => sum + (b.values[name] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const plotW = WIDTH - LEFT - 10;
  const plotH = HEIGHT - TOP - BOTTOM;
  const slot = plotW / Math.max(1, buckets.length);
  const barW = Math.max(2, slot * 0.7);
  const y = (v) => TOP + plotH - (v / max) * plotH;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": title });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(
      s("line", { x1: LEFT, x2: WIDTH - 10, y1: y(v), y2: y(v), class: "grid" }),
      s("text", { x: LEFT - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, format(v)),
    );
  }
  const every = Math.ceil(buckets.length / 12);
  buckets.forEach((bucket, i) => {
    const x = LEFT + i * slot + (slot - barW) / 2;
    let base = 0;
    series.forEach((name, k) => {
      const v = bucket.values[name] || 0;
      if (v <= 0) return;
      svg.append(
        s(
          "rect",
          { x, y: y(base + v), width: barW, height: Math.max(1, y(base) - y(base + v)), class: `series-${k % 8}`, "data-series": name },
          s("title", {}, `${bucket.label}, ${name}: ${format(v)}`),
        ),
      );
      base += v;
    });
    if (i % every === 0) {
      svg.append(s("text", { x: x + barW / 2, y: HEIGHT - BOTTOM + 16, class: "axis", "text-anchor": "middle" }, bucket.label));
    }
  });
  const legend = h(
    "ul",
    { class: "legend", "aria-label": "Legend" },
    series.map((name, k) => h("li", {}, h("span", { class: `swatch series-${k % 8}`, "aria-hidden": "true" }), name)),
  );
  return h("figure", { class: "chart-figure" }, svg, legend);
}
