// One flow: its document as highlighted YAML (the draft or any version), the diff between two of
// them, publish (admin keys), and a form from its declared inputs that starts a run (a job) and
// opens it.

import { api, session } from "./api.js";
import { clear, errorBox, formatTime, h, toast } from "./dom.js";
import { lineDiff } from "./diff.js";
import { inputFields, readParameters } from "./inputs.js";
import { highlight, toYaml } from "./yaml.js";

function documentView(yaml) {
  return h("pre", { class: "yaml", tabindex: "0", "aria-label": "Flow document (YAML)" }, highlight(yaml));
}

function diffView(before, after, labels) {
  const ops = lineDiff(before, after);
  const changed = ops.filter((o) => o.op !== "same").length;
  return h(
    "div",
    {},
    h("p", { class: "hint", id: "diff-summary" }, changed ? `${ops.filter((o) => o.op === "del").length} lines removed, ${ops.filter((o) => o.op === "add").length} added (${labels[0]} → ${labels[1]})` : `${labels[0]} and ${labels[1]} are the same`),
    h(
      "pre",
      { class: "diff", tabindex: "0", "aria-describedby": "diff-summary" },
      ops.map((o) =>
        h(
          "div",
          { class: o.op === "same" ? "" : o.op },
          h("span", { class: "ln", "aria-hidden": "true" }, o.op === "add" ? "+" : o.op === "del" ? "-" : " "),
          h("span", { class: "visually-hidden" }, o.op === "add" ? "added: " : o.op === "del" ? "removed: " : ""),
          o.text,
        ),
      ),
    ),
  );
}

export async function render(main, params, signal) {
  const org = session.me.org;
  const project = session.project;
  const slug = params.slug;
  if (!project) {
    main.append(h("p", { class: "empty" }, "This key is org-wide: sign in again with a project to see its flows."));
    main.dataset.ready = "flow";
    return;
  }
  const base = `flows/${org}/${project}/${encodeURIComponent(slug)}`;
  const [flow, { versions }] = await Promise.all([api.get(base, undefined, signal), api.get(`${base}/versions`, undefined, signal)]);
  const documents = new Map([["draft", flow.draft]]);
  const load = async (which) => {
    if (!documents.has(which)) documents.set(which, (await api.get(`${base}/versions/${which}`, undefined, signal)).document);
    return documents.get(which);
  };
  const choices = [["draft", `Draft (revision ${flow.draftRevision})`], ...[...versions].reverse().map((v) => [String(v.version), `v${v.version} — ${formatTime(v.createdAt)}`])];
  const options = (selected) => choices.map(([value, label]) => h("option", { value, selected: value === selected }, label));

  // The document, with a choice of which one.
  const showing = h("select", { id: "doc-pick" }, options("draft"));
  const docBox = h("div", { id: "document" }, documentView(toYaml(flow.draft)));
  showing.addEventListener("change", async () => clear(docBox).append(documentView(toYaml(await load(showing.value)))));

  // The diff between two.
  const left = h("select", { id: "diff-a" }, options(versions.length ? String(versions[versions.length - 1].version) : "draft"));
  const right = h("select", { id: "diff-b" }, options("draft"));
  const diffBox = h("div", { id: "diff" });
  const compare = h("button", { type: "button" }, "Compare");
  compare.addEventListener("click", async () => {
    const [a, b] = await Promise.all([load(left.value), load(right.value)]);
    clear(diffBox).append(diffView(toYaml(a), toYaml(b), [left.selectedOptions[0].textContent, right.selectedOptions[0].textContent]));
  });

  // Publish.
  const next = (flow.latestVersion ?? 0) + 1;
  const publish = h("button", { type: "button", class: "primary", id: "publish" }, `Publish the draft as v${next}`);
  publish.addEventListener("click", async () => {
    publish.disabled = true;
    try {
      const made = await api.post(`${base}/publish`);
      toast(`Published v${made.version}`);
      location.hash = `#/flows/${encodeURIComponent(slug)}?published=${made.version}`;
    } catch (error) {
      toast(`${error.code}: ${error.message}`, "error");
      publish.disabled = false;
    }
  });

  main.append(
    h("div", { class: "page-head" }, h("h1", {}, flow.name || slug, " ", h("span", { class: "hint mono" }, `${org}/${project}/${slug}`))),
    h("p", { class: "hint" }, flow.latestVersion ? `Latest version: v${flow.latestVersion}` : "Not published yet: runs use the draft.", ` · Draft revision ${flow.draftRevision}, updated ${formatTime(flow.updatedAt)}`),
    h(
      "div",
      { class: "two" },
      h(
        "section",
        { class: "card", "aria-labelledby": "doc-title" },
        h("h2", { id: "doc-title" }, "Document"),
        h("label", { for: "doc-pick" }, "Show"),
        showing,
        docBox,
      ),
      h("div", {}, runForm(flow, versions, base, org, project, slug), session.can("admin") ? h("section", { class: "card", "aria-labelledby": "publish-title" }, h("h2", { id: "publish-title" }, "Publish"), h("p", {}, "Publishing freezes the current draft as a numbered version that never changes."), publish) : null),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "versions-title" },
      h("h2", { id: "versions-title" }, "Versions"),
      versions.length ? h("ul", { id: "versions" }, [...versions].reverse().map((v) => h("li", { dataset: { version: v.version } }, `v${v.version}`, h("span", { class: "hint" }, ` — published ${formatTime(v.createdAt)}`)))) : h("p", { class: "empty" }, "No version yet."),
      h(
        "div",
        { class: "versions-pick" },
        h("div", {}, h("label", { for: "diff-a" }, "Compare"), left),
        h("div", {}, h("label", { for: "diff-b" }, "with"), right),
        compare,
      ),
      diffBox,
    ),
  );
  main.dataset.ready = "flow";
}

function runForm(flow, versions, base, org, project, slug) {
  const canRun = session.can("run");
  const version = h(
    "select",
    { id: "run-version", name: "version" },
    versions.length ? h("option", { value: "" }, `Latest (v${flow.latestVersion})`) : null,
    h("option", { value: "v0" }, "Draft"),
    [...versions].reverse().map((v) => h("option", { value: `v${v.version}` }, `v${v.version}`)),
  );
  const message = h("textarea", { id: "run-message", name: "message", rows: 3, "aria-describedby": "run-message-hint" });
  const problems = h("div", { id: "run-problems" });
  const form = h(
    "form",
    { class: "card form-grid", id: "run-form", "aria-labelledby": "run-title" },
    h("h2", { id: "run-title" }, "Start a run"),
    h("div", { class: "field" }, h("label", { for: "run-version" }, "Version"), version),
    h("div", { class: "field" }, h("label", { for: "run-message" }, "Message"), message, h("div", { class: "hint", id: "run-message-hint" }, "The run's `message` (leave empty if the flow reads none).")),
    inputFields(flow.draft.inputs),
    problems,
    h("button", { type: "submit", class: "primary", disabled: !canRun, title: canRun ? "" : "Needs a key with the run scope" }, "Start run"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(problems);
    let parameters;
    try {
      parameters = readParameters(form, flow.draft.inputs);
    } catch (error) {
      problems.append(errorBox({ code: "VALIDATION_ERROR", message: error.message }));
      return;
    }
    const body = { parameters };
    if (message.value.trim()) body.message = message.value;
    const path = `seq/${org}/${project}/${encodeURIComponent(slug)}${version.value ? `/${version.value}` : ""}/jobs`;
    try {
      const job = await api.post(path, body);
      location.hash = `#/runs/${job.executionId}`;
    } catch (error) {
      problems.append(errorBox(error));
    }
  });
  return form;
}
