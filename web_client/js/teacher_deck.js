// The teacher's deck panel: attach a deck (upload), turn its pages, point with a laser
// dot and draw simple ink on the page; see each classroom's "courseware ready: n/N".
// Every action is one small protocol message (docs/protocol.md, "Courseware").

import "./teacher_strings.js";
import { DeckStore, DeckFrame, polyline } from "./deck.js";
import { classrooms } from "./lesson_state.js";
import { t } from "./i18n.js";
import { h, byTestId, errorText } from "./ui.js";

/** The pointer is sent at most this often: the lesson's message budget is 10 a second. */
const POINT_EVERY_MS = 200;
/** A stroke is simplified to at most this many points before it is sent. */
const MAX_STROKE_POINTS = 200;

let store = null;
let frame = null;
let tool = "pointer";
/** Date.now() when each page turn was sent, by page (tests and the bench read it). */
const turnedAt = {};

export function wireDeck(page) {
  const host = byTestId("deck-view");
  frame = new DeckFrame(host);
  const input = /** @type {HTMLInputElement} */ (byTestId("deck-file"));
  input.addEventListener("change", () => {
    if (input.files && input.files[0]) upload(page, input.files[0]).finally(() => { input.value = ""; });
  });
  byTestId("deck-prev").addEventListener("click", () => turn(page, -1));
  byTestId("deck-next").addEventListener("click", () => turn(page, +1));
  byTestId("deck-away").addEventListener("click", () => {
    const deck = page.view && page.view.deck;
    if (deck) page.conn.turnPage(deck.page ? 0 : 1);
  });
  byTestId("deck-clear").addEventListener("click", () => page.conn.clearInk());
  for (const name of ["pointer", "ink"]) {
    byTestId(`deck-tool-${name}`).addEventListener("click", () => {
      tool = name;
      renderTools();
    });
  }
  renderTools();
  // A presenter's clicker sends PageDown/PageUp (or the arrows).
  document.addEventListener("keydown", (ev) => {
    const target = /** @type {HTMLElement} */ (ev.target);
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) return;
    if (ev.key === "PageDown" || ev.key === "ArrowRight") turn(page, +1);
    else if (ev.key === "PageUp" || ev.key === "ArrowLeft") turn(page, -1);
    else return;
    ev.preventDefault();
  });
  wirePointer(page, frame);
  window.__teacherDeck = { turnedAt, get frame() { return frame; } };
}

async function upload(page, file) {
  const status = byTestId("deck-upload-status");
  const max = 50 * 1024 * 1024;
  if (file.size > max) {
    // Said here, before a byte leaves: a village uplink must not carry a refused file.
    status.textContent = t("deck.too_large", { mb: Math.round(max / 1024 / 1024) });
    status.dataset.state = "error";
    return;
  }
  status.textContent = t("deck.uploading");
  status.dataset.state = "busy";
  try {
    const url = `/api/lessons/${encodeURIComponent(page.view.id)}/deck?name=${encodeURIComponent(file.name)}`;
    const r = await fetch(url, { method: "POST", body: file, headers: { Authorization: `Bearer ${page.token}` } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw body;
    status.textContent = t("deck.attached", { name: body.name, pages: body.pages });
    status.dataset.state = "done";
  } catch (err) {
    status.textContent = errorText(err && err.code ? err : { message: String(err && err.message) });
    status.dataset.state = "error";
  }
}

function turn(page, step) {
  const deck = page.view && page.view.deck;
  if (!deck) return;
  const next = Math.min(deck.pages, Math.max(1, (deck.page || 0) + step));
  if (next === deck.page) return;
  turnedAt[next] = Date.now();
  page.conn.turnPage(next);
}

function renderTools() {
  for (const name of ["pointer", "ink"]) {
    byTestId(`deck-tool-${name}`).setAttribute("aria-pressed", String(tool === name));
  }
}

function wirePointer(page, deckFrame) {
  const surface = deckFrame.frame;
  let lastPoint = 0;
  let pointTimer = null;
  let pendingPoint = null;
  let stroke = null;
  let line = null;
  const sendPoint = () => {
    pointTimer = null;
    if (!pendingPoint) return;
    lastPoint = Date.now();
    page.conn.point(pendingPoint.x, pendingPoint.y);
    pendingPoint = null;
  };
  surface.addEventListener("pointermove", (ev) => {
    const at = deckFrame.at(ev);
    if (!at) return;
    if (tool === "pointer") {
      pendingPoint = at;
      const wait = POINT_EVERY_MS - (Date.now() - lastPoint);
      if (wait <= 0) sendPoint();
      else if (!pointTimer) pointTimer = setTimeout(sendPoint, wait);
    } else if (stroke) {
      const last = stroke[stroke.length - 1];
      if (Math.hypot(at.x - last[0], at.y - last[1]) > 0.002) {
        stroke.push([at.x, at.y]);
        const deck = page.view.deck;
        line.replaceWith((line = polyline({ color: "red", points: stroke }, deck.width, deck.height)));
      }
    }
  });
  surface.addEventListener("pointerleave", () => {
    if (tool !== "pointer") return;
    clearTimeout(pointTimer);
    pointTimer = null;
    pendingPoint = null;
    if (page.view && page.view.deck && page.view.deck.pointer) page.conn.point(null, null);
  });
  surface.addEventListener("pointerdown", (ev) => {
    const at = deckFrame.at(ev);
    const deck = page.view && page.view.deck;
    if (tool !== "ink" || !at || !deck) return;
    surface.setPointerCapture(ev.pointerId);
    stroke = [[at.x, at.y]];
    line = polyline({ color: "red", points: stroke }, deck.width, deck.height);
    deckFrame.svg.append(line);
  });
  const finish = () => {
    if (!stroke) return;
    const points = simplify(stroke, MAX_STROKE_POINTS);
    stroke = null;
    page.conn.ink(points, "red");
    // The stroke stays drawn until the server's ink_drawn redraws the page's ink.
    deckFrame.inkKey = "";
  };
  surface.addEventListener("pointerup", finish);
  surface.addEventListener("pointercancel", finish);
}

/** At most `max` points: every k-th, the last one kept. */
function simplify(points, max) {
  if (points.length <= max) return points;
  const step = Math.ceil(points.length / (max - 1));
  const out = points.filter((_, i) => i % step === 0);
  out.push(points[points.length - 1]);
  return out.slice(0, max);
}

export function renderDeck(page) {
  const view = page.view;
  if (!view || !frame) return;
  const deck = view.deck;
  if (deck && (!store || store.deck === null || store.deck.id !== deck.id)) {
    store = store || new DeckStore({ lessonId: view.id, token: page.token });
    store.setDeck(deck);
  }
  if (store && deck) store.setCurrent(deck.page);
  frame.show(deck, (n) => store.url(n));
  byTestId("deck-none").hidden = !!deck;
  byTestId("deck-controls").hidden = !deck;
  if (deck) {
    byTestId("deck-page-no").textContent = deck.page ? `${deck.page} / ${deck.pages}` : t("deck.away");
    byTestId("deck-name").textContent = deck.name;
    /** @type {HTMLButtonElement} */ (byTestId("deck-prev")).disabled = deck.page <= 1;
    /** @type {HTMLButtonElement} */ (byTestId("deck-next")).disabled = deck.page >= deck.pages;
    byTestId("deck-away").textContent = deck.page ? t("deck.put_away") : t("deck.show");
  }
  renderReady(page);
}

/** "courseware ready: n/N" for each classroom, from its courseware_reported events. */
function renderReady(page) {
  const view = page.view;
  const deck = view.deck;
  const list = byTestId("deck-ready");
  list.hidden = !deck;
  if (!deck) return;
  list.replaceChildren(
    ...classrooms(view).map((room) => {
      const got = view.courseware[room.id];
      const ready = got && got.deck_id === deck.id ? got.ready : 0;
      const done = ready >= deck.pages;
      return h(
        "li",
        { dataset: { testid: "deck-ready-room", id: room.id, ready: String(ready), total: String(deck.pages) }, class: done ? "ready" : "" },
        h("span", { class: "name" }, room.name),
        h("span", { class: "count" }, t(done ? "deck.ready_all" : "deck.ready", { n: ready, total: deck.pages })),
      );
    }),
  );
}
