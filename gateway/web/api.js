// The gateway's API as the page uses it: same-origin fetch with the session cookie (HttpOnly: the
// page never sees the token), JSON in and out, and the custom header the gateway requires on every
// cookie-authenticated POST/PUT/PATCH/DELETE (a cross-site page cannot send it without a CORS
// preflight, which the gateway never grants).

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

const SAFE = new Set(["GET", "HEAD"]);
let onUnauthorized = () => {};

/** Called when a request answers 401 while the page thinks it is signed in (the session expired). */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export async function api(method, path, body = undefined, { quiet401 = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE.has(method)) headers["X-Edge-Dashboard"] = "1";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (exc) {
    throw new ApiError(0, "unreachable", `the gateway did not answer (${exc.message})`);
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401 && !quiet401) onUnauthorized();
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || response.statusText || `HTTP ${response.status}`,
      error.field,
    );
  }
  return data;
}

export const session = {
  current: () => api("GET", "/api/v1/session", undefined, { quiet401: true }),
  signIn: (clientId, secret) =>
    api("POST", "/api/v1/session", { client_id: clientId, client_secret: secret }, { quiet401: true }),
  signOut: () => api("DELETE", "/api/v1/session", undefined, { quiet401: true }),
};
