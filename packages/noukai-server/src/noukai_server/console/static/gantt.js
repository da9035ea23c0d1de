// The step timeline as a Gantt chart (SVG): one row per step, one bar per attempt (retries side by
// side in the row), the time spent waiting for the caller's tool results hatched inside the bar,
// a running attempt open-ended up to "now". Every bar has a <title> (tooltip and accessible name).

import { formatDuration, s } from "./dom.js";

const WIDTH = 960;
const LABEL = 170;
const ROW = 30;
const AXIS = 26;
const PAD = 10;

function ticks(span) {
  const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000, 600_000, 3_600_000];
  const step = steps.find((t) => span / t <= 8) ?? span / 8;
  const out = [];
  for (let t = 0; t <= span + 1e-9; t += step) out.push(t);
  return out;
}

/**
 * rows: [{id, label, attempts: [{attempt, status, start, end, waitMs}]}] with start/end in epoch
 * ms (end null while running). Returns an <svg> element.
 */
export function gantt(rows, now = Date.now()) {
  const starts = rows.flatMap((r) => r.attempts.map((a) => a.start)).filter(Number.isFinite);
  const origin = starts.length ? Math.min(...starts) : now;
  const ends = rows.flatMap((r) => r.attempts.map((a) => a.end ?? now));
  const span = Math.max(1, Math.max(origin + 1, ...ends) - origin);
  const plot = WIDTH - LABEL - 40; // room for the last tick's label
  const x = (t) => LABEL + ((t - origin) / span) * plot;
  const height = AXIS + rows.length * ROW + PAD;

  const svg = s("svg", {
    class: "gantt",
    viewBox: `0 0 ${WIDTH} ${height}`,
    role: "img",
    "aria-labelledby": "gantt-title",
    "data-rows": rows.length,
  });
  svg.append(
    s("title", { id: "gantt-title" }, `Step timeline: ${rows.length} steps over ${formatDuration(span)}`),
    s(
      "defs",
      {},
      s(
        "pattern",
        { id: "gantt-wait", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
        s("rect", { width: 6, height: 6, class: "wait-bg" }),
        s("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "wait-line" }),
      ),
    ),
  );
  for (const t of ticks(span)) {
    const tx = x(origin + t);
    svg.append(
      s("line", { x1: tx, x2: tx, y1: AXIS - 4, y2: height - PAD, class: "grid" }),
      s("text", { x: tx, y: AXIS - 10, class: "tick", "text-anchor": "middle" }, formatDuration(t)),
    );
  }
  rows.forEach((row, i) => {
    const y = AXIS + i * ROW;
    const group = s("g", { class: "row", "data-step": row.id });
    group.append(
      s("text", { x: LABEL - 8, y: y + ROW / 2 + 4, class: "label", "text-anchor": "end" }, row.label),
    );
    for (const a of row.attempts) {
      if (!Number.isFinite(a.start)) continue;
      const end = a.end ?? now;
      const left = x(a.start);
      const width = Math.max(2, x(end) - left);
      const wall = end - a.start;
      const wait = Math.min(a.waitMs || 0, wall);
      const bits = [`attempt ${a.attempt}: ${a.status}`, formatDuration(wall)];
      if (wait) bits.push(`waited ${formatDuration(wait)} for tool results`);
      const bar = s(
        "g",
        { class: `bar status-${a.status}`, "data-attempt": a.attempt },
        s("title", {}, `${row.label}, ${bits.join(", ")}`),
        s("rect", { x: left, y: y + 5, width, height: ROW - 10, rx: 3 }),
      );
      if (wait) {
        // The log records how long the wait was, not where in the attempt: drawn at its end.
        const ww = Math.max(1, (wait / span) * plot);
        bar.append(s("rect", { x: left + width - ww, y: y + 5, width: ww, height: ROW - 10, class: "wait", fill: "url(#gantt-wait)" }));
      }
      if (row.attempts.length > 1 || a.attempt > 1) {
        bar.append(s("text", { x: left + 4, y: y + ROW / 2 + 4, class: "attempt" }, `#${a.attempt}`));
      }
      group.append(bar);
    }
    svg.append(group);
  });
  return svg;
}
