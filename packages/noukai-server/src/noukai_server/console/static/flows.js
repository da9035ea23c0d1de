// The flows of the signed-in project: name, slug, draft revision, last change.

import { api, session } from "./api.js";
import { formatTime, h } from "./dom.js";

export async function render(main, params, signal) {
  main.append(h("h1", {}, "Flows"));
  if (!session.project) {
    main.append(h("p", { class: "empty" }, "This key is org-wide: sign in again with a project to see its flows."));
    main.dataset.ready = "flows";
    return;
  }
  const { flows } = await api.get(`flows/${session.me.org}/${session.project}`, undefined, signal);
  if (!flows.length) {
    main.append(h("p", { class: "empty" }, "No flows in this project yet: push one with `noukai flows push FILE`."));
  } else {
    main.append(
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "flows" },
          h("caption", { class: "visually-hidden" }, `Flows of ${session.me.org}/${session.project}`),
          h("thead", {}, h("tr", {}, ["Flow", "Name", "Draft revision", "Updated"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            flows.map((f) =>
              h(
                "tr",
                { dataset: { flow: f.slug } },
                h("td", {}, h("a", { href: `#/flows/${encodeURIComponent(f.slug)}` }, f.slug)),
                h("td", {}, f.name ?? ""),
                h("td", { class: "num" }, String(f.draftRevision)),
                h("td", {}, formatTime(f.updatedAt)),
              ),
            ),
          ),
        ),
      ),
    );
  }
  main.dataset.ready = "flows";
}
