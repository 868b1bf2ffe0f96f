// The account's name, kind and domains; add and remove a domain.

import { accountPath, call, domainNames, domainStatus, seg } from "./api.js";
import { $, confirmAction, fill, h, say, showProblem } from "./dom.js";

export function init(ctx) {
  $("domain-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("domain-new");
    fill($("domain-error"));
    try {
      await call("POST", `${accountPath(ctx.accountId)}/domains`, { json: { domain: input.value.trim() } });
      say(`Domain ${input.value.trim()} added.`);
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

export function render(ctx) {
  const acc = ctx.account;
  fill($("account-title"), `Account: ${acc.name}`);
  fill($("account-meta"), `${acc.kind} account · id ${acc.id}` +
    (acc.parent_id ? ` · vendor ${acc.parent_id}` : ""));
  const domains = domainNames(acc);
  fill($("domain-list"), ...(domains.length ? domains.map((d) => h("li", {},
    h("span", {}, d),
    // Fields another change may add (domain verification status) are shown when present.
    domainStatus(acc, d) ? h("span", { class: "sub" }, ` (${domainStatus(acc, d)})`) : null,
    h("button", { type: "button", class: "small", onclick: () => remove(ctx, d) },
      "Remove", h("span", { class: "visually-hidden" }, ` domain ${d}`))))
    : [h("li", { class: "hint" }, "No domain yet.")]));
}
