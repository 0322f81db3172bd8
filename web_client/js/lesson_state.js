// The lesson as a page sees it: the welcome's snapshot, then each event folded in.
// Pure functions on plain objects, no DOM: the same fold as classroom/lesson.py.

/**
 * @typedef {{id: string, role: string, name: string, online: boolean}} Participant
 * @typedef {{classroom_id: string, student: string, raised_at: number}} Hand
 * @typedef {{classroom_id: string, student: string|null, since: number}} Stage
 * @typedef {{
 *   id: string, title: string, state: string, seq: number, origin: number|null,
 *   participants: Participant[], hands: Hand[], stage: Stage|null,
 *   delivery: Object<string, Object<string, string>>, chat: any[]
 * }} LessonView
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
    default:
      break;
  }
  return view;
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
