// The page's only way to the server: the existing /api/v1 routes, with the session cookie
// (sent by the browser, never readable here) and, on changes, the session's CSRF token.

let csrf = null;

/** An API refusal: ``problem`` is the RFC 9457 document the API answered. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || { status, detail: `The server answered ${status}.` };
  }
}

export function setCsrf(token) { csrf = token; }

/**
 * Call the server. ``json`` sends a JSON body; ``form`` a FormData (multipart). Resolves
 * to ``{ data, headers }``; rejects with ApiError carrying the API's problem.
 */
export async function call(method, path, { json, form, headers = {} } = {}) {
  const sent = { Accept: "application/json", ...headers };
  let body;
  if (json !== undefined) { sent["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  if (form !== undefined) body = form;
  if (method !== "GET" && csrf) sent["X-CSRF-Token"] = csrf;
  const response = await fetch(path, {
    method, headers: sent, body, credentials: "same-origin", cache: "no-store",
    redirect: "error",
  });
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, headers: response.headers };
}

export const get = (path) => call("GET", path).then((r) => r.data);

/** A path segment, escaped (ids and domain names come from data). */
export const seg = (value) => encodeURIComponent(String(value));

export const accountPath = (id) => `/api/v1/accounts/${seg(id)}`;

/**
 * An account's verified domain names (the API's ``domains``): the only names a chain may be
 * generated or bound for. Pending ones are in ``domain_status`` (see domainEntries).
 */
export function domainNames(acc) {
  return (acc && Array.isArray(acc.domains) ? acc.domains : [])
    .map((d) => (typeof d === "string" ? d : (d && (d.name || d.domain)) || ""))
    .filter(Boolean);
}

/**
 * Every domain of an account with its status: ``{name, status, challenge}``, from the
 * API's ``domain_status`` (pending ones carry their DNS challenge ``{type, name, value}``).
 * An account without ``domain_status`` lists its ``domains`` as verified.
 */
export function domainEntries(acc) {
  if (acc && Array.isArray(acc.domain_status)) {
    return acc.domain_status
      .filter((d) => d && typeof d.name === "string" && d.name)
      .map((d) => ({ name: d.name, status: String(d.status || "verified"),
        challenge: d.challenge && typeof d.challenge === "object" ? d.challenge : null }));
  }
  return domainNames(acc).map((name) => ({ name, status: "verified", challenge: null }));
}
