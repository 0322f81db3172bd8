// The HTTP API (docs/protocol.md): create a lesson, join by code, read, end; a
// room's device link and a teacher's timetable.

export class ApiError extends Error {
  /**
   * @param {number} status  HTTP status, 0 when the server could not be reached
   * @param {string} code    the server's error code, or a status name
   * @param {string} message the server's own words
   */
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

const REQUEST_TIMEOUT_MS = 15000;

/**
 * One call of the API. The browser sends the admin's HttpOnly session cookie by itself
 * (same origin); `token` goes as a Bearer token. Errors come back as ApiError with the
 * server's own code and words.
 * @param {string} method
 * @param {string} path
 * @param {{body?: any, token?: string, as?: "json"|"blob"}} [options]
 */
export async function request(method, path, { body, token, as = "json" } = {}) {
  const headers = { Accept: as === "json" ? "application/json" : "*/*" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
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
  if (response.ok && as === "blob") return response.blob();
  let data = null;
  try { data = await response.json(); } catch (_) { /* empty or not JSON */ }
  if (!response.ok) {
    // FastAPI says {"detail": ...}; our errors say {"code", "message"} (maybe inside detail).
    const detail = data && (data.detail ?? data);
    let code = `http_${response.status}`;
    let message = response.statusText;
    if (detail && typeof detail === "object" && !Array.isArray(detail)) {
      code = detail.code || code;
      message = detail.message || message;
    } else if (typeof detail === "string") {
      message = detail;
    } else if (Array.isArray(detail) && detail[0] && detail[0].msg) {
      message = detail.map((d) => d.msg).join("; ");
    }
    throw new ApiError(response.status, code, message);
  }
  return data;
}

export function createLesson(adminKey, title, classrooms) {
  return request("POST", "/api/lessons", { token: adminKey, body: { title, classrooms } });
}

export function joinByCode(code) {
  return request("POST", "/api/join", { body: { code } });
}

/** What a room's projector PC shows (its device link's credential): the room, its
 * next lessons, and while one runs, the classroom token to join it. With `waitS`, the
 * server holds the answer until something changes (a lesson starts), that long at most. */
export function deviceNext(device, waitS = 0) {
  return request("GET", `/api/device/next${waitS ? `?wait=${waitS}` : ""}`, { token: device });
}

/** A teacher's own timetable (the teacher link's credential) from today, for `days` days. */
export function teacherTimetable(teacher, days = 1) {
  return request("GET", `/api/timetable?days=${days}`, { token: teacher });
}

/** Start one occurrence of a timetable entry: it becomes a lesson (or is the running one). */
export function startOccurrence(teacher, entryId, on) {
  const path = `/api/timetable/${encodeURIComponent(entryId)}/occurrences/${encodeURIComponent(on)}/start`;
  return request("POST", path, { token: teacher });
}

export function getLesson(lessonId, token) {
  return request("GET", `/api/lessons/${encodeURIComponent(lessonId)}`, { token });
}

export function endLesson(lessonId, token) {
  return request("POST", `/api/lessons/${encodeURIComponent(lessonId)}/end`, { token });
}
