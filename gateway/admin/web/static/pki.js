// PKI settings: the signing certificate (or none), regenerating the signing chain, and the
// TLS binding per domain. Changes go through PUT /pki with the whole settings.

import { accountPath, call, domainNames } from "./api.js";
import { $, fill, h, say, showProblem } from "./dom.js";
import { chainLabel } from "./chains.js";

async function save(ctx, changes, errorNode, message) {
  fill(errorNode);
  const current = ctx.pki || {};
  const body = {
    signing_chain_id: current.signing_chain_id ?? null,
    tls_bindings: { ...(current.tls_bindings || {}) },
    ...changes,
  };
  // Another change adds ETags to /pki: send If-Match when one came, so a concurrent edit is
  // refused instead of overwritten.
  const headers = ctx.pkiEtag ? { "If-Match": ctx.pkiEtag } : {};
  try {
    await call("PUT", `${accountPath(ctx.accountId)}/pki`, { json: body, headers });
    say(message);
    await ctx.reload();
  } catch (problem) {
    showProblem(errorNode, problem);
  }
}

async function regenerate(ctx) {
  const error = $("signing-error");
  fill(error);
  try {
    const { data } = await call("POST", `${accountPath(ctx.accountId)}/chains/generate`,
      { json: { purpose: "signing" } });
    await ctx.reload();  // the new chain, and the current ETag
    await save(ctx, { signing_chain_id: data.id }, error,
      "Generated a new signing chain and chose it as the signing certificate.");
  } catch (problem) {
    showProblem(error, problem);
  }
}

export function init(ctx) {
  $("signing-chain").addEventListener("change", () => {
    $("signing-warning").hidden = $("signing-chain").value !== "";
  });
  $("signing-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = $("signing-chain").value || null;
    save(ctx, { signing_chain_id: chosen }, $("signing-error"),
      chosen ? "Signing certificate saved." : "Signing certificate cleared: tokens are now refused.");
  });
  $("signing-regenerate").addEventListener("click", () => regenerate(ctx));
  $("bindings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const bindings = {};
    for (const select of $("bindings").querySelectorAll("select")) {
      if (select.value) bindings[select.dataset.domain] = select.value;
    }
    save(ctx, { tls_bindings: bindings }, $("bindings-error"), "TLS bindings saved.");
  });
}

export function render(ctx) {
  const settings = ctx.pki || {};
  const signing = $("signing-chain");
  fill(signing, h("option", { value: "" }, "None (tokens are refused)"),
    ...ctx.chains.map((c) => h("option", { value: c.id },
      `${chainLabel(c)} (${c.purpose === "signing" ? "signing" : "TLS"}, ${c.origin})`)));
  signing.value = settings.signing_chain_id || "";
  $("signing-warning").hidden = Boolean(settings.signing_chain_id);
  const tls = ctx.chains.filter((c) => c.purpose === "tls");
  const bound = settings.tls_bindings || {};
  const domains = domainNames(ctx.account);
  fill($("bindings"), ...(domains.length ? domains.map((domain, i) => {
    const select = h("select", { id: `binding-${i}`, "data-domain": domain },
      h("option", { value: "" }, "Automatic"),
      ...tls.map((c) => h("option", { value: c.id }, chainLabel(c))));
    select.value = bound[domain] || "";
    return h("div", { class: "binding" },
      h("label", { for: `binding-${i}` }, `TLS chain for ${domain}`), select);
  }) : [h("p", { class: "hint" }, "No domain: nothing to bind.")]));
}
