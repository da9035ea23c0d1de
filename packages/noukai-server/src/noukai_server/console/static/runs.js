// The runs list: filters in the URL hash (shareable, back button works), one server-side page at a
// time with the API's cursor (never the whole table), and the first page polled every few seconds
// while it is shown, so new runs and status changes appear without a reload.

import { api, session } from "./api.js";
import { badge, clear, errorBox, formatDuration, formatTime, h } from "./dom.js";

const STATUSES = ["queued", "running", "waiting", "completed", "failed", "cancelled"];
const POLL_MS = 3000;
const PAGE_SIZE = 50;

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

function fromLocalInput(value) {
  return value ? new Date(value).toISOString() : "";
}

/** The API query for the filters in the hash. */
export function listQuery(params) {
  return {
    project: session.me.project ? undefined : session.project || undefined,
    flow: params.flow,
    status: params.status,
    since: params.since,
    until: params.until,
    metadata: (params.metadata || "").split(/[\s,]+/).filter(Boolean),
    limit: PAGE_SIZE,
    cursor: params.cursor,
  };
}

function filtersForm(params, flows) {
  const chosen = new Set((params.status || "").split(",").filter(Boolean));
  const flow = h(
    "select",
    { id: "f-flow", name: "flow" },
    h("option", { value: "" }, "Any flow"),
    flows.map((f) => h("option", { value: f.slug, selected: f.slug === params.flow }, f.slug)),
  );
  const statuses = h(
    "fieldset",
    { class: "statuses" },
    h("legend", {}, "Status"),
    STATUSES.map((status) =>
      h(
        "label",
        { class: "check" },
        h("input", { type: "checkbox", name: "status", value: status, checked: chosen.has(status) }),
        status,
      ),
    ),
  );
  const since = h("input", { id: "f-since", name: "since", type: "datetime-local", value: toLocalInput(params.since) });
  const until = h("input", { id: "f-until", name: "until", type: "datetime-local", value: toLocalInput(params.until) });
  const metadata = h("input", {
    id: "f-metadata",
    name: "metadata",
    value: params.metadata || "",
    placeholder: "key:value key2:value2",
    autocomplete: "off",
  });
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter runs" },
    h("div", { class: "field" }, h("label", { for: "f-flow" }, "Flow"), flow),
    statuses,
    h("div", { class: "field" }, h("label", { for: "f-since" }, "Created from"), since),
    h("div", { class: "field" }, h("label", { for: "f-until" }, "Created before"), until),
    h("div", { class: "field" }, h("label", { for: "f-metadata" }, "Metadata"), metadata),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("a", { href: "#/runs", class: "button" }, "Clear"),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (flow.value) query.set("flow", flow.value);
    const picked = [...form.querySelectorAll("input[name=status]:checked")].map((i) => i.value);
    if (picked.length) query.set("status", picked.join(","));
    if (since.value) query.set("since", fromLocalInput(since.value));
    if (until.value) query.set("until", fromLocalInput(until.value));
    if (metadata.value.trim()) query.set("metadata", metadata.value.trim());
    location.hash = `#/runs${query.size ? `?${query}` : ""}`;
  });
  return form;
}

function metadataText(metadata) {
  return Object.entries(metadata || {})
    .map(([k, v]) => `${k}:${v}`)
    .join(" ");
}

function row(run) {
  const id = run.executionId;
  return h(
    "tr",
    { dataset: { run: id, status: run.status } },
    h("td", {}, h("a", { href: `#/runs/${id}`, class: "mono", title: id }, id.slice(0, 8))),
    h("td", {}, run.flow ?? run.flowId.slice(0, 8)),
    h("td", { class: "num" }, run.flowVersion === 0 ? "draft" : `v${run.flowVersion}`),
    h("td", {}, badge(run.status)),
    h("td", {}, run.triggerType),
    h("td", {}, h("time", { datetime: run.createdAt }, formatTime(run.createdAt))),
    h("td", { class: "num" }, formatDuration(run.durationMs)),
    h("td", { class: "meta" }, metadataText(run.metadata)),
  );
}

function table(runs) {
  if (!runs.length) return h("p", { class: "empty" }, "No runs match these filters.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "runs" },
      h("caption", { class: "visually-hidden" }, "Runs, newest first"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Run", "Flow", "Version", "Status", "Trigger", "Created", "Duration", "Metadata"].map((c) =>
            h("th", { scope: "col" }, c),
          ),
        ),
      ),
      h("tbody", {}, runs.map(row)),
    ),
  );
}

function pager(params, nextCursor) {
  const back = (params.back || "").split(".").filter((c) => c !== "");
  const links = [];
  if (params.cursor) {
    const prev = new URLSearchParams({ ...params });
    const previous = back.pop();
    if (previous && previous !== "-") prev.set("cursor", previous);
    else prev.delete("cursor");
    if (back.length) prev.set("back", back.join("."));
    else prev.delete("back");
    links.push(h("a", { href: `#/runs?${prev}`, class: "button", rel: "prev" }, "← Newer"));
    links.push(h("a", { href: `#/runs?${new URLSearchParams(withoutPaging(params))}`, class: "button" }, "Newest"));
  }
  if (nextCursor) {
    const next = new URLSearchParams({ ...params, cursor: nextCursor });
    next.set("back", [...(params.back || "").split(".").filter(Boolean), params.cursor || "-"].join("."));
    links.push(h("a", { href: `#/runs?${next}`, class: "button", rel: "next" }, "Older →"));
  }
  return h("nav", { class: "pager", "aria-label": "Pages of runs" }, links);
}

function withoutPaging(params) {
  const { cursor, back, ...rest } = params;
  return rest;
}

export async function render(main, params, signal) {
  const flows = await loadFlows();
  const live = h("span", { class: "live", "aria-live": "off" });
  const results = h("div", { id: "runs-results", "aria-live": "polite", "aria-busy": "true" });
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Runs"), live),
    filtersForm(params, flows),
    results,
  );
  let shown = "";
  const load = async () => {
    const page = await api.get("runs", listQuery(params), signal);
    // Redraw only when something changed: a redraw would take the keyboard focus off a row.
    const now = JSON.stringify([page.nextCursor, page.runs.map((r) => [r.executionId, r.status, r.durationMs])]);
    if (now === shown) return page;
    shown = now;
    clear(results).append(table(page.runs), pager(params, page.nextCursor));
    results.setAttribute("aria-busy", "false");
    return page;
  };
  try {
    await load();
  } catch (error) {
    if (error.status === 404 && !error.code?.startsWith("RUN")) {
      clear(results).append(errorBox({ code: error.code, message: "this server has no runs list (GET /api/v1/runs)" }));
    } else {
      clear(results).append(errorBox(error));
    }
    main.dataset.ready = "runs";
    return;
  }
  main.dataset.ready = "runs";
  if (params.cursor) return; // older pages do not change at the top: only the first page is live
  live.textContent = "Live";
  const timer = setInterval(async () => {
    if (document.hidden) return;
    try {
      await load();
    } catch {
      /* a failed poll keeps the last page; the next one tries again */
    }
  }, POLL_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}

async function loadFlows() {
  if (!session.project) return [];
  try {
    const body = await api.get(`flows/${session.me.org}/${session.project}`);
    return body.flows;
  } catch {
    return [];
  }
}
