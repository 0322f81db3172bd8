// The replay page: a recording's camera (with the lesson's sound), slides and stage turns
// played in step, and its chapters. Speaks only the HTTP API of docs/protocol.md
// ("Recordings"). Its strings are its own small table (Chinese first, English one click
// away), with the language choice shared with the lesson pages (same storage key).

import { DeckFrame } from "./deck.js";
import { deckAt } from "./lesson_state.js";

const LANG_KEY = "classroom.lang";
const STRINGS = {
  "zh-CN": {
    app: "课堂回放", lang: "English", chapters: "章节", download: "下载离线版",
    start: "开始上课", slides: "老师开始展示课件", floor_granted: "{classroom} 发言",
    floor_granted_student: "{classroom}：{student} 发言", floor_revoked: "回到老师讲课",
    recording_resumed: "暂停后继续", "offline.none": "", "offline.queued": "离线版排队制作中…",
    "offline.running": "正在制作离线版：{p}%", "offline.done": "离线版已完成（{mb} MB）",
    "offline.failed": "离线版制作失败", "offline.unavailable": "服务器无法制作离线版",
    "error.token": "链接无效或已过期，请向老师索取新的回放链接。",
    "error.none": "这节课还没有录像。", "error.load": "无法载入录像：{m}",
    interrupted: "（录制意外中断，已保存到中断前）",
    "label.teacher": "老师", "label.slides": "课件", "label.stage": "发言教室：{name}",
    "label.deck": "课件", page: "课件第 {page} 页",
  },
  en: {
    app: "Lesson replay", lang: "中文", chapters: "Chapters", download: "Download offline copy",
    start: "Lesson begins", slides: "Slides shown", floor_granted: "{classroom} speaks",
    floor_granted_student: "{classroom}: {student} speaks", floor_revoked: "Back to the teacher",
    recording_resumed: "After the pause", "offline.none": "",
    "offline.queued": "Offline copy queued…", "offline.running": "Making the offline copy: {p}%",
    "offline.done": "Offline copy ready ({mb} MB)", "offline.failed": "The offline copy failed",
    "offline.unavailable": "This server cannot make offline copies",
    "error.token": "This link is not valid or has expired; ask the teacher for a new one.",
    "error.none": "This lesson has no recording yet.", "error.load": "Cannot load the recording: {m}",
    interrupted: "(recording cut short; kept up to the interruption)",
    "label.teacher": "Teacher", "label.slides": "Slides", "label.stage": "Classroom speaking: {name}",
    "label.deck": "Courseware", page: "Courseware page {page}",
  },
};

let language = localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh-CN";
const $ = (id) => document.querySelector(`[data-testid=${id}]`);

function t(key, params = {}) {
  const text = STRINGS[language][key] ?? STRINGS["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => String(params[k] ?? ""));
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  return (h ? `${h}:${two(Math.floor(s / 60) % 60)}` : `${Math.floor(s / 60)}`) + `:${two(s % 60)}`;
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch {
    return null;
  }
}

async function api(path, token) {
  const r = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(body.message || r.statusText), { status: r.status });
  return body;
}

function showError(text) {
  const el = $("replay-error");
  el.textContent = text;
  el.hidden = false;
}

// -- playing in step -------------------------------------------------------------------

// The camera file is the clock: the recording's time is its offset plus its currentTime.
// Every other file follows, corrected when it drifts more than this (seconds).
const MAX_DRIFT_S = 0.3;

class Replay {
  constructor(recording) {
    this.recording = recording;
    const files = recording.files;
    this.camera = files.find((f) => f.role === "camera");
    this.master = $("replay-camera");
    this.master.src = this.camera.url;
    this.followers = [];
    const slides = files.find((f) => f.role === "slides");
    if (slides) this.followers.push({ file: slides, video: $("replay-slides") });
    this.stageVideo = $("replay-stage");
    for (const f of files.filter((f) => f.role === "stage")) {
      this.followers.push({ file: f, video: this.stageVideo, stage: true });
    }
    // The deck: its page at each moment, from the recording's start and its events.
    this.deckEvents = (recording.timeline || []).filter((e) => /^(deck_attached|page_turned|pointer_moved|ink_)/.test(e.kind));
    this.deckTile = $("replay-deck-tile");
    this.deckFrame = recording.deck || this.deckEvents.length ? new DeckFrame($("deck-view")) : null;
    this.master.addEventListener("play", () => this.sync());
    this.master.addEventListener("pause", () => this.followers.forEach((f) => f.video.pause()));
    this.master.addEventListener("seeked", () => this.sync());
    this.master.addEventListener("timeupdate", () => this.sync());
    setInterval(() => this.sync(), 250);
  }

  get now() {
    return (this.camera.offset || 0) + this.master.currentTime;
  }

  seek(t) {
    this.master.currentTime = Math.max(0, t - (this.camera.offset || 0));
    this.sync();
    this.master.play().catch(() => {});
  }

  sync() {
    const now = this.now;
    const active = new Set();
    for (const f of this.followers) {
      const local = now - (f.file.offset || 0);
      const length = f.file.duration ?? Infinity;
      const inside = local >= 0 && local < length;
      // Slides stay up once shown; a stage turn shows only while it lasts.
      const shown = f.stage ? inside : local >= 0;
      if (!shown) continue;
      if (f.stage || inside) active.add(f);
      const video = f.video;
      if (!video.src.endsWith(f.file.url)) video.src = f.file.url;
      tileOf(video).hidden = false;
      if (f.stage) this.stageShown = f.file;
      if (!inside) continue;
      if (Math.abs(video.currentTime - local) > MAX_DRIFT_S) video.currentTime = local;
      if (!this.master.paused && video.paused) video.play().catch(() => {});
      if (this.master.paused && !video.paused) video.pause();
    }
    if (![...active].some((f) => f.stage)) {
      this.stageVideo.pause();
      tileOf(this.stageVideo).hidden = true;
      this.stageShown = null;
    }
    renderStageLabel(this);
    if (this.deckFrame) {
      const deck = deckAt(this.recording.deck, this.deckEvents, now);
      this.deckTile.hidden = !(deck && deck.page);
      const url = (n) => Promise.resolve(this.recording.page_url.replace("{deck_id}", deck.id).replace("{page}", String(n)));
      this.deckFrame.show(deck, url);
    }
    const items = document.querySelectorAll("[data-testid=chapter]");
    let current = null;
    for (const item of items) if (Number(item.dataset.t) <= now + 0.05) current = item;
    items.forEach((item) => item.classList.toggle("current", item === current));
  }
}

/** A replay video's tile: the video with its label. */
function tileOf(video) {
  return video.closest(".rtile") || video;
}

/** The stage tile's label: which classroom spoke, named as in the chapters. */
function renderStageLabel(replay) {
  const file = replay.stageShown;
  if (!file) return;
  const chapter = replay.recording.chapters.find((ch) => ch.classroom_id === file.source && ch.classroom);
  const text = t("label.stage", { name: chapter ? chapter.classroom : file.source || "" });
  const label = $("replay-stage-label");
  if (label.textContent !== text) label.textContent = text;
}

// -- the page --------------------------------------------------------------------------

function chapterText(ch) {
  if (ch.kind === "page") return t("page", ch);
  if (ch.kind === "floor_granted") {
    return ch.student ? t("floor_granted_student", ch) : t("floor_granted", ch);
  }
  return t(ch.kind);
}

function render(recording, replay) {
  document.documentElement.lang = language;
  document.querySelectorAll("[data-r]").forEach((el) => (el.textContent = t(el.dataset.r)));
  const title = recording.title + (recording.state === "interrupted" ? " " + t("interrupted") : "");
  $("recording-title").textContent = title;
  const list = $("chapters");
  list.replaceChildren(
    ...recording.chapters.map((ch) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.dataset.testid = "chapter";
      button.dataset.t = String(ch.t);
      button.dataset.kind = ch.kind;
      const time = document.createElement("span");
      time.className = "time";
      time.textContent = clock(ch.t);
      button.append(time, document.createTextNode(chapterText(ch)));
      button.addEventListener("click", () => replay.seek(ch.t));
      li.append(button);
      return li;
    }),
  );
  renderOffline(recording.offline);
  replay.sync();
}

function renderOffline(offline) {
  const state = offline?.state || "none";
  const status = $("offline-status");
  status.dataset.state = state;
  status.textContent = t(`offline.${state}`, {
    p: Math.round((offline.progress || 0) * 100),
    mb: ((offline.size || 0) / 1e6).toFixed(1),
  });
  const link = $("offline-download");
  link.hidden = state !== "done";
  if (state === "done") link.href = offline.url;
}

async function main() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token") || "";
  const who = claims(token);
  if (!who) return showError(t("error.token"));
  let rid = params.get("recording") || (who.typ === "replay" ? who.rec : null);
  try {
    if (!rid) {
      const { recordings } = await api(`/api/lessons/${who.lesson}/recordings`, token);
      if (!recordings.length) return showError(t("error.none"));
      rid = recordings[recordings.length - 1].id;
    }
    const recording = await api(`/api/recordings/${rid}`, token);
    const replay = new Replay(recording);
    window.__replay = { replay, recording };
    render(recording, replay);
    $("lang-toggle").addEventListener("click", () => {
      language = language === "en" ? "zh-CN" : "en";
      localStorage.setItem(LANG_KEY, language === "en" ? "en" : "zh-CN");
      render(recording, replay);
    });
    // The offline copy is made after the lesson: its progress, until it is done.
    const poll = setInterval(async () => {
      if (["done", "failed", "unavailable"].includes(recording.offline?.state)) {
        return clearInterval(poll);
      }
      try {
        recording.offline = (await api(`/api/recordings/${rid}`, token)).offline;
        renderOffline(recording.offline);
      } catch {
        /* the next poll tries again */
      }
    }, 2000);
  } catch (err) {
    showError(err.status === 401 || err.status === 403 ? t("error.token") : t("error.load", { m: err.message }));
  }
}

main();
