// Small DOM helpers. Every piece of text from a user, the API or a certificate goes in as
// a text node (textContent), never as markup: no HTML string is ever parsed by the page.

/** An element with attributes/properties and children (strings become text nodes). */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** Append children: nodes as they are, anything else as text. */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Remove every child, then append these. */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export const $ = (id) => document.getElementById(id);

const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A <time> in the viewer's locale, with the UTC time on hover (title) and as datetime. */
export function time(iso) {
  if (!iso) return h("span", {}, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, String(iso));
  const utc = date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  return h("time", { datetime: date.toISOString(), title: utc }, LOCAL.format(date));
}

/** Days from now until ``iso`` (negative when past). */
export function daysLeft(iso) {
  return Math.floor((new Date(iso).getTime() - Date.now()) / 86400000);
}

/** An expiry with a clear warning when under 30 days, or expired (text, not only colour). */
export function expiry(iso) {
  const days = daysLeft(iso);
  const out = h("span", { class: "expiry" }, time(iso));
  if (days < 0) out.append(" ", h("strong", { class: "badge bad" }, "Expired"));
  else if (days < 30) {
    out.append(" ", h("strong", { class: "badge warn" },
      days === 0 ? "Expires today" : `Expires in ${days} day${days === 1 ? "" : "s"}`));
  }
  return out;
}

/** A definition list from [term, value] pairs. */
export function facts(pairs) {
  return h("dl", { class: "facts" },
    pairs.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/** Show an API problem (or any error) in ``node``: the detail, the rule, every name. */
export function showProblem(node, error) {
  const problem = error && error.problem ? error.problem : null;
  if (!problem) { fill(node, h("p", {}, String(error && error.message ? error.message : error))); return; }
  const parts = [h("p", {}, problem.detail || problem.title || `Error ${problem.status}`)];
  if (problem.rule) parts.push(h("p", {}, "Rule: ", h("code", {}, problem.rule)));
  if (Array.isArray(problem.names) && problem.names.length) {
    parts.push(h("p", {}, "Names concerned:"),
      h("ul", { class: "names" }, problem.names.map((n) => h("li", {}, String(n)))));
  }
  if (Array.isArray(problem.errors) && problem.errors.length) {
    parts.push(h("ul", {}, problem.errors.map((e) => h("li", {}, `${e.field}: ${e.message}`))));
  }
  fill(node, ...parts);
}

/** Say something in the page's live status region. */
export function say(text) {
  fill($("status"), text);
}

/** Ask for confirmation in the modal dialog; resolves true when the user confirms. */
export function confirmAction(text, items = [], okLabel = "Delete") {
  const dialog = $("confirm");
  fill($("confirm-text"), text);
  fill($("confirm-list"), ...items.map((i) => h("li", {}, i)));
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-ok").removeEventListener("click", ok);
      $("confirm-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("cancel", cancel);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const ok = () => done(true);
    const cancel = () => done(false);
    $("confirm-ok").addEventListener("click", ok);
    $("confirm-cancel").addEventListener("click", cancel);
    dialog.addEventListener("cancel", cancel);  // Escape
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

/**
 * A searchable, paged list: ``render(item)`` makes an <li>; ``text(item)`` is what the
 * search matches. Long lists (1,000 accounts) stay usable and cheap to draw.
 */
export class Pager {
  constructor({ list, search, prev, next, label, size = 25, render, text, empty }) {
    Object.assign(this, { list, search, prev, next, label, size, render, text, empty });
    this.items = [];
    this.page = 0;
    if (search) search.addEventListener("input", () => { this.page = 0; this.draw(); });
    prev.addEventListener("click", () => { this.page -= 1; this.draw(); });
    next.addEventListener("click", () => { this.page += 1; this.draw(); });
  }

  set(items) {
    this.items = items;
    this.draw();
  }

  matching() {
    const q = this.search ? this.search.value.trim().toLowerCase() : "";
    return q ? this.items.filter((i) => this.text(i).toLowerCase().includes(q)) : this.items;
  }

  draw() {
    const found = this.matching();
    const pages = Math.max(1, Math.ceil(found.length / this.size));
    this.page = Math.min(Math.max(this.page, 0), pages - 1);
    const shown = found.slice(this.page * this.size, (this.page + 1) * this.size);
    fill(this.list, ...(shown.length ? shown.map((i) => this.render(i))
      : [h("li", { class: "hint" }, this.empty || "Nothing to show.")]));
    fill(this.label, `Page ${this.page + 1} of ${pages} (${found.length} shown)`);
    this.prev.disabled = this.page === 0;
    this.next.disabled = this.page >= pages - 1;
  }
}
