// The Certificates tab: sign-in, the account picker, and the account's sections. Each
// section module wires its forms once (init) and draws from the loaded state (render).

import { ApiError, accountPath, call, domainEntries, get, seg, setCsrf } from "./api.js";
import { $, Pager, fill, h, say, showProblem } from "./dom.js";
import * as account from "./account.js";
import * as audit from "./audit.js";
import * as chains from "./chains.js";
import * as pki from "./pki.js";
import * as trusted from "./trusted.js";

const SECTIONS = [account, trusted, chains, pki];
const ctx = { session: null, accounts: [], accountId: null, account: null, chains: [],
  trusted: [], pki: null, pkiEtag: null, reload: () => load(ctx.accountId) };
let picker = null;

function accountIdFromPath() {
  const match = /^\/accounts\/([^/]+)$/.exec(window.location.pathname);
  return match ? decodeURIComponent(match[1]) : null;
}

function showSignIn() {
  ctx.session = null;
  setCsrf(null);
  $("who").hidden = true;
  $("app-view").hidden = true;
  $("sign-in-view").hidden = false;
  $("api-key").focus();
}

async function start(session) {
  ctx.session = session;
  setCsrf(session.csrf_token);
  $("sign-in-view").hidden = true;
  $("app-view").hidden = false;
  $("who").hidden = false;
  fill($("who-text"), `Signed in as ${session.role}` +
    (session.account_id ? ` of ${session.account_id}` : ""));
  const chooses = session.role !== "customer";
  $("accounts-panel").hidden = !chooses;
  $("app-view").classList.toggle("with-picker", chooses);
  $("audit-section").hidden = session.role !== "operator";
  if (session.role === "operator") audit.show(ctx);
  let wanted = accountIdFromPath();
  if (chooses) {
    try {
      const own = session.account_id;
      // The key's own account first, then by name (the API lists by creation).
      ctx.accounts = ((await get("/api/v1/accounts")).accounts || []).sort((a, b) =>
        (b.id === own) - (a.id === own) || String(a.name).localeCompare(String(b.name)));
    } catch (error) {
      showProblem($("account-error"), error);
      return;
    }
    picker.set(ctx.accounts);
  }
  wanted = wanted || session.account_id || (ctx.accounts[0] && ctx.accounts[0].id);
  if (wanted) await open(wanted, false);
  else fill($("account-error"), "There is no account yet: create one with the CLI or the API.");
}

/** Open an account: load every section from the API and draw it. */
async function open(id, push = true) {
  if (push && accountIdFromPath() !== id) window.history.pushState({}, "", `/accounts/${seg(id)}`);
  ctx.accountId = id;
  if (picker) picker.draw();
  await load(id);
}

async function load(id) {
  fill($("account-error"));
  try {
    const [acc, tcas, chainList, settings] = await Promise.all([
      get(accountPath(id)), get(`${accountPath(id)}/trusted-cas`),
      get(`${accountPath(id)}/chains`), call("GET", `${accountPath(id)}/pki`)]);
    Object.assign(ctx, { account: acc, trusted: tcas.trusted_cas || [],
      chains: chainList.chains || [], pki: settings.data,
      pkiEtag: settings.headers.get("ETag") });
  } catch (error) {
    $("account-body").hidden = true;
    if (error instanceof ApiError && error.status === 401) { showSignIn(); return; }
    showProblem($("account-error"), error);
    return;
  }
  $("account-body").hidden = false;
  refreshPicked(ctx.account);
  document.title = `${ctx.account.name} · certgate Certificates`;
  for (const section of SECTIONS) section.render(ctx);
}

/** Keep the picker's copy of the open account current (its domains, its pending count);
 * redrawn only when they changed, so a focused picker button is not replaced for nothing. */
function refreshPicked(acc) {
  const i = ctx.accounts.findIndex((a) => a.id === acc.id);
  if (i < 0 || !picker) return;
  const key = (a) => JSON.stringify([a.name, a.domains, a.domain_status]);
  if (key(ctx.accounts[i]) === key(acc)) return;
  ctx.accounts[i] = acc;
  picker.draw();
}

function accountItem(acc) {
  const current = acc.id === ctx.accountId;
  return h("li", {},
    h("button", { type: "button", class: "pick", "aria-current": current ? "true" : null,
      onclick: () => open(acc.id) },
      h("span", { class: "name" }, acc.name),
      h("span", { class: "sub" }, `${acc.kind} · ${(acc.domains || []).join(", ") || "no domain"}` +
        pendingNote(acc))));
}

/** " · N pending" when the account has domains waiting for approval (a vendor's to-do). */
function pendingNote(acc) {
  const n = domainEntries(acc).filter((d) => d.status !== "verified").length;
  return n ? ` · ${n} pending` : "";
}

async function signIn(event) {
  event.preventDefault();
  const field = $("api-key");
  fill($("sign-in-error"));
  try {
    const { data } = await call("POST", "/session", { json: { api_key: field.value } });
    field.value = "";  // the key is not kept anywhere in the page
    say("Signed in.");
    await start(data);
  } catch (error) {
    field.value = "";
    showProblem($("sign-in-error"), error);
  }
}

async function signOut() {
  try {
    await call("DELETE", "/session");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) { showProblem($("account-error"), error); return; }
  }
  window.history.pushState({}, "", "/");
  say("Signed out.");
  showSignIn();
}

async function boot() {
  picker = new Pager({ list: $("account-list"), search: $("account-search"),
    prev: $("accounts-prev"), next: $("accounts-next"), label: $("accounts-page"), size: 20,
    render: accountItem, empty: "No account matches.",
    text: (a) => `${a.name} ${a.id} ${domainEntries(a).map((d) => d.name).join(" ")}` });
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  for (const section of [...SECTIONS, audit]) section.init(ctx);
  window.addEventListener("popstate", () => { const id = accountIdFromPath(); if (id) open(id, false); });
  try {
    await start((await get("/session")));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) showSignIn();
    else showProblem($("sign-in-error"), error);
  }
  document.body.dataset.ready = "true";
}

boot();
