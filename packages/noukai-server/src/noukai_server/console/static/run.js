// A run's page: its state and actions (cancel, re-run, resume a tool pause), the step timeline,
// each step's input, streamed output, tokens, cost, tool calls and error, and the raw events.
// Events come from the run's resumable stream (GET /runs/{id}/events) and are drawn at most once
// per animation frame, so a burst of tokens costs one layout; exact step times come from the
// run's trace, fetched again at each step boundary.

import { api, followRun, session } from "./api.js";
import { badge, clear, errorBox, formatCost, formatDuration, formatTime, h, pretty, toast } from "./dom.js";
import { gantt } from "./gantt.js";
import { RunModel, isTerminal } from "./runmodel.js";

const BOUNDARIES = new Set(["step_completed", "step_error", "step_retrying", "step_paused_for_tool_calls", "flow_completed", "run_failed", "run_cancelled"]);

/** Where the run's flow lives: the run says so (org, project, flow); an older server does not, then
 * the flow is found by id among the signed-in project's flows. */
async function flowAddress(run) {
  if (run.org && run.project && run.flow) return { org: run.org, project: run.project, slug: run.flow };
  if (!session.project) return null;
  const { flows } = await api.get(`flows/${session.me.org}/${session.project}`);
  const flow = flows.find((f) => f.id === run.flowId);
  return flow ? { org: session.me.org, project: session.project, slug: flow.slug } : null;
}

function header(run, address) {
  const rows = [
    ["Status", badge(run.status)],
    ["Flow", address ? h("a", { href: `#/flows/${encodeURIComponent(address.slug)}` }, `${address.org}/${address.project}/${address.slug}`) : run.flowId],
    ["Version", run.flowVersion === 0 ? "draft" : `v${run.flowVersion}`],
    ["Trigger", run.triggerType],
    ["Created", formatTime(run.createdAt)],
    ["Duration", formatDuration(run.durationMs ?? (run.completedAt ? new Date(run.completedAt) - new Date(run.createdAt) : null))],
  ];
  if (run.attempt > 1) rows.push(["Worker claims", String(run.attempt)]);
  if (run.rerunOf) rows.push(["Re-run of", h("a", { href: `#/runs/${run.rerunOf}`, class: "mono" }, run.rerunOf.slice(0, 8)), run.rerunFromStep ? ` from step ${run.rerunFromStep}` : ""]);
  if (run.traceId) rows.push(["Trace id", h("code", {}, run.traceId)]);
  const meta = Object.entries(run.metadata || {});
  if (meta.length) rows.push(["Metadata", meta.map(([k, v]) => h("span", { class: "tag" }, `${k}: ${v}`))]);
  return h("dl", { class: "facts" }, rows.map(([term, ...value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function toolTable(attempt) {
  if (!attempt.tools.size) return null;
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "tools" },
      h("caption", {}, "Tool calls"),
      h("thead", {}, h("tr", {}, ["Tool", "Side", "Arguments", "Result", "Duration"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        [...attempt.tools.values()].map((call) =>
          h(
            "tr",
            { dataset: { call: call.id } },
            h("th", { scope: "row" }, call.name),
            h("td", {}, call.side),
            h("td", {}, h("pre", {}, prettyJsonText(call.arguments))),
            h("td", {}, call.error ? h("pre", { class: "error-text" }, call.error) : call.result === null ? h("em", {}, "waiting") : h("pre", {}, call.result)),
            h("td", { class: "num" }, formatDuration(call.durationMs)),
          ),
        ),
      ),
    ),
  );
}

function prettyJsonText(text) {
  if (typeof text !== "string") return pretty(text);
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function stepCard(step, traceStep) {
  const attempts = [...step.attempts.values()].sort((a, b) => a.attempt - b.attempt);
  const last = attempts[attempts.length - 1];
  const facts = [
    last.model && `model ${last.model}`,
    last.durationMs != null && formatDuration(last.durationMs),
    last.tokens && (last.tokens.total > 0 || last.model) && `${last.tokens.prompt} + ${last.tokens.completion} = ${last.tokens.total} tokens`,
    last.costUsd != null && formatCost(last.costUsd),
    attempts.length > 1 && `${attempts.length} attempts`,
  ].filter(Boolean);
  const output = last.status === "completed" && last.final !== undefined && typeof last.final !== "string" ? pretty(last.final) : last.output || (last.final !== undefined ? pretty(last.final) : "");
  const input = last.input ?? traceStep?.inputContext;
  return h(
    "section",
    { class: `step card status-${last.status}`, "aria-labelledby": `step-${step.id}`, dataset: { step: step.id, status: last.status } },
    h(
      "header",
      {},
      h("h3", { id: `step-${step.id}` }, `${step.index + 1}. ${step.name || step.id}`, step.name ? h("span", { class: "hint" }, ` (${step.id})`) : null),
      step.type ? h("span", { class: "type" }, step.type) : null,
      badge(last.status),
    ),
    facts.length ? h("p", { class: "facts-line" }, facts.join(" · ")) : null,
    attempts
      .filter((a) => a.error)
      .map((a) => h("div", { class: "error", role: a === last ? "alert" : false }, h("strong", {}, `Attempt ${a.attempt}: `), h("code", {}, a.error.code), " ", a.error.message)),
    input ? h("details", {}, h("summary", {}, "Input"), h("pre", { class: "input" }, pretty(input))) : null,
    last.reasoning ? h("details", {}, h("summary", {}, "Reasoning"), h("pre", {}, last.reasoning)) : null,
    h("div", { class: "output-label" }, "Output"),
    h("pre", { class: "output", "aria-live": last.status === "running" ? "polite" : "off" }, output),
    toolTable(last),
  );
}

function pauseForm(run, model, address) {
  const pause = model.pause;
  if (!pause || run.status !== "waiting") return null;
  const step = model.steps.get(pause.stepId);
  const attempt = step?.attempts.get(pause.attempt);
  const pending = pause.toolCalls.filter((c) => attempt?.tools.get(c.id)?.result == null);
  if (!pending.length) return null;
  const canRun = session.can("run");
  const fields = pending.map((call, i) =>
    h(
      "div",
      { class: "field" },
      h("label", { for: `tool-result-${i}` }, `Result of ${call.function.name}`, h("span", { class: "hint" }, ` (${call.id})`)),
      h("pre", { class: "args", id: `tool-args-${i}` }, prettyJsonText(call.function.arguments)),
      h("textarea", { id: `tool-result-${i}`, name: call.id, rows: 3, required: true, disabled: !canRun, "aria-describedby": `tool-args-${i}` }),
    ),
  );
  const form = h(
    "form",
    { class: "card pause", "aria-labelledby": "pause-title" },
    h("h2", { id: "pause-title" }, "Waiting for tool results"),
    h("p", {}, `Step ${pause.stepId} asked the caller for ${pending.length} tool result${pending.length > 1 ? "s" : ""}. Enter them to resume the run.`),
    fields,
    h("button", { type: "submit", class: "primary", disabled: !canRun }, "Resume run"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    const messages = pending.map((call) => ({ role: "tool", tool_call_id: call.id, content: form.elements[call.id].value }));
    const path = `seq/${address.org}/${address.project}/${address.slug}/v${run.flowVersion}/execute`;
    toast("Resuming the run…");
    try {
      // The answer comes when the run ends or pauses again; the events show it going on
      // meanwhile, and the form goes away as soon as the results are in the run's log.
      await api.post(path, { executionId: run.executionId, pausedAtStep: pause.stepId, toolCallMessages: messages });
    } catch (error) {
      toast(`${error.code}: ${error.message}`, "error");
      if (form.isConnected) form.append(errorBox(error));
      button.disabled = false;
    }
  });
  return form;
}

function actions(run, model, refresh) {
  const canRun = session.can("run");
  const buttons = [];
  if (!isTerminal(run.status)) {
    buttons.push(
      h(
        "button",
        {
          type: "button",
          class: "danger",
          disabled: !canRun || run.cancelRequested,
          title: canRun ? "Stop the run" : "Needs a key with the run scope",
          onclick: async (event) => {
            event.currentTarget.disabled = true;
            try {
              await api.post(`runs/${run.executionId}/cancel`);
              toast("Cancel requested");
              refresh();
            } catch (error) {
              toast(`${error.code}: ${error.message}`, "error");
            }
          },
        },
        run.cancelRequested ? "Cancelling…" : "Cancel run",
      ),
    );
  }
  const from = h(
    "select",
    { id: "rerun-from", disabled: !canRun },
    h("option", { value: "" }, "from the start"),
    model.ordered().slice(1).map((step) => h("option", { value: step.id }, `from step ${step.id}`)),
  );
  buttons.push(
    h(
      "div",
      { class: "rerun" },
      h("label", { for: "rerun-from", class: "visually-hidden" }, "Re-run from"),
      from,
      h(
        "button",
        {
          type: "button",
          disabled: !canRun,
          title: canRun ? "Start a new run with the same inputs" : "Needs a key with the run scope",
          onclick: async () => {
            try {
              const body = from.value ? { fromStep: from.value } : {};
              const created = await api.post(`runs/${run.executionId}/rerun`, body);
              location.hash = `#/runs/${created.executionId}`;
            } catch (error) {
              toast(`${error.code}: ${error.message}`, "error");
            }
          },
        },
        "Re-run",
      ),
    ),
  );
  return h("div", { class: "run-actions", role: "group", "aria-label": "Run actions" }, buttons);
}

/** Gantt rows from the trace (exact times) and the model (running attempts, tool waits). */
async function timelineRows(address, run, model, signal) {
  const rows = [];
  let trace = null;
  if (address) {
    try {
      trace = await api.get(`seq/${address.org}/${address.project}/${address.slug}/runs/${run.executionId}/trace`, undefined, signal);
    } catch {
      trace = null;
    }
  }
  const traced = new Map((trace?.steps || []).map((t) => [t.stepId, t]));
  const retried = [...traced.values()].filter((t) => t.attempt > 1);
  const all = new Map();
  await Promise.all(
    retried.map(async (t) => {
      try {
        const body = await api.get(`seq/${address.org}/${address.project}/${address.slug}/runs/${run.executionId}/steps/${encodeURIComponent(t.stepId)}/trace`, { attempt: "all" }, signal);
        all.set(t.stepId, body.attempts);
      } catch {
        /* the latest attempt is drawn alone */
      }
    }),
  );
  const seen = new Set();
  const stepIds = [...model.ordered().map((s) => s.id), ...traced.keys()];
  for (const id of stepIds) {
    if (seen.has(id)) continue;
    seen.add(id);
    const step = model.steps.get(id);
    const attempts = (all.get(id) || (traced.has(id) ? [traced.get(id)] : [])).map((t) => ({
      attempt: t.attempt,
      status: t.status,
      start: Date.parse(t.startedAt),
      end: t.completedAt ? Date.parse(t.completedAt) : null,
      waitMs: step?.attempts.get(t.attempt) ? RunModel.waitMs(step.attempts.get(t.attempt)) : 0,
    }));
    if (step) {
      for (const a of step.attempts.values()) {
        if (!attempts.some((t) => t.attempt === a.attempt) && (a.status === "running" || a.status === "waiting")) {
          attempts.push({ attempt: a.attempt, status: a.status, start: a.seenAt ?? Date.now(), end: null, waitMs: 0 });
        }
      }
    }
    rows.push({ id, label: step?.name || id, attempts });
  }
  return rows;
}

export async function render(main, params, signal) {
  const id = params.id;
  let run = await api.get(`runs/${encodeURIComponent(id)}`, undefined, signal);
  const address = await flowAddress(run).catch(() => null);
  const model = new RunModel();
  const readyAt = run.lastSeq;

  const title = h("h1", {}, "Run ", h("span", { class: "mono" }, id));
  const headBox = h("div", { id: "run-facts" });
  const actionBox = h("div", { id: "run-actions" });
  const pauseBox = h("div", { id: "run-pause" });
  const resultBox = h("div", { id: "run-result" });
  const timeline = h("div", { id: "timeline", class: "timeline" });
  const stepsBox = h("div", { id: "steps", class: "steps" });
  const eventsList = h("ol", { id: "events", class: "events" });
  const eventsCount = h("span", { class: "count" }, "0");
  const state = h("span", { class: "live", id: "stream-state" });
  main.append(
    h("div", { class: "page-head" }, title, state),
    headBox,
    actionBox,
    pauseBox,
    h("section", { "aria-labelledby": "timeline-title", class: "card" }, h("h2", { id: "timeline-title" }, "Timeline"), timeline),
    resultBox,
    h("section", { "aria-labelledby": "steps-title" }, h("h2", { id: "steps-title" }, "Steps"), stepsBox),
    h("section", { "aria-labelledby": "events-title" }, h("details", { class: "raw" }, h("summary", { id: "events-title" }, "Raw events (", eventsCount, ")"), eventsList)),
  );

  // The actions and the pause form hold what the user is choosing or typing: they are drawn
  // again only when what they show changes, never on every event.
  let actionsKey = "";
  let pauseKey = "";
  const drawHead = () => {
    clear(headBox).append(header(run, address));
    const nowActions = `${run.status}|${run.cancelRequested}|${model.steps.size}`;
    if (nowActions !== actionsKey) {
      const picked = actionBox.querySelector("#rerun-from")?.value;
      clear(actionBox).append(actions(run, model, refreshRun));
      const select = actionBox.querySelector("#rerun-from");
      if (picked && [...select.options].some((o) => o.value === picked)) select.value = picked;
      actionsKey = nowActions;
    }
    const nowPause = `${run.status}|${model.pause?.seq ?? ""}`;
    if (nowPause !== pauseKey) {
      clear(pauseBox).append(pauseForm(run, model, address) || "");
      pauseKey = nowPause;
    }
    clear(resultBox);
    if (run.error) resultBox.append(h("div", { class: "error", role: "alert" }, h("strong", {}, "Run failed: "), h("code", {}, run.error.code), " ", run.error.message));
    else if (run.status === "completed") resultBox.append(h("section", { class: "card", "aria-labelledby": "result-title" }, h("h2", { id: "result-title" }, "Result"), h("pre", { class: "result" }, pretty(run.result ?? model.result))));
  };
  let traceTimer = null;
  const drawTimeline = () => {
    clearTimeout(traceTimer);
    traceTimer = setTimeout(async () => {
      const rows = await timelineRows(address, run, model, signal);
      if (signal.aborted) return;
      clear(timeline).append(rows.length ? gantt(rows) : h("p", { class: "empty" }, "No step has started yet."));
    }, 150);
  };
  let refreshing = null;
  async function refreshRun() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const fresh = await api.get(`runs/${encodeURIComponent(id)}`, undefined, signal);
        run = { ...fresh, result: fresh.result ?? run.result };
        drawHead();
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  const cards = new Map();
  let drawn = 0;
  let frame = 0;
  let boundary = false;
  let runChanged = false;
  const draw = () => {
    frame = 0;
    for (const step of model.ordered()) {
      const card = stepCard(step);
      const old = cards.get(step.id);
      if (old) {
        // Keep what the reader opened (input, reasoning) across redraws.
        const open = new Set([...old.querySelectorAll("details[open] > summary")].map((e) => e.textContent));
        for (const d of card.querySelectorAll("details")) d.open = open.has(d.querySelector("summary").textContent);
        old.replaceWith(card);
      }
      else stepsBox.append(card);
      cards.set(step.id, card);
    }
    const fragment = document.createDocumentFragment();
    for (; drawn < model.events.length; drawn++) {
      const e = model.events[drawn];
      fragment.append(h("li", { dataset: { seq: e.seq, type: e.eventType } }, h("code", {}, `#${e.seq} ${e.eventType}`), " ", JSON.stringify(e)));
    }
    eventsList.append(fragment);
    eventsCount.textContent = String(model.events.length);
    if (runChanged) {
      runChanged = false;
      if (model.status) run = { ...run, status: isTerminal(run.status) ? run.status : model.status };
      drawHead();
      refreshRun().catch(() => {});
    }
    if (boundary) {
      boundary = false;
      drawTimeline();
    }
    if (!main.dataset.ready && model.lastSeq >= readyAt) {
      main.dataset.ready = "run";
    }
  };
  const onEvents = (batch) => {
    const now = Date.now();
    for (const event of batch) {
      if (event.eventType === "step_started") model.attempt(event).seenAt = now;
      if (model.apply(event)) runChanged = true;
      if (BOUNDARIES.has(event.eventType) || event.eventType === "step_started") boundary = true;
    }
    if (!frame) frame = requestAnimationFrame(draw);
  };

  drawHead();
  drawTimeline();
  if (readyAt === 0) main.dataset.ready = "run";
  const stateText = { live: "Live", reconnecting: "Reconnecting…" };
  (async () => {
    let after = 0;
    while (!signal.aborted) {
      try {
        after = await followRun(id, { onEvents, signal, after, onState: (s) => (state.textContent = stateText[s] || "") });
      } catch (error) {
        if (!signal.aborted) main.append(errorBox(error));
        return;
      }
      if (signal.aborted) return;
      await refreshRun().catch(() => {});
      if (isTerminal(run.status)) break;
    }
    state.textContent = "";
    if (!main.dataset.ready) main.dataset.ready = "run";
    drawTimeline();
  })();
  // A running step's bar grows with the clock.
  const tick = setInterval(() => {
    if (!isTerminal(run.status) && !document.hidden) drawTimeline();
  }, 1000);
  signal.addEventListener("abort", () => {
    clearInterval(tick);
    clearTimeout(traceTimer);
    if (frame) cancelAnimationFrame(frame);
  });
}
