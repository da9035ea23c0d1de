// Usage and cost per flow over time (admin keys of the whole org): the usage API grouped by flow,
// asked once per time bucket (hours of the last day, or days of the last week or month), drawn as
// stacked bars, with the period's totals per flow in a table.

import { api, session } from "./api.js";
import { clear, formatCost, h } from "./dom.js";
import { stackedBars } from "./chart.js";

const RANGES = {
  day: { label: "Last 24 hours", count: 24, ms: 3_600_000 },
  week: { label: "Last 7 days", count: 7, ms: 86_400_000 },
  month: { label: "Last 30 days", count: 30, ms: 86_400_000 },
};
const count = (v) => (Number.isInteger(v) ? v.toLocaleString() : v.toFixed(1));
const METRICS = {
  cost: { label: "Cost (USD)", of: (g) => Number(g.costUsd), format: (v) => formatCost(v) },
  tokens: { label: "Tokens", of: (g) => g.tokens.total, format: (v) => count(v) },
  runs: { label: "Runs", of: (g) => g.runs, format: (v) => count(v) },
};

function bucketLabel(start, hourly) {
  return hourly ? `${String(start.getHours()).padStart(2, "0")}:00` : start.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

export async function render(main, params, signal) {
  const org = session.me.org;
  main.append(h("h1", {}, "Usage"));
  if (!session.can("admin") || session.me.project) {
    main.append(h("p", { class: "empty" }, "Usage and cost need an admin key of the whole org."));
    main.dataset.ready = "usage";
    return;
  }
  const range = RANGES[params.range] ? params.range : "week";
  const metric = METRICS[params.metric] ? params.metric : "cost";
  const spec = RANGES[range];
  const hourly = spec.ms < 86_400_000;
  const end = new Date();
  if (hourly) end.setMinutes(60, 0, 0);
  else end.setHours(24, 0, 0, 0);
  const starts = Array.from({ length: spec.count }, (_, i) => new Date(end.getTime() - (spec.count - i) * spec.ms));
  const picker = h(
    "form",
    { class: "filters", "aria-label": "Usage period" },
    h("div", { class: "field" }, h("label", { for: "u-range" }, "Period"), h("select", { id: "u-range", name: "range" }, Object.entries(RANGES).map(([k, r]) => h("option", { value: k, selected: k === range }, r.label)))),
    h("div", { class: "field" }, h("label", { for: "u-metric" }, "Show"), h("select", { id: "u-metric", name: "metric" }, Object.entries(METRICS).map(([k, m]) => h("option", { value: k, selected: k === metric }, m.label)))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Show")),
  );
  picker.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/usage?${new URLSearchParams({ range: picker.elements.range.value, metric: picker.elements.metric.value })}`;
  });
  const chartBox = h("div", { id: "usage-chart", class: "card" });
  const tableBox = h("div", { id: "usage-table" });
  main.append(picker, chartBox, tableBox);

  const ask = (from, to) => api.get(`orgs/${org}/usage`, { group_by: "flow", from: from.toISOString(), to: to.toISOString() }, signal);
  const [total, ...perBucket] = await Promise.all([ask(starts[0], end), ...starts.map((start) => ask(start, new Date(start.getTime() + spec.ms)))]);
  const of = METRICS[metric].of;
  const series = total.usage.map((g) => g.group ?? "(none)");
  const buckets = perBucket.map((answer, i) => ({
    label: bucketLabel(starts[i], hourly),
    values: Object.fromEntries(answer.usage.map((g) => [g.group ?? "(none)", of(g)])),
  }));
  clear(chartBox).append(
    h("h2", {}, `${METRICS[metric].label} per flow, ${spec.label.toLowerCase()}`),
    series.length ? stackedBars(buckets, series, METRICS[metric].format, `${METRICS[metric].label} per flow per ${hourly ? "hour" : "day"}`) : h("p", { class: "empty" }, "No usage in this period."),
  );
  clear(tableBox).append(
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "usage" },
        h("caption", {}, `Totals, ${spec.label.toLowerCase()}`),
        h("thead", {}, h("tr", {}, ["Flow", "Cost", "Tokens", "Steps", "Runs"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          [...total.usage, { ...total.total, group: "Total" }].map((g) =>
            h("tr", {}, h("th", { scope: "row" }, g.group ?? "(none)"), h("td", { class: "num" }, formatCost(g.costUsd)), h("td", { class: "num" }, g.tokens.total.toLocaleString()), h("td", { class: "num" }, String(g.steps)), h("td", { class: "num" }, String(g.runs))),
          ),
        ),
      ),
    ),
  );
  main.dataset.ready = "usage";
}
