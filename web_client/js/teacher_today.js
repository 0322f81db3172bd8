// The teacher's lasting link (`/teacher#teacher=<credential>`, docs/protocol.md): the
// day's timetabled lessons, each started with one click. Starting one makes it a lesson
// (or hands back the running one) and opens the teacher page with its token; that page
// links back here once the lesson ends.

import "./teacher_strings.js";
import { teacherTimetable, startOccurrence } from "./api.js";
import { t, onLangChange } from "./i18n.js";
import { h, byTestId, reconcile, showFullMessage } from "./ui.js";
import { wallSpan, dateLabel } from "./schedule.js";

/** States change (a lesson goes live, ends): the list asks again this often. */
const REFRESH_MS = 30_000;
const RETRY_MS = 5_000;

/** The teacher link's credential in the page address, or null. */
export function teacherFromLocation() {
  return new URLSearchParams(location.hash.replace(/^#/, "")).get("teacher");
}

/** The teacher page of a lesson, keeping the way back to this list. */
export function lessonHref(token, credential) {
  return `/teacher#${new URLSearchParams({ token, teacher: credential })}`;
}

export function todayHref(credential) {
  return `/teacher#${new URLSearchParams({ teacher: credential })}`;
}

/** Turn the teacher page (opened without a lesson token) into the list of the day. */
export function showToday(credential) {
  document.querySelectorAll("[data-live-only]").forEach((el) => { /** @type {HTMLElement} */ (el).hidden = true; });
  byTestId("connection").hidden = true;
  const main = /** @type {HTMLElement} */ (document.querySelector("main"));
  main.className = "today";
  main.dataset.testid = "today";
  const heading = h("h1", { dataset: { testid: "today-title" } });
  const error = h("p", { class: "form-error", dataset: { testid: "today-error" }, role: "alert" });
  const list = h("ol", { class: "today-list", dataset: { testid: "today-list" } });
  const none = h("p", { dataset: { testid: "today-none" }, hidden: true });
  const teacherId = credential.split(".")[0];
  const feed = `/api/teachers/${encodeURIComponent(teacherId)}/timetable.ics?access=${encodeURIComponent(credential)}`;
  const calendar = h("a", { href: feed, dataset: { testid: "today-calendar" } });
  main.replaceChildren(heading, error, list, none, h("p", { class: "today-foot" }, calendar));

  /** @type {any} */
  let answer = null;
  let errorKey = "";
  /** Per lesson (entry/on): why its start was refused, in the server's words. */
  const refusals = new Map();

  const render = () => {
    error.textContent = errorKey ? t(errorKey) : "";
    calendar.textContent = t("today.calendar");
    byTestId("lesson-title").textContent = t("today.title");
    if (!answer) return;
    heading.textContent = `${t("today.title")} · ${dateLabel(answer.from)}`;
    const lessons = [...answer.occurrences].sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at));
    const teacher = lessons.length ? lessons[0].teacher.name : "";
    byTestId("who").textContent = teacher ? `${t("role.teacher")} · ${teacher}` : t("role.teacher");
    none.textContent = t("today.none");
    none.hidden = lessons.length > 0;
    reconcile(list, lessons, (o) => `${o.entry_id}/${o.on}`, create, update);
  };

  const create = (o) => {
    const button = h("button", { class: "good big", onclick: () => start(o.entry_id, o.on, button) });
    return h(
      "li",
      { dataset: { testid: "today-lesson", entry: o.entry_id, on: o.on } },
      h("span", { class: "when", dataset: { testid: "today-when" } }),
      h("span", { class: "what", dataset: { testid: "today-what" } }),
      h("span", { class: "state" }, h("span", { class: "state-label", dataset: { testid: "today-state" } }), button),
      h("span", { class: "rooms", dataset: { testid: "today-rooms" } }),
      h("p", { class: "form-error", dataset: { testid: "today-refused" } }),
    );
  };

  const update = (el, o) => {
    el.dataset.state = o.state;
    el.querySelector(".when").textContent = wallSpan(o.starts_at, o.ends_at);
    el.querySelector(".what").textContent = o.title;
    el.querySelector(".rooms").textContent = o.rooms.map((r) => `${r.school} · ${r.name}`).join(t("today.rooms_sep"));
    el.querySelector(".state-label").textContent = t(`today.state.${o.state}`);
    const button = /** @type {HTMLButtonElement} */ (el.querySelector("button"));
    button.hidden = o.state !== "scheduled" && o.state !== "live";
    button.textContent = t(o.state === "live" ? "today.enter" : "today.start");
    button.dataset.testid = o.state === "live" ? "enter-lesson" : "start-lesson";
    const refusal = refusals.get(`${o.entry_id}/${o.on}`);
    el.querySelector(".form-error").textContent = refusal ? t("today.start_failed", { message: refusal }) : "";
  };

  const start = async (entryId, on, button) => {
    button.disabled = true;
    refusals.delete(`${entryId}/${on}`);
    try {
      const started = await startOccurrence(credential, entryId, on);
      // A new history entry: the browser's Back comes to this list again.
      location.assign(lessonHref(started.teacher.token, credential));
    } catch (err) {
      button.disabled = false;
      refusals.set(`${entryId}/${on}`, err.message || err.code);
      render();
    }
  };

  const load = async () => {
    try {
      answer = await teacherTimetable(credential, 1);
      errorKey = "";
    } catch (err) {
      if (err.status === 403 || err.status === 401) {
        showFullMessage(main, { titleKey: "today.bad_link", textKey: "today.bad_link_hint", testid: "teacher-link-refused" });
        return;
      }
      errorKey = "today.offline";
      render();
      setTimeout(load, RETRY_MS);
      return;
    }
    render();
    setTimeout(load, REFRESH_MS);
  };

  onLangChange(render);
  render();
  load();
}
