// Trusted CA certificates: list, import (PEM or DER), delete, download the bundle.

import { accountPath, call, seg } from "./api.js";
import { $, confirmAction, expiry, facts, fill, h, say, showProblem } from "./dom.js";

export function init(ctx) {
  $("trusted-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("trusted-file");
    fill($("trusted-error"));
    if (!input.files.length) { fill($("trusted-error"), "Choose a certificate file first."); return; }
    const form = new FormData();
    form.append("file", input.files[0]);
    try {
      const { data } = await call("POST", `${accountPath(ctx.accountId)}/trusted-cas`, { form });
      const count = data && data.trusted_cas ? data.trusted_cas.length : 1;
      say(`Imported ${count} trusted CA certificate${count === 1 ? "" : "s"}.`);
      input.value = "";
      await ctx.reload();
    } catch (error) {
      showProblem($("trusted-error"), error);
    }
  });
}

async function remove(ctx, ca) {
  const ok = await confirmAction(`Stop trusting this CA certificate? ${ca.subject}`);
  if (!ok) return;
  fill($("trusted-error"));
  try {
    await call("DELETE", `${accountPath(ctx.accountId)}/trusted-cas/${seg(ca.id)}`);
    say("Trusted CA certificate deleted.");
    await ctx.reload();
  } catch (error) {
    showProblem($("trusted-error"), error);
  }
}

function item(ctx, ca) {
  return h("li", { class: "card" },
    h("h4", {}, ca.subject || "(no subject)"),
    facts([
      ["Issuer", ca.issuer || "—"],
      ["SHA-256", h("code", { class: "fp" }, ca.fingerprint_sha256 || "—")],
      ["Expires", expiry(ca.not_after)],
    ]),
    h("button", { type: "button", class: "danger small", onclick: () => remove(ctx, ca) },
      "Delete", h("span", { class: "visually-hidden" }, ` trusted CA ${ca.subject}`)));
}

export function render(ctx) {
  $("trusted-bundle").setAttribute("href", `${accountPath(ctx.accountId)}/trusted-cas/bundle.pem`);
  $("trusted-bundle").setAttribute("download", `trusted-cas-${seg(ctx.accountId)}.pem`);
  fill($("trusted-list"), ...(ctx.trusted.length ? ctx.trusted.map((ca) => item(ctx, ca))
    : [h("li", { class: "hint" }, "No trusted CA certificate.")]));
}
