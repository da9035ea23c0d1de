// A form generated from a flow's declared inputs (`inputs:` in the flow document): one labelled
// control per input, of its JSON type, with its default and description; read back as the run's
// `parameters`, with the type checked before anything is sent.

import { h } from "./dom.js";

function control(name, spec, id) {
  const common = { id, name, "aria-describedby": spec.description ? `${id}-hint` : false };
  const required = spec.required ?? spec.default === undefined;
  switch (spec.type) {
    case "boolean":
      return h("input", { ...common, type: "checkbox", checked: spec.default === true });
    case "integer":
      return h("input", { ...common, type: "number", step: "1", inputmode: "numeric", required, value: spec.default ?? "" });
    case "number":
      return h("input", { ...common, type: "number", step: "any", inputmode: "decimal", required, value: spec.default ?? "" });
    case "array":
    case "object":
      return h("textarea", { ...common, rows: 3, class: "mono", required, placeholder: spec.type === "array" ? "[ … ] (JSON)" : "{ … } (JSON)" }, spec.default !== undefined && spec.default !== null ? JSON.stringify(spec.default) : "");
    default:
      return h("input", { ...common, type: "text", required, value: spec.default ?? "" });
  }
}

/** The fields for `inputs` (may be empty or missing). */
export function inputFields(inputs) {
  return Object.entries(inputs || {}).map(([name, spec], i) => {
    const id = `input-${i}`;
    const required = spec.required ?? spec.default === undefined;
    return h(
      "div",
      { class: "field", dataset: { input: name } },
      h("label", { for: id }, name, " ", h("span", { class: "hint" }, `${spec.type}${required ? ", required" : ""}`)),
      control(name, spec, id),
      spec.description ? h("div", { class: "hint", id: `${id}-hint` }, spec.description) : null,
    );
  });
}

/** The parameters the form holds; throws an Error naming the input when one is not of its type. */
export function readParameters(form, inputs) {
  const parameters = {};
  for (const [name, spec] of Object.entries(inputs || {})) {
    const el = form.elements[name];
    if (spec.type === "boolean") {
      parameters[name] = el.checked;
      continue;
    }
    const raw = el.value.trim();
    if (raw === "") continue; // missing: the server takes the default or refuses a required one
    if (spec.type === "integer" || spec.type === "number") {
      const n = Number(raw);
      if (!Number.isFinite(n) || (spec.type === "integer" && !Number.isInteger(n))) throw new Error(`${name}: must be an ${spec.type}`);
      parameters[name] = n;
    } else if (spec.type === "array" || spec.type === "object") {
      let value;
      try {
        value = JSON.parse(raw);
      } catch {
        throw new Error(`${name}: must be JSON (${spec.type})`);
      }
      const ok = spec.type === "array" ? Array.isArray(value) : value !== null && typeof value === "object" && !Array.isArray(value);
      if (!ok) throw new Error(`${name}: must be a JSON ${spec.type}`);
      parameters[name] = value;
    } else {
      parameters[name] = el.value;
    }
  }
  return parameters;
}
