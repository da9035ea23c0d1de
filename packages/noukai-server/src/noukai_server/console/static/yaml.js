// A flow document as YAML text (the server stores flows as JSON values), and YAML syntax
// highlighting: keys, strings, numbers and literals, comments and punctuation become <span>s.

import { h } from "./dom.js";

const PLAIN = /^[A-Za-z_./][A-Za-z0-9_ ./()'?!,:-]*$/;
const LOOKS_TYPED = /^(true|false|yes|no|on|off|null|~|[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?|\.inf|\.nan)$/i;

function scalar(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean" || typeof value === "number") return String(value);
  const text = String(value);
  if (text === "" || !PLAIN.test(text) || LOOKS_TYPED.test(text) || text !== text.trim() || text.endsWith(":") || text.includes(": ") || text.includes(" #")) {
    return JSON.stringify(text); // a JSON string is a valid YAML double-quoted scalar
  }
  return text;
}

function key(name) {
  return /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name) && !LOOKS_TYPED.test(name) ? name : JSON.stringify(name);
}

function isEmpty(value) {
  return (Array.isArray(value) && value.length === 0) || (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0);
}

function block(value, indent) {
  const pad = " ".repeat(indent);
  const lines = [];
  if (Array.isArray(value)) {
    for (const item of value) {
      if (item && typeof item === "object" && !isEmpty(item)) {
        const inner = block(item, indent + 2);
        lines.push(`${pad}- ${inner[0].trimStart()}`, ...inner.slice(1));
      } else {
        lines.push(`${pad}- ${inline(item, indent + 2)}`);
      }
    }
    return lines;
  }
  for (const [name, item] of Object.entries(value)) {
    if (item && typeof item === "object" && !isEmpty(item)) {
      lines.push(`${pad}${key(name)}:`, ...block(item, Array.isArray(item) ? indent + 2 : indent + 2));
    } else {
      lines.push(`${pad}${key(name)}: ${inline(item, indent + 2)}`);
    }
  }
  return lines;
}

function inline(value, indent) {
  if (Array.isArray(value)) return "[]";
  if (value && typeof value === "object") return "{}";
  if (typeof value === "string" && value.includes("\n")) {
    const pad = " ".repeat(indent);
    const chomp = value.endsWith("\n") ? "" : "-";
    const body = value.replace(/\n$/, "").split("\n").map((l) => (l ? pad + l : ""));
    if (body.some((l, i) => i === 0 && /^\s/.test(value))) return JSON.stringify(value);
    return `|${chomp}\n${body.join("\n")}`;
  }
  return scalar(value);
}

/** A JSON value as block-style YAML text. */
export function toYaml(value) {
  if (value === null || typeof value !== "object") return `${scalar(value)}\n`;
  if (isEmpty(value)) return Array.isArray(value) ? "[]\n" : "{}\n";
  return `${block(value, 0).join("\n")}\n`;
}

const TOKEN = /(#.*$)|("(?:[^"\\]|\\.)*"|'(?:[^']|'')*')|(^\s*(?:- )*)([^\s:#"'][^:#]*?|"(?:[^"\\]|\\.)*")(:)(?=\s|$)|([-+]?\b\d+(?:\.\d+)?\b|\b(?:true|false|null)\b)|(^\s*- |[|>][-+]?\s*$|[{}[\],])/gm;

function highlightLine(line) {
  const out = [];
  let last = 0;
  TOKEN.lastIndex = 0;
  for (let m = TOKEN.exec(line); m; m = TOKEN.exec(line)) {
    if (m[0] === "") {
      TOKEN.lastIndex++;
      continue;
    }
    if (m.index > last) out.push(line.slice(last, m.index));
    if (m[1]) out.push(h("span", { class: "c" }, m[1]));
    else if (m[2]) out.push(h("span", { class: "s" }, m[2]));
    else if (m[4] !== undefined) {
      out.push(m[3].replace(/- /g, ""), ...dashes(m[3]));
      out.push(h("span", { class: "k" }, m[4]), h("span", { class: "p" }, m[5]));
    } else if (m[6]) out.push(h("span", { class: "n" }, m[6]));
    else if (m[7]) out.push(h("span", { class: "p" }, m[7]));
    last = m.index + m[0].length;
  }
  if (last < line.length) out.push(line.slice(last));
  return out;
}

function dashes(prefix) {
  return [...prefix.matchAll(/- /g)].map(() => h("span", { class: "p" }, "- "));
}

/** YAML text as highlighted nodes for a <pre>, one line at a time. */
export function highlight(text) {
  const lines = text.split("\n");
  return lines.flatMap((line, i) => [...highlightLine(line), i < lines.length - 1 ? "\n" : ""]);
}
