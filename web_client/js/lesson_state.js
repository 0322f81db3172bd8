// The lesson as a page sees it: the welcome's snapshot, then each event folded in.
// Pure functions on plain objects, no DOM: the same fold as classroom/lesson.py.

/**
 * @typedef {{id: string, role: string, name: string, online: boolean}} Participant
 * @typedef {{classroom_id: string, student: string, raised_at: number}} Hand
 * @typedef {{classroom_id: string, student: string|null, since: number}} Stage
 * @typedef {{
 *   id: string, state: "recording"|"paused"|"off",
 *   startedAt: number|null, pausedS: number, pausedAt: number|null, stoppedAt: number|null
 * }} Recording
 *   `state` is the server's; the rest is timing in lesson seconds, known only from the
 *   recording_* events this page saw (the snapshot does not carry it): `startedAt` is null
 *   when the page joined after the recording started. `pausedS` is the pauses that ended,
 *   `pausedAt` the start of the one going on.
 * @typedef {{
 *   id: string, title: string, state: string, seq: number, origin: number|null,
 *   participants: Participant[], hands: Hand[], stage: Stage|null,
 *   delivery: Object<string, Object<string, string>>, chat: any[],
 *   recording: Recording|null,
 *   reception: Object<string, {pictures: Object<string, any>, at: number}>
 * }} LessonView
 *   `reception`: each classroom's latest `reception_reported` that said what its
 *   browser decodes now (`pictures`), with its lesson time; only what this page saw.
 */

/** @returns {LessonView} */
export function fromWelcome(lesson, previous) {
  return {
    id: lesson.id,
    title: lesson.title,
    state: lesson.state,
    seq: lesson.seq,
    origin: typeof lesson.origin === "number" ? lesson.origin : null,
    participants: (lesson.participants || []).map((p) => ({ ...p })),
    hands: (lesson.hands || []).map((h) => ({ ...h })),
    stage: lesson.stage ? { ...lesson.stage } : null,
    delivery: normaliseDelivery(lesson.delivery),
    // Chat is not part of the snapshot: keep what this page already saw.
    chat: previous ? previous.chat : [],
    recording: recordingFromSnapshot(lesson.recording, previous ? previous.recording : null),
    reception: previous ? previous.reception : {},
    // The deck attached (page, pointer, ink) and each classroom's "courseware ready".
    deck: lesson.deck ? { ...lesson.deck, ink: [...(lesson.deck.ink || [])] } : null,
    courseware: { ...(lesson.courseware || {}) },
  };
}

/** The snapshot's `recording`, with the timing this page already knows of the same one. */
function recordingFromSnapshot(snap, previous) {
  if (!snap) return null;
  const same = previous && previous.id === snap.id;
  return {
    id: snap.id,
    state: snap.state,
    startedAt: same ? previous.startedAt : null,
    pausedS: same ? previous.pausedS : 0,
    pausedAt: same ? previous.pausedAt : null,
    stoppedAt: same ? previous.stoppedAt : null,
  };
}

function normaliseDelivery(delivery) {
  /** @type {Object<string, Object<string, string>>} */
  const out = {};
  for (const [pid, value] of Object.entries(delivery || {})) {
    // Either {slot: layer} or {layers: {...}, estimate_kbps}.
    out[pid] = value && value.layers ? { ...value.layers } : { ...value };
  }
  return out;
}

/**
 * Fold one event into the view (in place) and return it.
 * @param {LessonView} view
 */
export function apply(view, event) {
  if (typeof event.seq === "number") view.seq = event.seq;
  const participant = (id) => view.participants.find((p) => p.id === id);
  switch (event.kind) {
    case "lesson_started":
      view.state = "live";
      break;
    case "lesson_ended":
      view.state = "ended";
      view.stage = null;
      break;
    case "participant_joined": {
      const p = participant(event.participant_id);
      if (p) p.online = true;
      else view.participants.push({ id: event.participant_id, role: event.role, name: event.name, online: true });
      break;
    }
    case "participant_left": {
      const p = participant(event.participant_id);
      if (p) p.online = false;
      break;
    }
    case "hand_raised":
      view.hands = view.hands.filter((h) => h.classroom_id !== event.classroom_id);
      view.hands.push({ classroom_id: event.classroom_id, student: event.student, raised_at: event.at });
      break;
    case "hand_lowered":
    case "hand_dismissed":
      view.hands = view.hands.filter((h) => h.classroom_id !== event.classroom_id);
      break;
    case "floor_granted":
      view.hands = view.hands.filter((h) => h.classroom_id !== event.classroom_id);
      view.stage = { classroom_id: event.classroom_id, student: event.student ?? null, since: event.at };
      break;
    case "floor_revoked":
      if (view.stage && view.stage.classroom_id === event.classroom_id) view.stage = null;
      break;
    case "chat_posted":
      view.chat.push({ name: event.name, text: event.text, at: event.at, participant_id: event.participant_id });
      if (view.chat.length > 200) view.chat.shift();
      break;
    case "delivery_changed":
      view.delivery[event.participant_id] = { ...(event.layers || {}) };
      break;
    case "reception_reported":
      if (event.pictures) view.reception[event.participant_id] = { pictures: event.pictures, at: event.at };
      break;
    case "deck_attached":
      view.courseware = {};
      view.deck = foldDeck(view.deck, event);
      break;
    case "page_turned":
    case "pointer_moved":
    case "ink_drawn":
    case "ink_cleared":
      view.deck = foldDeck(view.deck, event);
      break;
    case "courseware_reported":
      view.courseware[event.participant_id] = { deck_id: event.deck_id, ready: event.ready, total: event.total };
      break;
    case "recording_started":
    case "recording_paused":
    case "recording_resumed":
    case "recording_stopped":
      view.recording = foldRecording(view.recording, event);
      break;
    default:
      break;
  }
  return view;
}

/**
 * One recording_* event on the recording (a new object; the old one is left as it was).
 * Folding an event the snapshot already holds (a reconnect's backlog) changes no state,
 * only fills in the timing.
 * @param {Recording|null} rec
 * @returns {Recording}
 */
export function foldRecording(rec, event) {
  const at = typeof event.at === "number" ? event.at : null;
  const id = event.recording_id ?? (rec ? rec.id : null);
  if (event.kind === "recording_started") {
    if (rec && rec.id === id) {
      // The snapshot already has it (a reconnect's backlog): its state stands, the
      // start time is news. A pause that follows in the backlog sets pausedAt.
      return rec.startedAt !== null ? rec : { ...rec, startedAt: at, pausedS: 0, pausedAt: null, stoppedAt: null };
    }
    // A new recording after a server restart keeps a pause the teacher asked for
    // (as classroom/lesson.py does); nothing is written until it is resumed.
    const paused = !!rec && rec.state === "paused";
    return { id, state: paused ? "paused" : "recording", startedAt: at, pausedS: 0, pausedAt: paused ? at : null, stoppedAt: null };
  }
  const base = rec && rec.id === id
    ? { ...rec }
    : { id, state: "off", startedAt: null, pausedS: 0, pausedAt: null, stoppedAt: null };
  switch (event.kind) {
    case "recording_paused":
      base.state = "paused";
      if (base.pausedAt === null) base.pausedAt = at;
      break;
    case "recording_resumed":
      base.state = "recording";
      if (base.pausedAt !== null && at !== null) base.pausedS += Math.max(0, at - base.pausedAt);
      base.pausedAt = null;
      break;
    case "recording_stopped":
      base.state = "off";
      base.stoppedAt = at;
      break;
    default:
      break;
  }
  return base;
}

/**
 * Seconds recorded so far at lesson time `now` (pauses left out, as on the recording's
 * time line), or null when this page does not know when the recording started.
 * @param {Recording|null} rec
 * @param {number} now
 */
export function recordedSeconds(rec, now) {
  if (!rec || rec.startedAt === null) return null;
  // Paused, but since when this page cannot tell (a pause kept across a server restart).
  if (rec.state === "paused" && rec.pausedAt === null) return null;
  // A pause going on (even one the lesson ended in) stops the count where it began.
  const until = rec.pausedAt ?? rec.stoppedAt ?? now;
  return Math.max(0, until - rec.startedAt - rec.pausedS);
}

export function nameOf(view, id) {
  const p = view && view.participants.find((x) => x.id === id);
  return p ? p.name : id;
}

export function classrooms(view) {
  return view ? view.participants.filter((p) => p.role === "classroom") : [];
}

/**
 * What the relay sends a participant, in words a person understands.
 * @returns {"full"|"low"|"slides_audio"|"audio_only"|"unknown"}
 */
export function deliveryLevel(layers) {
  if (!layers || Object.keys(layers).length === 0) return "unknown";
  const cam = layers.teacher_camera;
  const slides = layers.slides;
  const videoOn = (l) => l && l !== "off";
  if (!videoOn(cam) && !videoOn(slides)) return "audio_only";
  if (!videoOn(cam)) return "slides_audio";
  if (cam === "high" && (slides === undefined || slides === "high")) return "full";
  return "low";
}

/** The deck as it was at a moment of a recording: the start's state, then its events. */
export function deckAt(start, timeline, t) {
  let deck = start ? { ...start, ink: [...(start.ink || [])] } : null;
  for (const ev of timeline) {
    if (ev.t > t) break;
    deck = foldDeck(deck, ev);
  }
  return deck;
}

/** One deck event on the deck state (the fold of classroom/courseware.py). */
export function foldDeck(deck, ev) {
  switch (ev.kind) {
    case "deck_attached":
      return { id: ev.deck_id, name: ev.name, pages: ev.pages, width: ev.width, height: ev.height, page: 1, pointer: null, ink: [] };
    case "page_turned":
      return deck ? { ...deck, page: ev.page, pointer: null, ink: [] } : deck;
    case "pointer_moved":
      return deck ? { ...deck, pointer: ev.x === null || ev.x === undefined ? null : { x: ev.x, y: ev.y } } : deck;
    case "ink_drawn":
      return deck ? { ...deck, ink: [...deck.ink, { color: ev.color, points: ev.points }] } : deck;
    case "ink_cleared":
      return deck ? { ...deck, ink: [] } : deck;
    default:
      return deck;
  }
}
