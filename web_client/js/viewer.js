// The lesson as a classroom or an observer sees it: slides large, the teacher's
// camera beside them, the stage when a classroom speaks, and a note when the link
// is weak and the relay has fallen back to slides or audio only.

import { t } from "./i18n.js";
import { byTestId } from "./ui.js";
import { nameOf, deliveryLevel } from "./lesson_state.js";
import { attachStandardTrack } from "./lesson_page.js";

/** Options for LessonPage shared by the classroom and observer pages. */
export function viewerOptions(extraRender) {
  return {
    onTrack: (slot, track) => attachStandardTrack(currentPage, slot, track),
    // Each picture says what really arrives (status.js).
    pictures: { teacher_camera: "teacher-tile", slides: "slides-tile", stage_video: "stage-tile" },
    soundSlots: ["teacher_audio", "stage_audio"],
    expects: (page, slot) => {
      const view = page.view;
      if (slot === "stage_video") return !!(view.stage && (!page.you || view.stage.classroom_id !== page.you.id));
      const teacher = view.participants.find((p) => p.role === "teacher");
      // Slides are there once shown: before the teacher shares, "off" is nothing to send.
      if (slot === "slides" && !page.flow.progressAt.has("slides")) return false;
      return !!(teacher && teacher.online);
    },
    onFlow: (slot, flowing) => {
      const tiles = { teacher_camera: "teacher-tile", slides: "slides-tile", stage_video: "stage-tile" };
      const tile = byTestId(tiles[slot] || "");
      if (tile) tile.dataset.flowing = String(flowing);
      if (slot === "slides") byTestId("lesson").classList.toggle("no-slides", !flowing);
    },
    // docs/protocol.md: `link` reports reach the participant itself too; they say at
    // once what the relay sends us, before any delivery_changed event is logged.
    onLink: (link) => {
      const page = currentPage;
      if (!page || !page.view || !page.you || link.participant_id !== page.you.id) return;
      page.view.delivery[link.participant_id] = { ...(link.layers || {}) };
      page.render();
    },
    render: (page) => {
      renderLesson(page);
      if (extraRender) extraRender(page);
    },
  };
}

/** @type {any} */
let currentPage = null;
export function setCurrentPage(page) {
  currentPage = page;
}

export function renderLesson(page) {
  const view = page.view;
  const lesson = byTestId("lesson");
  if (!lesson) return;
  // The classroom on stage sees itself in its own corner (outlined), not echoed back.
  const stageIsMe = !!(view.stage && page.you && view.stage.classroom_id === page.you.id);
  lesson.classList.toggle("no-stage", !view.stage || stageIsMe);
  lesson.classList.toggle("me-on-stage", stageIsMe);
  if (view.stage) {
    const name = nameOf(view, view.stage.classroom_id);
    byTestId("stage-label").textContent = view.stage.student
      ? t("cls.stage_student", { name, student: view.stage.student })
      : t("cls.stage", { name });
  }
  // Until the teacher is here, say so where the teacher's picture will be.
  const teacher = view.participants.find((p) => p.role === "teacher");
  const waiting = byTestId("teacher-tile").querySelector(".placeholder");
  waiting.textContent = teacher && teacher.online ? t("cls.teacher_waiting") : t("lesson.scheduled");
  const weak = byTestId("weak-link");
  const level = page.you ? deliveryLevel(view.delivery[page.you.id]) : "unknown";
  // Only a fallback is worth a note over the slides; a lower layer is the relay's
  // everyday work (the teacher's page shows it).
  const weakText = { slides_audio: "cls.weak.slides_audio", audio_only: "cls.weak.audio_only" }[level];
  weak.hidden = !weakText;
  weak.dataset.level = level;
  if (weakText) weak.textContent = t(weakText);
}
