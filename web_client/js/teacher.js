// The teacher page: publish camera, microphone and slides; see every classroom and
// how well it receives the lesson; answer raised hands; run the stage; chat; end.

import "./teacher_strings.js";
import { LessonPage } from "./lesson_page.js";
import { openCameraAndMicrophone } from "./media.js";
import { classrooms, nameOf, deliveryLevel, recordedSeconds } from "./lesson_state.js";
import { t } from "./i18n.js";
import { wireDeck, renderDeck } from "./teacher_deck.js";
import { h, byTestId, attachTrack, formatWait, formatClock, mediaErrorReason, reconcile, cameraProblem } from "./ui.js";
import { teacherFromLocation, showToday, todayHref } from "./teacher_today.js";

// Opened with the teacher's lasting link (`#teacher=…`): without a lesson token the page
// is the list of the day's lessons (teacher_today.js); with one, the lesson, and once it
// ends a way back to that list.
const teacherLink = teacherFromLocation();
// Only the fragment changes between the list and a lesson (same path): a new fragment
// is a new page.
window.addEventListener("hashchange", () => location.reload());

/** Latest `link` report per classroom (docs/protocol.md: sent to the teacher). */
const links = new Map();
/** Local receipt time (s) of a lesson time, to show waiting times without trusting clocks. */
let clock = { lessonAt: 0, localS: 0, known: false };

/** @type {LessonPage} */
const page = new LessonPage({
  role: "teacher",
  noToken: teacherLink ? () => showToday(teacherLink) : undefined,
  // The relay decodes these once and encodes a ladder from them: send them good.
  sendOptions: {
    camera: { maxBitrate: 1_500_000 },
    microphone: { priority: "high" },
    screen: { maxBitrate: 1_200_000, degradationPreference: "maintain-resolution" },
  },
  render: (p) => render(p),
  // After the lesson: its replay (if recorded), who was there (attendance.html) and,
  // opened from the teacher's lasting link, the way back to the day's lessons.
  endedActions: (p) => [
    ...p.replayActions(),
    {
      labelKey: "t.attendance",
      href: `/attendance#lesson=${encodeURIComponent(p.view ? p.view.id : "")}&token=${encodeURIComponent(p.token)}`,
      testid: "attendance-link",
    },
    ...(teacherLink ? [{ labelKey: "today.back", href: todayHref(teacherLink), testid: "today-back" }] : []),
  ],
  // Each picture says what really arrives (status.js): the mosaic and the stage.
  pictures: { classrooms: "mosaic-tile", stage_video: "stage-tile" },
  soundSlots: ["stage_audio"],
  // The teacher hears a classroom only while it speaks: no sound to ask for before.
  soundWanted: (p) => !!(p.view && p.view.stage),
  expects: (p, slot) => {
    const view = p.view;
    if (slot === "stage_video") return !!view.stage;
    return classrooms(view).some((room) => room.online && !(view.stage && view.stage.classroom_id === room.id));
  },
  onTrack: (slot, track) => {
    if (slot === "classrooms") attachTrack(/** @type {HTMLVideoElement} */ (byTestId("mosaic-video")), track);
    if (slot === "stage_video") attachTrack(/** @type {HTMLVideoElement} */ (byTestId("stage-video")), track);
    if (slot === "stage_audio") {
      const el = /** @type {HTMLAudioElement} */ (byTestId("stage-audio"));
      attachTrack(el, track);
      page.sound.add(el);
    }
  },
  onWelcome: (welcome) => {
    // Lesson time now, as well as the page can tell: from the snapshot's origin
    // (wall clock at lesson time 0) when given, refined by each live event.
    const origin = welcome.lesson.origin;
    if (typeof origin === "number") setClock(Date.now() / 1000 - origin);
  },
  onEvent: (event) => {
    if (typeof event.at === "number") setClock(event.at);
  },
  onLink: (link) => {
    links.set(link.participant_id, link);
    renderClassrooms(page);
    if (page.you && link.participant_id === page.you.id) renderMosaic(page);
  },
});

function setClock(lessonAt) {
  clock = { lessonAt, localS: Date.now() / 1000, known: true };
}

function lessonNow() {
  return clock.lessonAt + (Date.now() / 1000 - clock.localS);
}

if (page.token) {
  wire();
  wireDeck(page);
  startCamera();
  // Waiting times and the recording's clock move every second.
  setInterval(() => {
    if (!page.view || page.ended) return;
    renderHands(page);
    renderRecording(page);
    renderClassrooms(page);
  }, 1000);
}

function wire() {
  byTestId("share-screen").addEventListener("click", shareScreen);
  byTestId("stop-screen").addEventListener("click", () => stopScreen());
  byTestId("revoke").addEventListener("click", () => page.conn.revokeFloor());
  // A refusal comes back as an `error` and shows as a banner, like any other action's.
  byTestId("pause-recording").addEventListener("click", () => page.conn.pauseRecording());
  byTestId("resume-recording").addEventListener("click", () => page.conn.resumeRecording());
  byTestId("end-lesson").addEventListener("click", () => {
    if (window.confirm(t("t.end_confirm"))) page.conn.endLesson();
  });
  byTestId("chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = /** @type {HTMLInputElement} */ (byTestId("chat-input"));
    const text = input.value.trim();
    if (text && page.conn.chat(text)) input.value = "";
  });
}

async function startCamera() {
  const { video, audio, error } = await openCameraAndMicrophone();
  if (!byTestId("preview-video")) {
    // The page has already turned into a message (bad link, lesson over): let go.
    video && video.stop();
    audio && audio.stop();
    return;
  }
  if (video) {
    await page.media.setTrack("camera", video);
    attachTrack(/** @type {HTMLVideoElement} */ (byTestId("preview-video")), video);
    byTestId("preview-tile").dataset.flowing = "true";
  }
  if (audio) await page.media.setTrack("microphone", audio);
  if (error) {
    const text = !video && !audio
      ? cameraProblem(error)
      : t("camera.partial", { reason: mediaErrorReason(error) });
    page.banner(text, "error", "camera", [{ label: t("camera.retry"), onClick: () => startCamera() }]);
  } else {
    page.banners.querySelectorAll('[data-key="camera"]').forEach((el) => el.remove());
  }
}

/** @type {MediaStreamTrack|null} */
let screenTrack = null;

async function shareScreen() {
  try {
    // Slides: sharp text matters more than motion (contentHint "detail").
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 5, max: 15 } }, audio: false });
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    track.contentHint = "detail";
    track.addEventListener("ended", () => stopScreen(track));
    if (screenTrack) screenTrack.stop();
    screenTrack = track;
    await page.media.setTrack("screen", track);
    attachTrack(/** @type {HTMLVideoElement} */ (byTestId("screen-video")), track);
    byTestId("screen-tile").dataset.flowing = "true";
    byTestId("share-screen").hidden = true;
    byTestId("stop-screen").hidden = false;
  } catch (error) {
    if (error && error.name === "NotAllowedError") return; // the teacher cancelled the picker
    page.banner(t("t.screen_refused", { reason: mediaErrorReason(error) }), "error", "screen");
  }
}

async function stopScreen(track = screenTrack) {
  if (!track || track !== screenTrack) return;
  screenTrack.stop();
  screenTrack = null;
  await page.media.setTrack("screen", null);
  attachTrack(/** @type {HTMLVideoElement} */ (byTestId("screen-video")), null);
  byTestId("screen-tile").dataset.flowing = "false";
  byTestId("share-screen").hidden = false;
  byTestId("stop-screen").hidden = true;
}

// -- rendering ---------------------------------------------------------------------

function render(p) {
  /** @type {HTMLButtonElement} */ (byTestId("end-lesson")).disabled = p.conn.state !== "open";
  renderRecording(p);
  renderStage(p);
  renderHands(p);
  renderClassrooms(p);
  renderMosaic(p);
  renderChat(p);
  renderDeck(p);
}

// The mosaic's geometry, as media/mosaic.py draws it.
const MOSAIC_W = 960;
const MOSAIC_H = 540;

/**
 * Names over the classrooms mosaic, from the relay's layout (the teacher's own
 * `link` report: `previews`, row by row, and `preview_columns`); a raised hand
 * outlines its classroom's tile.
 */
function renderMosaic(p) {
  const own = p.you ? links.get(p.you.id) : null;
  const tiles = (own && own.previews) || [];
  const cols = (own && own.preview_columns) || 1;
  const width = Math.floor(MOSAIC_W / cols / 2) * 2;
  const height = Math.floor((width * 9) / 16 / 2) * 2;
  const rows = Math.max(1, Math.ceil(tiles.length / cols));
  const top = Math.floor((MOSAIC_H - rows * height) / 2 / 2) * 2;
  byTestId("mosaic-tile").dataset.flowing = String(tiles.some((id) => id));
  const hands = new Set(p.view ? p.view.hands.map((hand) => hand.classroom_id) : []);
  const pct = (v, of) => `${((100 * v) / of).toFixed(3)}%`;
  byTestId("mosaic-labels").replaceChildren(
    ...tiles.flatMap((id, i) => {
      if (!id) return [];
      const cell = h("div", { class: hands.has(id) ? "cell hand" : "cell", dataset: { testid: "mosaic-cell", id } },
        h("span", {}, p.view ? nameOf(p.view, id) : id));
      cell.style.left = pct((i % cols) * width, MOSAIC_W);
      cell.style.top = pct(top + Math.floor(i / cols) * height, MOSAIC_H);
      cell.style.width = pct(width, MOSAIC_W);
      cell.style.height = pct(height, MOSAIC_H);
      return [cell];
    }),
  );
}

/** The recording badge and its pause/resume button: the snapshot's state, events folded in. */
function renderRecording(p) {
  const rec = p.view.recording;
  const state = rec ? rec.state : "off";
  const on = state === "recording" || state === "paused";
  const badge = byTestId("recording");
  badge.hidden = !on;
  badge.dataset.state = state;
  if (on) {
    byTestId("recording-label").textContent = t(state === "paused" ? "rec.paused" : "rec.recording");
    // Only what this page saw of the recording tells its length; after a reload, no clock.
    const seconds = recordedSeconds(rec, lessonNow());
    const time = byTestId("recording-time");
    time.hidden = seconds === null || !clock.known;
    time.textContent = seconds === null ? "" : formatClock(seconds);
  }
  const open = p.conn.state === "open";
  const pause = /** @type {HTMLButtonElement} */ (byTestId("pause-recording"));
  const resume = /** @type {HTMLButtonElement} */ (byTestId("resume-recording"));
  pause.hidden = state !== "recording";
  resume.hidden = state !== "paused";
  pause.disabled = resume.disabled = !open;
}

function renderStage(p) {
  const stage = p.view.stage;
  // The mosaic gives up some height to the stage (the hand queue has its own column).
  byTestId("lesson").classList.toggle("has-stage", !!stage);
  byTestId("stage-none").hidden = !!stage;
  byTestId("stage-now").hidden = !stage;
  if (stage) {
    const name = nameOf(p.view, stage.classroom_id);
    byTestId("stage-label").textContent = stage.student
      ? t("cls.stage_student", { name, student: stage.student })
      : t("cls.stage", { name });
    byTestId("stage-now").dataset.classroomId = stage.classroom_id;
  }
}

function renderHands(p) {
  const list = byTestId("hands");
  const hands = p.view.hands;
  const count = byTestId("hand-count");
  count.hidden = hands.length === 0;
  count.textContent = String(hands.length);
  const now = lessonNow();
  const items = hands.length ? hands : [null];
  reconcile(
    list,
    items,
    (hand) => (hand ? `hand-${hand.classroom_id}` : "empty"),
    (hand) => {
      if (!hand) return h("div", { class: "empty" });
      const id = hand.classroom_id;
      return h(
        "div",
        { class: "hand", dataset: { testid: "hand", classroomId: id } },
        h("div", { class: "who" },
          h("div", { class: "student" }),
          h("span", { class: "where" }),
          " · ",
          h("span", { class: "wait", dataset: { testid: "hand-wait" } })),
        h("button", { class: "good", dataset: { testid: "grant" }, onclick: () => p.conn.grantFloor(id) }),
        h("button", { class: "secondary", dataset: { testid: "dismiss" }, onclick: () => p.conn.dismissHand(id) }),
      );
    },
    (el, hand) => {
      if (!hand) {
        el.textContent = t("t.no_hands");
        return;
      }
      el.dataset.student = hand.student;
      el.querySelector(".student").textContent = hand.student;
      el.querySelector(".where").textContent = nameOf(p.view, hand.classroom_id);
      el.querySelector(".wait").textContent = t("t.waiting", { t: formatWait(clock.known ? now - hand.raised_at : 0) });
      el.querySelector("[data-testid=grant]").textContent = t("t.grant");
      el.querySelector("[data-testid=dismiss]").textContent = t("t.dismiss");
    },
  );
}

/** A classroom's report older than this no longer says what it receives now. */
const RECEPTION_STALE_S = 30;

/**
 * What a classroom really receives of the teacher, from its own browser's report
 * (`reception_reported` with `pictures`, docs/protocol.md): the size and frame rate it
 * decodes, or that the picture froze or the relay paused it. The relay's own intent
 * (its `link` report's layers) is only the fallback before a report comes, and says so.
 */
function receivedText(p, room, link) {
  const report = p.view.reception[room.id];
  const age = report ? lessonNow() - report.at : Infinity;
  if (!room.online) return { state: "offline", lines: [] };
  if (!report || age > RECEPTION_STALE_S) {
    const level = deliveryLevel((link && link.layers) || p.view.delivery[room.id]);
    return { state: "unreported", lines: [t("t.recv.unreported"), t("t.recv.relay", { level: t(`delivery.${level}`) })] };
  }
  const pictures = report.pictures || {};
  const lines = [];
  const states = [];
  for (const slot of ["teacher_camera", "slides"]) {
    const pic = pictures[slot];
    if (!pic || (slot === "slides" && pic.state === "waiting")) continue;
    states.push(pic.state);
    const what = t(`t.recv.${slot}`);
    if (pic.state === "live") lines.push(`${what} ${t("pic.live", { w: pic.width, h: pic.height, fps: Math.round(pic.fps) })}`);
    else lines.push(t("t.recv.line", { what, state: t(`t.recv.${pic.state}`) }));
  }
  let state = "live";
  if (states.includes("frozen")) state = "frozen";
  else if (states.length && states.every((s) => s === "paused")) state = "sound_only";
  else if (states.includes("paused")) state = "paused";
  else if (!states.includes("live")) state = "waiting";
  if (state === "sound_only") lines.unshift(t("pic.summary.sound_only"));
  if (lines.length === 0) lines.push(t("t.recv.waiting"));
  if (age >= 15) lines.push(t("t.recv.age", { s: Math.round(age) }));
  return { state, lines };
}

function renderClassrooms(p) {
  if (!p.view) return;
  const body = byTestId("classrooms").querySelector("tbody");
  const rooms = classrooms(p.view);
  const items = rooms.length ? rooms : [null];
  reconcile(
    body,
    items,
    (room) => (room ? `room-${room.id}` : "empty"),
    (room) => {
      if (!room) return h("tr", {}, h("td", { colspan: "4", class: "empty" }));
      const id = room.id;
      return h(
        "tr",
        { dataset: { testid: "classroom-row", id } },
        h("td", {}, h("div", { class: "name" }), h("span", { class: "online-dot" })),
        h("td", {}, h("div", { class: "recv", dataset: { testid: "received" } })),
        h("td", { class: "net mono" },
          h("div", {}, h("span", { class: "kbps" }), " kbps"),
          h("div", {}, h("span", { class: "loss" }), " · ", h("span", { class: "rtt" }))),
        h("td", {}, h("button", { class: "secondary", dataset: { testid: "call-on" }, onclick: () => p.conn.grantFloor(id) })),
      );
    },
    (el, room) => {
      if (!room) {
        el.querySelector("td").textContent = t("t.no_classrooms");
        return;
      }
      const link = links.get(room.id);
      const layers = (link && link.layers) || p.view.delivery[room.id];
      const level = room.online ? deliveryLevel(layers) : "unknown";
      const onStage = !!(p.view.stage && p.view.stage.classroom_id === room.id);
      const fresh = room.online && link;
      el.dataset.online = String(room.online);
      // What the relay means to send (kept for scripts); what arrives is `received`.
      el.dataset.level = level;
      el.querySelector(".name").textContent = room.name;
      const dot = el.querySelector(".online-dot");
      dot.classList.toggle("on", room.online);
      dot.textContent = t(room.online ? "state.online" : "state.offline");
      const received = receivedText(p, room, link);
      el.dataset.received = received.state;
      const recv = /** @type {HTMLElement} */ (el.querySelector(".recv"));
      recv.dataset.state = received.state;
      reconcile(recv, received.lines.map((text, i) => ({ text, i })), (line) => String(line.i),
        () => h("div", {}), (div, line) => { if (div.textContent !== line.text) div.textContent = line.text; });
      el.querySelector(".kbps").textContent = fresh ? String(Math.round(link.sent_kbps)) : "—";
      el.querySelector(".loss").textContent = fresh ? `${(link.loss * 100).toFixed(1)}%` : "—";
      el.querySelector(".rtt").textContent = fresh && typeof link.rtt_ms === "number" ? `${Math.round(link.rtt_ms)} ms` : "—";
      const button = /** @type {HTMLElement} */ (el.querySelector("[data-testid=call-on]"));
      button.hidden = !room.online || onStage;
      button.textContent = t("t.call_on");
    },
  );
}

function renderChat(p) {
  const log = byTestId("chat-log");
  const lines = p.view.chat;
  if (lines.length === 0) {
    log.replaceChildren(h("div", { class: "empty" }, t("chat.empty")));
    return;
  }
  log.replaceChildren(
    ...lines.map((line) => h("div", { class: "chat-line", dataset: { testid: "chat-line" } }, h("span", { class: "name" }, line.name), line.text)),
  );
  log.scrollTop = log.scrollHeight;
}
