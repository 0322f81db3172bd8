// The room's device page, `/room#device=<credential>`: the projector PC's start page
// (README: kiosk mode). With no lesson live it shows, large enough to read from the
// back of the room, the room's name and its next lessons. When the teacher starts one,
// it goes to the classroom page with that lesson's token, by itself; the classroom
// page (classroom.js, device mode) comes back here when the lesson ends.
//
// Why a page change and not the lesson inside this page: each lesson starts from a
// fresh page, so a PC left on for months never carries one lesson's leftovers (peer
// connections, cameras, timers) into the next, and classroom.js stays the one
// projector page.

import "./room_strings.js";
import { deviceNext } from "./api.js";
import { initI18n, t, onLangChange } from "./i18n.js";
import { h, byTestId, showFullMessage } from "./ui.js";
import { wallSpan, dayLabel, wallClockAt } from "./schedule.js";

// How it asks (docs/protocol.md, GET /api/device/next?wait=): the server holds the
// question until something changes (the teacher starts a lesson, the timetable is
// edited) or WAIT_S pass, so the page joins within moments of the start without asking
// every second; it asks again at once, but never twice within MIN_INTERVAL_MS (a server
// that answers at once must not be asked in a loop). A stopping server answers first.
const WAIT_S = 10;
const MIN_INTERVAL_MS = 1000;
// After a failure (the server restarting, the network down): from 250 ms, doubling, to
// 2 s at most, so that the room is back within about 2 s of the server.
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;

const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
const device = fragment.get("device");
/** A lesson not to join by itself: it is open on another PC with this room's link. */
let skip = fragment.get("skip");
/** @type {any} the latest answer */
let last = null;
/** The server's clock minus this PC's: a projector PC's clock is often wrong. */
let serverOffsetMs = 0;
let retryMs = RETRY_MIN_MS;
/** Whether the next question may wait on the server (the last one was answered). */
let waiting = false;
let done = false;
let drawn = "";

initI18n();
const main = /** @type {HTMLElement} */ (document.querySelector("main"));
const status = byTestId("device-status");

// A hook for tests and for a person on site: what the page last heard, and its state.
window.__room = {
  get answer() { return last; },
  get state() { return main.dataset.state; },
};

onLangChange(() => { drawn = ""; render(); setOnline(status.dataset.state === "ok"); });
// The fragment is the page's only input: a new one (a pasted link) is a new page.
window.addEventListener("hashchange", () => location.reload());

if (!device) {
  refuse("bad_device_link");
} else {
  main.dataset.state = "loading";
  poll();
  setInterval(tick, 1000);
}

async function poll() {
  if (done) return;
  const began = Date.now();
  let answer;
  try {
    // The first question, and the first after a failure, is answered at once: the
    // screen must show the schedule (or that the server is back) without waiting.
    answer = await deviceNext(device, waiting ? WAIT_S : 0);
  } catch (err) {
    if (err.status === 403 && (err.code === "device_link_revoked" || err.code === "bad_device_link")) {
      refuse(err.code);
      return;
    }
    // Anything else can pass: the server restarting, the network, a proxy's 502.
    waiting = false;
    setOnline(false);
    setTimeout(poll, retryMs);
    retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    return;
  }
  retryMs = RETRY_MIN_MS;
  waiting = true;
  last = answer;
  serverOffsetMs = Date.parse(answer.now) - Date.now();
  setOnline(true);
  if (skip && (!answer.lesson || answer.lesson.lesson_id !== skip)) skip = null;
  if (answer.lesson && answer.lesson.lesson_id !== skip) {
    join(answer.lesson);
    return;
  }
  render();
  tick();
  setTimeout(poll, Math.max(0, MIN_INTERVAL_MS - (Date.now() - began)));
}

function join(lesson) {
  done = true;
  main.dataset.state = "joining";
  render();
  note(t("room.joining"), "joining");
  const params = new URLSearchParams({ token: lesson.token, device, lesson: lesson.lesson_id });
  // replace: the kiosk's history stays one page long.
  location.replace(`/classroom#${params}`);
}

function render() {
  if (!last || main.dataset.state === "refused") return;
  const room = last.room;
  byTestId("room-name").textContent = room.name;
  byTestId("room-school").textContent = room.school;
  document.title = `${room.name} · ${t("app.name")}`;
  if (main.dataset.state !== "joining") main.dataset.state = last.lesson ? "elsewhere" : "waiting";
  if (last.lesson && main.dataset.state === "elsewhere") {
    note(t("room.elsewhere"), "elsewhere", [{ label: t("room.take_over"), testid: "take-over", onClick: takeOver }]);
  } else if (main.dataset.state !== "joining") {
    note(null);
  }
  // Redrawn only when something shown changed: the page may ask every second.
  // A lesson held today is still in the answer until its timetabled end: not "next".
  const next = last.next.filter((o) => o.state === "scheduled" || o.state === "live");
  const key = JSON.stringify([t("room.next"), last.now.slice(0, 10), next]);
  if (key === drawn) return;
  drawn = key;
  const list = byTestId("next-lessons");
  list.replaceChildren(
    ...next.map((o) =>
      h(
        "li",
        { dataset: { testid: "next-lesson", state: o.state, entry: o.entry_id, on: o.on } },
        h("span", { class: "when", dataset: { testid: "next-when" } }, `${dayLabel(o.starts_at, last.now)} ${wallSpan(o.starts_at, o.ends_at)}`),
        o.state === "live" ? h("span", { class: "live" }, t("room.live")) : null,
        h("span", { class: "what", dataset: { testid: "next-title" } }, o.title),
        h("span", { class: "by", dataset: { testid: "next-teacher" } }, t("room.teacher_school", { teacher: o.teacher.name, school: o.school.name })),
      ),
    ),
  );
  byTestId("no-lessons").hidden = next.length > 0;
}

function takeOver() {
  skip = null;
  if (last && last.lesson) join(last.lesson);
}

/** The line under the room's name: joining, or open elsewhere; null hides it. */
function note(text, kind, actions = []) {
  const el = byTestId("room-note");
  if (!el) return;
  el.hidden = !text;
  el.dataset.kind = kind || "";
  el.replaceChildren(
    ...(text ? [h("span", {}, text)] : []),
    ...actions.map((a) => h("button", { class: "big", dataset: { testid: a.testid }, onclick: a.onClick }, a.label)),
  );
}

function setOnline(ok) {
  status.dataset.state = ok ? "ok" : "bad";
  status.textContent = t(ok ? "room.online" : "room.offline");
}

function tick() {
  if (!last) return;
  byTestId("room-clock").textContent = wallClockAt(Date.now() + serverOffsetMs, last.now);
}

/** The link is refused: say so and stop asking (a new link is a new page). */
function refuse(code) {
  done = true;
  const bad = code === "bad_device_link";
  main.dataset.state = "refused";
  status.hidden = true;
  showFullMessage(main, {
    titleKey: bad ? "room.bad_link" : "room.revoked",
    textKey: bad ? "room.bad_link_hint" : "room.revoked_hint",
    testid: bad ? "device-bad-link" : "device-revoked",
  });
}
