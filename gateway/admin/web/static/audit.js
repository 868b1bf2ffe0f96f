// The audit log (operators): newest first, filterable by account, paged with "Older".

import { get } from "./api.js";
import { $, append, fill, h, showProblem, time } from "./dom.js";

let before = null;

async function fetchPage(append_) {
  const params = new URLSearchParams({ limit: "50" });
  const account = $("audit-account").value.trim();
  if (account) params.set("account_id", account);
  if (append_ && before) params.set("before", String(before));
  fill($("audit-error"));
  try {
    const page = await get(`/api/v1/audit?${params}`);
    const rows = (page.records || []).map((r) => h("li", {},
      time(r.at), " ",
      h("strong", {}, String(r.action)), " ",
      h("span", { class: r.result === "ok" ? "" : "badge bad" }, String(r.result)),
      ` by ${r.role}${r.key_id ? ` ${r.key_id}` : ""}`,
      r.account_id ? ` · account ${r.account_id}` : "",
      r.target ? ` · ${r.target}` : "",
      r.detail ? h("span", { class: "sub" }, ` · ${r.detail}`) : null));
    if (append_) append($("audit-list"), rows);
    else fill($("audit-list"), ...(rows.length ? rows : [h("li", { class: "hint" }, "No record.")]));
    before = page.next_before ?? null;
    $("audit-older").hidden = before === null;
  } catch (error) {
    showProblem($("audit-error"), error);
  }
}

export function init() {
  $("audit-form").addEventListener("submit", (event) => { event.preventDefault(); fetchPage(false); });
  $("audit-older").addEventListener("click", () => fetchPage(true));
}

export function show() {
  fetchPage(false);
}

export function render() {}
