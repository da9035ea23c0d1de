// The console's shell: sign-in, the navigation the key's scope allows, and the hash router
// (#/runs, #/runs/<id>, #/flows, #/flows/<slug>, #/keys, #/usage). Each page is a module whose
// render(main, params, signal) fills <main> and marks it ready (main[data-ready]) when its data is
// shown; leaving a page aborts `signal`, which stops its polling and streams.

import { session } from "./api.js";
import { clear, errorBox, h } from "./dom.js";

const PAGES = {
  runs: () => import("./runs.js"),
  run: () => import("./run.js"),
  flows: () => import("./flows.js"),
  flow: () => import("./flow.js"),
  keys: () => import("./keys.js"),
  usage: () => import("./usage.js"),
};

let current = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query));
  if (parts[0] === "runs" && parts[1]) return { page: "run", params: { ...params, id: parts[1] } };
  if (parts[0] === "flows" && parts[1]) return { page: "flow", params: { ...params, slug: parts[1] } };
  if (parts[0] in PAGES) return { page: parts[0], params };
  return { page: "runs", params };
}

function nav(active) {
  const links = [["runs", "Runs"], ["flows", "Flows"]];
  if (session.can("admin")) links.push(["keys", "Keys"]);
  if (session.can("admin") && !session.me.project) links.push(["usage", "Usage"]);
  const me = session.me;
  return h(
    "nav",
    { class: "nav", "aria-label": "Console" },
    h("a", { class: "brand", href: "#/runs" }, "Noukai"),
    h(
      "ul",
      {},
      links.map(([page, label]) =>
        h("li", {}, h("a", { href: `#/${page}`, "aria-current": active === page ? "page" : false }, label)),
      ),
    ),
    h(
      "div",
      { class: "who" },
      h("span", { class: "tenant", title: "The key's org and project" }, `${me.org}/${session.project || "*"}`),
      h("span", { class: `scope scope-${me.scope}`, title: "The key's scope" }, me.scope),
      h("button", { type: "button", class: "link", onclick: signOut }, "Sign out"),
    ),
  );
}

function signOut() {
  session.signOut();
  location.hash = "#/runs";
  route();
}

function signInPage(main, failure) {
  document.getElementById("top").replaceChildren();
  const key = h("input", {
    id: "key",
    name: "key",
    type: "password",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "nk_…",
  });
  const project = h("input", { id: "project", name: "project", autocomplete: "off", placeholder: "main" });
  const form = h(
    "form",
    { class: "signin card", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to Noukai"),
    h("p", {}, "Use an API key. It is kept in this browser tab's session only and never leaves it except to this server."),
    h("label", { for: "key" }, "API key"),
    key,
    h("label", { for: "project" }, "Project ", h("span", { class: "hint" }, "(for an org-wide key; optional)")),
    project,
    failure ? errorBox(failure) : null,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await session.signIn(key.value.trim(), project.value.trim());
      route();
    } catch (error) {
      signInPage(main, error);
    }
  });
  clear(main).append(form);
  main.dataset.ready = "signin";
  key.focus();
}

async function route() {
  const main = document.getElementById("main");
  current?.abort();
  const controller = new AbortController();
  current = controller;
  delete main.dataset.ready;
  if (!session.me) {
    try {
      await session.restore();
    } catch (error) {
      clear(main).append(errorBox(error));
      return;
    }
  }
  if (!session.me) {
    signInPage(main);
    return;
  }
  const { page, params } = parseHash();
  const section = page === "run" ? "runs" : page === "flow" ? "flows" : page;
  document.getElementById("top").replaceChildren(nav(section));
  try {
    const module = await PAGES[page]();
    if (controller.signal.aborted) return;
    clear(main);
    await module.render(main, params, controller.signal);
    // The control that had the focus (a submitted form, a clicked link) may be gone: give it to
    // the new page, so the keyboard and screen readers continue from there.
    if (!document.activeElement || document.activeElement === document.body) main.focus({ preventScroll: true });
  } catch (error) {
    if (controller.signal.aborted) return;
    clear(main).append(errorBox(error));
    main.dataset.ready = "error";
  }
}

// A performance mark when a page is ready (main[data-ready] set): the tests read
// performance.getEntriesByName("noukai:ready:<page>") to time a page load from navigation start.
new MutationObserver(() => {
  const ready = document.getElementById("main").dataset.ready;
  if (ready) performance.mark(`noukai:ready:${ready}`);
}).observe(document.getElementById("main"), { attributes: true, attributeFilter: ["data-ready"] });

// The skip link must not touch the hash (the router owns it): it moves the focus instead.
document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});
window.addEventListener("hashchange", () => {
  route();
  document.getElementById("main").focus({ preventScroll: true });
});
route();
