// API keys (admin keys only): the org's keys (a project key sees its project's), create one with a
// scope (its secret shown once), revoke one.

import { api, session } from "./api.js";
import { badge, clear, errorBox, formatTime, h, toast } from "./dom.js";

export async function render(main, params, signal) {
  const org = session.me.org;
  main.append(h("h1", {}, "API keys"));
  if (!session.can("admin")) {
    main.append(h("p", { class: "empty" }, "Managing keys needs an admin key."));
    main.dataset.ready = "keys";
    return;
  }
  const listBox = h("div", { id: "keys-list" });
  const created = h("div", { id: "key-created", "aria-live": "polite" });
  const refresh = async () => {
    const { keys } = await api.get(`orgs/${org}/keys`, undefined, signal);
    clear(listBox).append(table(keys, refresh));
  };
  main.append(createForm(org, created, refresh), created, listBox);
  await refresh();
  main.dataset.ready = "keys";
}

function createForm(org, created, refresh) {
  const name = h("input", { id: "key-name", name: "name", maxlength: 200, autocomplete: "off" });
  const scope = h("select", { id: "key-scope", name: "scope" }, ["read", "run", "admin"].map((s) => h("option", { value: s }, s)));
  const project = h("input", { id: "key-project", name: "project", value: session.me.project || "", readonly: Boolean(session.me.project), autocomplete: "off" });
  const days = h("input", { id: "key-days", name: "days", type: "number", min: 1, step: 1, inputmode: "numeric" });
  const problems = h("div");
  const form = h(
    "form",
    { class: "card form-grid", "aria-labelledby": "key-new-title" },
    h("h2", { id: "key-new-title" }, "Create a key"),
    h("div", { class: "field" }, h("label", { for: "key-name" }, "Name"), name),
    h("div", { class: "field" }, h("label", { for: "key-scope" }, "Scope"), scope, h("div", { class: "hint" }, "read: see runs and flows · run: also start and steer runs · admin: also manage flows and keys")),
    h("div", { class: "field" }, h("label", { for: "key-project" }, "Project ", h("span", { class: "hint" }, "(empty: the whole org)")), project),
    h("div", { class: "field" }, h("label", { for: "key-days" }, "Expires in days ", h("span", { class: "hint" }, "(empty: never)")), days),
    problems,
    h("button", { type: "submit", class: "primary" }, "Create key"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(problems);
    const body = { scope: scope.value };
    if (name.value.trim()) body.name = name.value.trim();
    if (project.value.trim()) body.project = project.value.trim();
    if (days.value) body.expiresInSeconds = Number(days.value) * 86400;
    try {
      const made = await api.post(`orgs/${org}/keys`, body);
      clear(created).append(
        h(
          "div",
          { class: "card", role: "alert" },
          h("h2", {}, "New key: copy it now"),
          h("p", {}, "This is the only time the key is shown."),
          h("pre", { id: "new-key", tabindex: "0" }, made.key),
        ),
      );
      form.reset();
      await refresh();
    } catch (error) {
      problems.append(errorBox(error));
    }
  });
  return form;
}

function table(keys, refresh) {
  const org = session.me.org;
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "keys" },
      h("caption", {}, "Keys"),
      h("thead", {}, h("tr", {}, ["Id", "Name", "Project", "Scope", "State", "Created", "Last used", "Expires", ""].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        keys.map((k) =>
          h(
            "tr",
            { dataset: { key: k.id, state: k.state } },
            h("td", { class: "mono" }, k.id),
            h("td", {}, k.name ?? ""),
            h("td", {}, k.project ?? "(org)"),
            h("td", {}, k.scope),
            h("td", {}, badge(k.state)),
            h("td", {}, formatTime(k.createdAt)),
            h("td", {}, formatTime(k.lastUsedAt)),
            h("td", {}, formatTime(k.expiresAt)),
            h(
              "td",
              {},
              k.state === "active" && k.id !== session.me.id
                ? h(
                    "button",
                    {
                      type: "button",
                      class: "danger",
                      "aria-label": `Revoke key ${k.id}`,
                      onclick: async () => {
                        if (!confirm(`Revoke key ${k.id}${k.name ? ` (${k.name})` : ""}? Anything using it stops working.`)) return;
                        try {
                          await api.del(`orgs/${org}/keys/${k.id}`);
                          toast(`Key ${k.id} revoked`);
                          await refresh();
                        } catch (error) {
                          toast(`${error.code}: ${error.message}`, "error");
                        }
                      },
                    },
                    "Revoke",
                  )
                : k.id === session.me.id
                  ? h("span", { class: "hint" }, "this key")
                  : null,
            ),
          ),
        ),
      ),
    ),
  );
}
