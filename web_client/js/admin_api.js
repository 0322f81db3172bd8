// The admin pages' calls (docs/protocol.md, "The school admin's session"): the browser
// sends the HttpOnly session cookie by itself, or a token when one is given (the
// teacher's link on the attendance page). Errors come back as ApiError with the
// server's own code and words.

import { ApiError } from "./api.js";

const TIMEOUT_MS = 15000;

/**
 * @param {string} method
 * @param {string} path
 * @param {{body?: any, token?: string, as?: "json"|"blob"}} [options]
 */
export async function call(method, path, { body, token, as = "json" } = {}) {
  const headers = { Accept: as === "json" ? "application/json" : "*/*" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
    });
  } catch (err) {
    throw new ApiError(0, "network", String(err && err.message ? err.message : err));
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok) {
    let data = null;
    try { data = await response.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, (data && data.code) || `http_${response.status}`,
      (data && data.message) || response.statusText);
  }
  if (response.status === 204) return null;
  return as === "blob" ? response.blob() : response.json();
}

/** Save a blob as a file the browser downloads. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
