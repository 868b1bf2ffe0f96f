// Private certificate chains: the list (what each serves now, expiry warnings), import of
// a PFX/PKCS#12 file, generation with the built-in CA, deletion.

import { accountPath, call, domainNames, seg } from "./api.js";
import { $, Pager, confirmAction, expiry, facts, fill, h, say, showProblem } from "./dom.js";

const PURPOSE = { tls: "TLS server", signing: "Token signing" };
const ORIGIN = { imported: "Imported", generated: "Generated" };
let pager = null;

/** What a person calls a chain: its names, else its subject. */
export function chainLabel(chain) {
  const names = chain.dns_names || [];
  return names.length ? names.join(", ") : (chain.subject || chain.id);
}

async function importChain(ctx, event) {
  event.preventDefault();
  const file = $("chain-file");
  const password = $("chain-password");
  const error = $("chain-import-error");
  fill(error);
  if (!file.files.length) { fill(error, "Choose a PFX or PKCS#12 file first."); return; }
  const form = new FormData();
  form.append("file", file.files[0]);
  form.append("password", password.value);
  try {
    const { data } = await call("POST", `${accountPath(ctx.accountId)}/chains/import`, { form });
    say(`Imported the chain for ${chainLabel(data)}.`);
    file.value = "";
    password.value = "";
    await ctx.reload();
  } catch (problem) {
    // Keep the chosen file for a retry, never the password.
    password.value = "";
    showProblem(error, problem);
  }
}

async function generate(ctx, event) {
  event.preventDefault();
  const purpose = $("gen-purpose").value;
  const body = { purpose, key_type: $("gen-key-type").value };
  if (purpose === "tls") body.domain = $("gen-domain").value;
  const error = $("chain-generate-error");
  fill(error);
  if (purpose === "tls" && !body.domain) { fill(error, "Add a domain to the account first."); return; }
  try {
    const { data } = await call("POST", `${accountPath(ctx.accountId)}/chains/generate`, { json: body });
    say(`Generated a ${PURPOSE[purpose]} chain: ${chainLabel(data)}.`);
    await ctx.reload();
  } catch (problem) {
    showProblem(error, problem);
  }
}

function syncPurpose() {
  const tls = $("gen-purpose").value === "tls";
  $("gen-domain").disabled = !tls;
}

export function init(ctx) {
  $("chain-import-form").addEventListener("submit", (e) => importChain(ctx, e));
  $("chain-generate-form").addEventListener("submit", (e) => generate(ctx, e));
  $("gen-purpose").addEventListener("change", syncPurpose);
  pager = new Pager({ list: $("chain-list"), search: $("chain-search"), prev: $("chains-prev"),
    next: $("chains-next"), label: $("chains-page"), size: 20, empty: "No chain.",
    render: (c) => item(ctx, c),
    text: (c) => `${chainLabel(c)} ${c.subject} ${c.issuer} ${c.purpose} ${c.origin}` });
}

async function remove(ctx, chain) {
  const losing = chain.served_for || [];
  const signing = ctx.pki && ctx.pki.signing_chain_id === chain.id;
  const text = `Delete the chain ${chainLabel(chain)}? ` + (losing.length
    ? "These names lose their chain now:" : "No name is served by it now.") +
    (signing ? " It is the signing certificate: tokens will be refused." : "");
  if (!(await confirmAction(text, losing))) return;
  try {
    await call("DELETE", `${accountPath(ctx.accountId)}/chains/${seg(chain.id)}`);
    say(`Deleted the chain ${chainLabel(chain)}.`);
    await ctx.reload();
  } catch (problem) {
    showProblem($("chain-generate-error"), problem);
  }
}

function item(ctx, chain) {
  const served = chain.served_for || [];
  const signing = ctx.pki && ctx.pki.signing_chain_id === chain.id;
  return h("li", { class: "card" },
    h("h4", {}, chainLabel(chain)),
    facts([
      ["Purpose", PURPOSE[chain.purpose] || String(chain.purpose)],
      ["Origin", ORIGIN[chain.origin] || String(chain.origin)],
      ["Key type", String(chain.key_type)],
      ["Subject", chain.subject || "—"],
      ["Issuer", chain.issuer || "—"],
      ["Expires", expiry(chain.not_after)],
      ["Served now for", served.length ? served.join(", ")
        : chain.purpose === "signing" ? "no name (a token-signing chain)" : "not served"],
      ...(signing ? [["Signing", "the account's signing certificate"]] : []),
    ]),
    h("button", { type: "button", class: "danger small", onclick: () => remove(ctx, chain) },
      "Delete", h("span", { class: "visually-hidden" }, ` chain ${chainLabel(chain)}`)));
}

export function render(ctx) {
  const select = $("gen-domain");
  const before = select.value;
  const domains = domainNames(ctx.account);
  fill(select, ...(domains.length ? domains.map((d) => h("option", { value: d }, d))
    : [h("option", { value: "" }, "(no domain)")]));
  if (domains.includes(before)) select.value = before;
  syncPurpose();
  pager.set(ctx.chains);
}
