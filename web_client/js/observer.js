// The observer page: watch the lesson, say nothing. Beside the lesson, who is
// connected and whose hand is up, read-only (for an inspector or a trainee teacher).

import "./teacher_strings.js";
import { LessonPage } from "./lesson_page.js";
import { viewerOptions, setCurrentPage } from "./viewer.js";
import { classrooms, nameOf } from "./lesson_state.js";
import { t } from "./i18n.js";
import { h, byTestId, reconcile } from "./ui.js";
import { DeckStore, DeckFrame } from "./deck.js";

/** The lesson's deck, drawn from this browser's own copy (as on the projector). */
let deck = null;

function renderDeck(page) {
  const view = page.view;
  if (!deck) deck = { store: new DeckStore({ lessonId: view.id, token: page.token }), frame: new DeckFrame(byTestId("deck-view")) };
  deck.store.setDeck(view.deck);
  if (view.deck) deck.store.setCurrent(view.deck.page);
  deck.frame.show(view.deck, (n) => deck.store.url(n));
  byTestId("lesson").classList.toggle("has-deck", !!(view.deck && view.deck.page));
}

function renderSide(page) {
  const view = page.view;
  const rooms = classrooms(view);
  reconcile(
    byTestId("roster"),
    rooms,
    (room) => room.id,
    () => h("li", {}, h("span", { class: "online-dot" })),
    (el, room) => {
      const dot = el.querySelector(".online-dot");
      dot.classList.toggle("on", room.online);
      dot.textContent = `${room.name} · ${t(room.online ? "state.online" : "state.offline")}`;
      el.dataset.online = String(room.online);
    },
  );
  const hands = view.hands.length ? view.hands : [null];
  reconcile(
    byTestId("hands"),
    hands,
    (hand) => (hand ? hand.classroom_id : "empty"),
    () => h("li", {}),
    (el, hand) => {
      el.className = hand ? "" : "empty";
      el.textContent = hand ? `${hand.student} · ${nameOf(view, hand.classroom_id)}` : t("t.no_hands");
    },
  );
}

const options = viewerOptions((p) => {
  renderSide(p);
  renderDeck(p);
});
// The page object is needed by the track callback; LessonPage calls it only after joining.
setCurrentPage(new LessonPage({ role: "observer", ...options }));
