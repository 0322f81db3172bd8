// One lesson's attendance (GET /api/lessons/{id}/attendance): every session of each
// classroom, minutes connected, hands with the students' names, floor time, chat lines
// and what it received; and the same as a CSV for Excel. Opened from the admin page
// (the session cookie) or from the teacher's page after the lesson
// (`#lesson=<id>&token=<teacher token>`; the fragment never reaches a server log).

import { initI18n, t, onLangChange } from "./i18n.js";
import "./admin_strings.js";
import { call, download } from "./admin_api.js";
import { h, byTestId } from "./ui.js";

initI18n();

const params = new URLSearchParams(location.hash.replace(/^#/, ""));
const lessonId = params.get("lesson") || "";
const token = params.get("token") || undefined;
/** @type {any} */
let report = null;

if (token) byTestId("back").hidden = true;

function time(iso) {
  return iso ? iso.slice(11, 19) : "";
}

function minutes(s) {
  return `${Math.round(s / 60)}′`;
}

function render() {
  if (!report) return;
  byTestId("lesson-title").textContent = report.title;
  byTestId("lesson-when").textContent = report.started_at
    ? t("att.lesson_time", { start: report.started_at.slice(0, 16).replace("T", " ") })
    : "";
  const live = byTestId("lesson-live");
  live.hidden = report.state !== "live";
  live.textContent = t("att.live");
  const rows = report.attendees.map((a) => {
    const d = a.delivery;
    const known = d ? ["full", "low", "slides_audio", "audio_only"].some((k) => d.level_s[k]) : false;
    const delivery = known ? [
      t("att.delivery", {
        full: minutes(d.level_s.full || 0),
        low: minutes(d.level_s.low || 0),
        slides: minutes(d.level_s.slides_audio || 0),
        audio: minutes(d.level_s.audio_only || 0),
      }),
      d.freezes ? ` · ${t("att.freezes", { n: d.freezes })}` : "",
    ].join("") : "";
    const sessions = a.sessions.length
      ? a.sessions.map((s) => h("div", {}, `${time(s.joined)} — ${s.ended_by === "open" ? t("att.open") : time(s.left)}`,
        s.ended_by === "restart" ? ` ${t("att.restart")}` : ""))
      : [h("span", { class: "hint" }, t("att.absent"))];
    return h("tr", { dataset: { testid: "attendee", name: a.name, role: a.role, minutes: String(a.minutes) } },
      h("td", {}, a.role === "teacher" ? t("att.role.teacher") : a.name),
      h("td", {}, sessions),
      h("td", { dataset: { testid: "minutes" } }, a.minutes.toFixed(1)),
      h("td", {}, a.hands_raised ? `${a.hands_raised}（${a.hands.map((x) => x.student).join("、")}）` : "0"),
      h("td", {}, a.floor_grants ? t("att.floor", { s: Math.round(a.floor_s), n: a.floor_grants }) : "—"),
      h("td", {}, String(a.chat_count)),
      h("td", { class: "hint" }, delivery));
  });
  byTestId("attendees").querySelector("tbody").replaceChildren(...rows);
  byTestId("attendance").hidden = false;
}

async function load() {
  const error = byTestId("attendance-error");
  if (!lessonId) {
    error.textContent = t("att.no_lesson");
    return;
  }
  try {
    report = await call("GET", `/api/lessons/${encodeURIComponent(lessonId)}/attendance`, { token });
    error.textContent = "";
    render();
  } catch (err) {
    error.textContent = err.status === 401 ? t("att.need_signin") : t("error.generic", { message: err.message });
  }
}

byTestId("csv").addEventListener("click", async () => {
  try {
    const blob = await call("GET", `/api/lessons/${encodeURIComponent(lessonId)}/attendance.csv`, { token, as: "blob" });
    download(blob, `attendance-${lessonId}.csv`);
  } catch (err) {
    byTestId("attendance-error").textContent = t("error.generic", { message: err.message });
  }
});

onLangChange(render);
load();
