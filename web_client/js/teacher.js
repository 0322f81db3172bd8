// The teacher page: publish camera, microphone and slides; see every classroom and
// how well it receives the lesson; answer raised hands; run the stage; chat; end.

import { LessonPage } from "./lesson_page.js";
import { openCameraAndMicrophone } from "./media.js";
import { classrooms, nameOf, deliveryLevel } from "./lesson_state.js";
import { t } from "./i18n.js";
import { h, byTestId, attachTrack, formatWait, mediaErrorReason } from "./ui.js";

/** Latest `link` report per classroom (docs/protocol.md: sent to the teacher). */
const links = new Map();
/** Local receipt time (s) of a lesson time, to show waiting times without trusting clocks. */
let clock = { lessonAt: 0, localS: 0, known: false };

/** @type {LessonPage} */
const page = new LessonPage({
  role: "teacher",
  render: (p) => render(p),
  onTrack: (slot, track) => {
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
  startCamera();
  // Waiting times move every second.
  setInterval(() => { if (page.view && !page.ended) renderHands(page); }, 1000);
}

function wire() {
  byTestId("share-screen").addEventListener("click", shareScreen);
  byTestId("stop-screen").addEventListener("click", () => stopScreen());
  byTestId("revoke").addEventListener("click", () => page.conn.revokeFloor());
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
  if (video) {
    await page.media.setTrack("camera", video);
    attachTrack(/** @type {HTMLVideoElement} */ (byTestId("preview-video")), video);
  }
  if (audio) await page.media.setTrack("microphone", audio);
  if (error) {
    const text = !video && !audio
      ? (error.name === "NotFoundError" ? t("camera.missing") : t("camera.refused", { reason: mediaErrorReason(error) }))
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
  renderStage(p);
  renderHands(p);
  renderClassrooms(p);
  renderChat(p);
}

function renderStage(p) {
  const stage = p.view.stage;
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
  if (hands.length === 0) {
    list.replaceChildren(h("div", { class: "empty" }, t("t.no_hands")));
    return;
  }
  const now = lessonNow();
  list.replaceChildren(
    ...hands.map((hand) =>
      h(
        "div",
        { class: "hand", dataset: { testid: "hand", classroomId: hand.classroom_id, student: hand.student } },
        h(
          "div",
          { class: "who" },
          h("div", { class: "student" }, hand.student),
          h("span", { class: "where" }, nameOf(p.view, hand.classroom_id)),
          " · ",
          h("span", { class: "wait", dataset: { testid: "hand-wait" } },
            t("t.waiting", { t: formatWait(clock.known ? now - hand.raised_at : 0) })),
        ),
        h("button", { class: "good", dataset: { testid: "grant" }, onclick: () => p.conn.grantFloor(hand.classroom_id) }, t("t.grant")),
        h("button", { class: "secondary", dataset: { testid: "dismiss" }, onclick: () => p.conn.dismissHand(hand.classroom_id) }, t("t.dismiss")),
      ),
    ),
  );
}

function renderClassrooms(p) {
  if (!p.view) return;
  const body = byTestId("classrooms").querySelector("tbody");
  const rooms = classrooms(p.view);
  if (rooms.length === 0) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "7", class: "empty" }, t("t.no_classrooms"))));
    return;
  }
  body.replaceChildren(
    ...rooms.map((room) => {
      const link = links.get(room.id);
      const layers = (link && link.layers) || p.view.delivery[room.id];
      const level = room.online ? deliveryLevel(layers) : "unknown";
      const onStage = p.view.stage && p.view.stage.classroom_id === room.id;
      const fresh = room.online && link;
      return h(
        "tr",
        { dataset: { testid: "classroom-row", id: room.id, online: String(room.online), level } },
        h("td", {}, room.name),
        h("td", {}, h("span", { class: `online-dot${room.online ? " on" : ""}` }, t(room.online ? "state.online" : "state.offline"))),
        h("td", {}, h("span", { class: "deliv", dataset: { level } }, t(`delivery.${level}`))),
        h("td", { class: "mono" }, fresh ? String(Math.round(link.sent_kbps)) : "—"),
        h("td", { class: "mono" }, fresh ? `${(link.loss * 100).toFixed(1)}%` : "—"),
        h("td", { class: "mono" }, fresh && typeof link.rtt_ms === "number" ? `${Math.round(link.rtt_ms)} ms` : "—"),
        h("td", {}, room.online && !onStage
          ? h("button", { class: "secondary", dataset: { testid: "call-on" }, onclick: () => p.conn.grantFloor(room.id) }, t("t.call_on"))
          : null),
      );
    }),
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
