// The account's name, kind and domains: add and remove a domain; a pending domain shows the
// DNS TXT record that proves it, a "Check DNS" button and, for its vendor or an operator,
// an "Approve" button. Only verified domains go to the Generate and TLS binding lists.

import { accountPath, call, domainEntries, seg } from "./api.js";
import { $, confirmAction, fill, h, say, showProblem } from "./dom.js";

export function init(ctx) {
  $("domain-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("domain-new");
    const name = input.value.trim();
    fill($("domain-error"));
    try {
      const { data } = await call("POST", `${accountPath(ctx.accountId)}/domains`, { json: { domain: name } });
      const added = domainEntries(data).find((d) => d.name === name.toLowerCase().replace(/\.$/, ""));
      say(added && added.status === "pending"
        ? `Domain ${added.name} added; it is pending until its DNS record is found or it is approved.`
        : `Domain ${name} added.`);
      input.value = "";
      await ctx.reload();
    } catch (error) {
      showProblem($("domain-error"), error);
    }
  });
}

async function remove(ctx, domain) {
  const ok = await confirmAction(`Remove the domain ${domain} from ${ctx.account.name}? ` +
    "Chains naming it stop being served for it.", [], "Remove");
  if (!ok) return;
  fill($("domain-error"));
  try {
    await call("DELETE", `${accountPath(ctx.accountId)}/domains/${seg(domain)}`);
    say(`Domain ${domain} removed.`);
    await ctx.reload();
  } catch (error) {
    showProblem($("domain-error"), error);
  }
}

/** Focus the first control of a domain's row after a redraw (keyboard users stay put). */
function focusDomain(name) {
  for (const row of $("domain-list").children) {
    if (row.dataset.domain === name) { const b = row.querySelector("button"); if (b) b.focus(); return; }
  }
}

/** Approve or check a pending domain; a refusal shows beside its buttons. */
async function settle(ctx, domain, action, errorNode, button) {
  fill(errorNode);
  // A DNS look-up may take the resolver's whole timeout: one request at a time, and say so.
  button.disabled = true;
  if (action === "verify") say(`Looking up the DNS record of ${domain}…`);
  try {
    await call("POST", `${accountPath(ctx.accountId)}/domains/${seg(domain)}/${action}`);
    say(action === "approve" ? `Domain ${domain} approved: it is verified.`
      : `The DNS record of ${domain} was found: it is verified.`);
    await ctx.reload();
    focusDomain(domain);
  } catch (error) {
    button.disabled = false;
    fill($("status"));
    showProblem(errorNode, error);
    button.focus();
  }
}

/** The TXT record to publish, as selectable text with a copy button per field. */
function challengeFacts(domain, challenge) {
  const field = (label, value) => h("div", { class: "challenge-field" },
    h("span", { class: "challenge-label" }, label),
    h("code", { class: "challenge-value" }, String(value)),
    h("button", { type: "button", class: "small secondary",
      onclick: () => copy(value, `${label} for ${domain}`) },
    "Copy", h("span", { class: "visually-hidden" }, ` ${label.toLowerCase()} for ${domain}`)));
  return h("div", { class: "challenge" },
    h("p", { class: "hint" }, `To prove control, publish this DNS ${challenge.type || "TXT"} record:`),
    field("Record name", challenge.name), field("Record value", challenge.value));
}

async function copy(value, what) {
  try {
    await navigator.clipboard.writeText(String(value));
    say(`${what} copied.`);
  } catch {
    say(`${what} could not be copied: select the text and copy it.`);
  }
}

function domainRow(ctx, entry, i) {
  const name = entry.name;
  const pending = entry.status !== "verified";
  const errorNode = h("div", { id: `domain-check-error-${i}`, class: "error", role: "alert" });
  const actions = [];
  if (pending) {
    actions.push(h("button", { type: "button", class: "small",
      "aria-describedby": errorNode.id, onclick: (event) => settle(ctx, name, "verify", errorNode, event.currentTarget) },
    "Check DNS", h("span", { class: "visually-hidden" }, ` for ${name}`)));
    // A customer key cannot approve (the API answers 403): the button is not offered.
    if (ctx.session && ctx.session.role !== "customer") {
      actions.push(h("button", { type: "button", class: "small",
        onclick: (event) => settle(ctx, name, "approve", errorNode, event.currentTarget) },
      "Approve", h("span", { class: "visually-hidden" }, ` ${name}`)));
    }
  }
  actions.push(h("button", { type: "button", class: "small", onclick: () => remove(ctx, name) },
    "Remove", h("span", { class: "visually-hidden" }, ` domain ${name}`)));
  return h("li", { class: pending ? "domain pending" : "domain", "data-domain": name },
    h("div", { class: "domain-head" },
      h("span", { class: "domain-name" }, name),
      pending ? h("strong", { class: "badge warn" }, "pending")
        : h("span", { class: "sub" }, "verified"),
      ...actions),
    pending && entry.challenge ? challengeFacts(name, entry.challenge) : null,
    errorNode);
}

export function render(ctx) {
  const acc = ctx.account;
  fill($("account-title"), `Account: ${acc.name}`);
  fill($("account-meta"), `${acc.kind} account · id ${acc.id}` +
    (acc.parent_id ? ` · vendor ${acc.parent_id}` : ""));
  const entries = domainEntries(acc);
  fill($("domain-list"), ...(entries.length ? entries.map((e, i) => domainRow(ctx, e, i))
    : [h("li", { class: "hint" }, "No domain yet.")]));
  const pending = entries.filter((e) => e.status !== "verified").length;
  fill($("domain-pending-hint"), pending
    ? `${pending} pending domain${pending === 1 ? "" : "s"}: a pending domain serves no traffic ` +
      "and cannot be chosen for a chain until it is verified (its DNS record is found, or its " +
      "vendor or an operator approves it)."
    : "");
}
