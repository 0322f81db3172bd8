// The classroom page: a projector PC in a rural school. The lesson full screen, a
// big "raise hand" button, and the classroom's own camera and microphone going to
// the relay (heard by everyone only while the classroom has the floor).

import { LessonPage } from "./lesson_page.js";
import { viewerOptions, setCurrentPage } from "./viewer.js";
import { openCameraAndMicrophone } from "./media.js";
import { t } from "./i18n.js";
import { byTestId, attachTrack, mediaErrorReason, cameraProblem, errorText } from "./ui.js";
import { ReceptionWatch } from "./reception.js";

// A classroom's uplink is often a few hundred kbit/s: ask the camera for little.
const CAMERA = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 15 } };

// Off stage, the camera is only the teacher's small tile of this classroom
// (160-320 px wide, a few frames a second): it must not take the uplink that the
// microphone needs. On stage, everyone sees it: it gets what the link gives.
const CAMERA_PREVIEW = { maxBitrate: 150_000, maxFramerate: 5, scaleResolutionDownBy: 2, priority: "low" };
const CAMERA_ON_STAGE = { maxBitrate: 500_000, maxFramerate: 15, scaleResolutionDownBy: 1, priority: "low" };

// Opened by a room's device page (room.js: `#token=…&device=…&lesson=…`): nobody stands
// at this projector to click, so the page comes back to the room's waiting screen by
// itself when the lesson ends or its link stops working, and reconnects quickly.
const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
const device = fragment.get("device");
const DEVICE_RECONNECT_MAX_MS = 2000;
/** The ended message stays this long on the projector before the room's schedule. */
const DEVICE_BACK_AFTER_END_MS = 3000;
/** A refused link's message stays this long; the room page then asks for a new token. */
const DEVICE_BACK_AFTER_ERROR_MS = 5000;

/** Back to the room's page; `skip`: do not join this lesson again by itself (replaced). */
function backToRoom(skip = false) {
  let href = `/room#device=${encodeURIComponent(device || "")}`;
  const lesson = fragment.get("lesson");
  if (skip && lesson) href += `&skip=${encodeURIComponent(lesson)}`;
  location.replace(href);
}

const deviceOptions = {
  reconnectMaxMs: DEVICE_RECONNECT_MAX_MS,
  // The replay is not for the projector's screen between lessons.
  endedActions: () => [],
  afterEnd: () => setTimeout(() => backToRoom(), DEVICE_BACK_AFTER_END_MS),
  onFatal: (error, p) => {
    if (error.code === "lesson_ended") {
      // Ended while this page was away (a restart, a reload): nothing to show here.
      if (!p.view) backToRoom();
      return !p.view;
    }
    if (error.code === "replaced") {
      // The same room's link is open on another PC: two projectors taking the lesson
      // from each other forever would help nobody; the room page offers to take over.
      backToRoom(true);
      return true;
    }
    p.fail(errorText(error));
    setTimeout(() => backToRoom(), DEVICE_BACK_AFTER_ERROR_MS);
    return true;
  },
};

/** @type {LessonPage} */
let page;
let cameraOnStage = false;
/** The deck sent before class: pre-synced while idle, drawn here from our own copy. */
let deck = null;
/** Its code (deck.js, a tenth of this page) comes with the first deck: on a satellite
 * link a page without one loads a round trip sooner. deck.js imports nothing, so its
 * own copy of a module shares no state with this page's. */
let deckCode = null;
const DECK_CODE_RETRY_MS = 3000;

function renderHand(p) {
  const view = p.view;
  const me = p.you && p.you.id;
  const hand = view.hands.find((h) => h.classroom_id === me);
  const onStage = !!(view.stage && view.stage.classroom_id === me);
  const status = byTestId("hand-status");
  const raise = byTestId("raise-hand");
  const lower = byTestId("lower-hand");
  byTestId("on-stage").hidden = !onStage;
  if (onStage !== cameraOnStage) {
    cameraOnStage = onStage;
    p.media.setSendOptions("camera", onStage ? CAMERA_ON_STAGE : CAMERA_PREVIEW);
  }
  status.hidden = !hand;
  status.classList.toggle("up", !!hand);
  status.textContent = hand ? t("cls.hand_up", { student: hand.student }) : "";
  status.dataset.student = hand ? hand.student : "";
  raise.hidden = !!hand || onStage;
  raise.disabled = page.conn.state !== "open" || view.state === "ended";
  lower.hidden = !hand;
}

const options = viewerOptions((p) => {
  renderHand(p);
  renderDeck(p);
});
page = new LessonPage({
  role: "classroom",
  ...options,
  // The teacher's camera as soon as it can be: the offer leaves behind the join.
  offerEarly: true,
  // After a reconnect the server may have missed the last "courseware ready".
  onWelcome: () => deck && deck.reporter.resend(),
  // A village uplink of a few hundred kbit/s: the microphone goes first, the camera
  // is capped (the relay re-encodes it for everyone anyway).
  sendOptions: {
    camera: CAMERA_PREVIEW,
    microphone: { priority: "high" },
  },
  // No token: this is the join page's job (type the code).
  noToken: () => (device ? backToRoom() : location.replace("/join")),
  ...(device ? deviceOptions : {}),
});
setCurrentPage(page);

if (page.token) {
  wireHand();
  openDevices();
  // Freezes and sound gaps as this browser saw them, for the lesson's delivery report.
  // With them, what its pictures are now (the teacher's table shows it).
  new ReceptionWatch(page.media, page.conn, () => page.pictures.report(["teacher_camera", "slides"]));
  byTestId("fullscreen").addEventListener("click", () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else document.documentElement.requestFullscreen().catch(() => {});
  });
}

function renderDeck(p) {
  const view = p.view;
  if (!deck && !view.deck) return;
  if (!deck) {
    deckCode ??= import("/static/js/deck.js").then(
      (code) => { createDeck(p, code); renderDeck(p); },
      () => setTimeout(() => { deckCode = null; renderDeck(p); }, DECK_CODE_RETRY_MS),
    );
    return;
  }
  deck.store.setDeck(view.deck);
  if (view.deck) deck.store.setCurrent(view.deck.page);
  deck.frame.show(view.deck, (n) => deck.store.url(n));
  byTestId("lesson").classList.toggle("has-deck", !!(view.deck && view.deck.page));
}

function createDeck(p, { DeckStore, DeckFrame, ReadinessReporter }) {
  const reporter = new ReadinessReporter((m) => p.conn.courseware(m.deck_id, m.ready, m.total));
  const store = new DeckStore({
    lessonId: p.view.id,
    token: p.token,
    onProgress: (ready, total) => store.deck && reporter.update(store.deck.id, ready, total),
    // Before class the link is the pre-sync's; during the lesson it is paced.
    live: () => !!(p.view && p.view.state === "live"),
  });
  deck = { store, reporter, frame: new DeckFrame(byTestId("deck-view")) };
  window.__deck = deck;
}

function wireHand() {
  const dialog = /** @type {HTMLDialogElement} */ (byTestId("raise-dialog"));
  const input = /** @type {HTMLInputElement} */ (byTestId("student-name"));
  const error = byTestId("raise-error");
  byTestId("raise-hand").addEventListener("click", () => {
    input.value = "";
    error.textContent = "";
    dialog.showModal();
    input.focus();
  });
  byTestId("raise-cancel").addEventListener("click", () => dialog.close());
  byTestId("raise-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const student = input.value.trim().replace(/\s+/g, " ");
    if (!student) {
      error.textContent = t("cls.need_name");
      return;
    }
    if (!page.conn.raiseHand(student)) {
      error.textContent = t("conn.reconnecting");
      return;
    }
    dialog.close();
  });
  byTestId("lower-hand").addEventListener("click", () => page.conn.lowerHand());
}

async function openDevices() {
  const { video, audio, error } = await openCameraAndMicrophone(CAMERA);
  if (!byTestId("self-video")) {
    // The page has already turned into a message (bad link, lesson over): let go.
    video && video.stop();
    audio && audio.stop();
    return;
  }
  if (video) {
    await page.media.setTrack("camera", video);
    attachTrack(/** @type {HTMLVideoElement} */ (byTestId("self-video")), video);
  }
  if (audio) await page.media.setTrack("microphone", audio);
  if (error) {
    const text = !video && !audio
      ? cameraProblem(error)
      : t("camera.partial", { reason: mediaErrorReason(error) });
    page.banner(text, "error", "camera", [{ label: t("camera.retry"), onClick: () => openDevices() }]);
  } else {
    page.banners.querySelectorAll('[data-key="camera"]').forEach((el) => el.remove());
  }
}
