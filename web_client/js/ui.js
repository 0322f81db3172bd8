// Small DOM helpers shared by the pages: element building, the connection badge,
// banners a person can act on, the "click to start sound" banner, durations.

import { t, has, onLangChange } from "./i18n.js";

/**
 * Build an element: h("button", {class: "big", onclick: fn, dataset: {testid: "x"}}, "text", child)
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/**
 * Keep `container`'s children in step with `items`, one element per key, reusing the
 * elements that stay: a list refreshed every second must not swap a button out from
 * under the teacher's mouse between press and release.
 * @template T
 * @param {HTMLElement} container
 * @param {T[]} items
 * @param {(item: T) => string} keyOf
 * @param {(item: T) => HTMLElement} create
 * @param {(el: HTMLElement, item: T) => void} update
 */
export function reconcile(container, items, keyOf, create, update) {
  /** @type {Map<string, HTMLElement>} */
  const existing = new Map();
  for (const child of Array.from(container.children)) {
    const key = /** @type {HTMLElement} */ (child).dataset.key;
    if (key) existing.set(key, /** @type {HTMLElement} */ (child));
    else child.remove();
  }
  let previous = null;
  for (const item of items) {
    const key = keyOf(item);
    let el = existing.get(key);
    existing.delete(key);
    if (!el) {
      el = create(item);
      el.dataset.key = key;
    }
    update(el, item);
    const expected = previous ? previous.nextElementSibling : container.firstElementChild;
    if (expected !== el) container.insertBefore(el, expected);
    previous = el;
  }
  for (const el of existing.values()) el.remove();
}

export function $(selector, root = document) {
  return /** @type {HTMLElement} */ (root.querySelector(selector));
}

export function byTestId(id, root = document) {
  return /** @type {HTMLElement} */ (root.querySelector(`[data-testid="${id}"]`));
}

/** "0:07", "12:05", "1:02:09": a running time, as a clock shows it. */
export function formatClock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n) => String(n).padStart(2, "0");
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor(s / 60) % 60;
  return hours ? `${hours}:${two(minutes)}:${two(s % 60)}` : `${minutes}:${two(s % 60)}`;
}

/** "1:05", "12 s": how long someone has waited. */
export function formatWait(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return t("unit.s", { n: s });
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

/** A readable sentence for a server error {code, message}. */
export function errorText(error) {
  const code = error && error.code;
  if (code && has(`error.${code}`)) return t(`error.${code}`, { message: error.message || "" });
  if (code === "not_allowed" || code === "forbidden") return t("error.not_allowed", { message: error.message || "" });
  return t("error.generic", { message: (error && (error.message || error.code)) || "?" });
}

/**
 * The connection badge: signaling and media state, always visible. Once the peer
 * connection is up it says what the pictures really do (status.js `pageSummary`):
 * "OK" only while every picture shown is live. Re-renders when the language changes.
 */
export class ConnectionBadge {
  constructor(el) {
    this.el = el;
    this.signal = { state: "idle", detail: null };
    this.media = null;
    /** @type {string|null} */
    this.pictures = null;
    onLangChange(() => this.render());
    this.render();
  }

  setSignal(state, detail) {
    this.signal = { state, detail };
    this.render();
  }

  setMedia(state) {
    this.media = state;
    this.render();
  }

  /** @param {string|null} summary  status.js pageSummary(), or null before any poll */
  setPictures(summary) {
    if (summary === this.pictures) return;
    this.pictures = summary;
    this.render();
  }

  render() {
    const { state, detail } = this.signal;
    let text = t(`conn.${state}`);
    if (state === "reconnecting" && detail && detail.inMs) {
      text = t("conn.reconnecting_in", { s: Math.ceil(detail.inMs / 1000), n: detail.attempt });
    }
    const parts = [text];
    const mediaUp = state === "open" && this.media === "connected";
    const pictures = mediaUp && this.pictures && this.pictures !== "reconnecting" ? this.pictures : null;
    // Connected both ways: the summary says so, and what the pictures do.
    if (pictures) parts.splice(0, 1, t(`pic.summary.${pictures}`));
    else if (state === "open" && this.media) parts.push(t(`media.${this.media}`));
    this.el.textContent = parts.join(" · ");
    this.el.title = state === "reconnecting" ? t("reconnect") : "";
    this.el.style.cursor = state === "reconnecting" ? "pointer" : "";
    const ok = state === "open" && (!this.media || this.media === "connected") && (!pictures || pictures === "ok");
    const bad =
      state === "reconnecting" || state === "closed" || this.media === "failed" ||
      this.media === "disconnected" || pictures === "frozen";
    this.el.dataset.state = ok ? "ok" : bad ? "bad" : "wait";
    this.el.dataset.signal = state;
    this.el.dataset.media = this.media || "";
    this.el.dataset.pictures = pictures || "";
  }
}

/**
 * A banner in `container` with a message and optional action buttons; returns a
 * function that removes it. `key` replaces an earlier banner with the same key.
 */
export function showBanner(container, { key, text, kind = "error", actions = [], testid = "error" }) {
  if (key) container.querySelectorAll(`[data-key="${key}"]`).forEach((el) => el.remove());
  const banner = h(
    "div",
    { class: `banner banner-${kind}`, role: kind === "error" ? "alert" : "status", dataset: { testid, key: key || "" } },
    h("span", { class: "banner-text" }, text),
    ...actions.map(({ label, onClick }) => h("button", { class: "banner-action", onclick: onClick }, label)),
    h("button", { class: "banner-close", "aria-label": t("close"), onclick: () => banner.remove() }, "×"),
  );
  container.append(banner);
  return () => banner.remove();
}

/** Replace the whole page body's main area with a full message (lesson ended, bad link). */
export function showFullMessage(root, { title, text, titleKey, textKey, testid = "full-message", actions = [] }) {
  // With keys, the message follows a language switch (applyTo re-reads data-i18n).
  root.replaceChildren(
    h(
      "div",
      { class: "full-message", dataset: { testid } },
      h("h1", { dataset: titleKey ? { i18n: titleKey } : {} }, titleKey ? t(titleKey) : title),
      text || textKey ? h("p", { dataset: textKey ? { i18n: textKey } : {} }, textKey ? t(textKey) : text) : null,
      ...actions.map(({ label, labelKey, onClick, href, testid: actionId }) => {
        const attrs = { dataset: { ...(labelKey ? { i18n: labelKey } : {}), ...(actionId ? { testid: actionId } : {}) } };
        const text = labelKey ? t(labelKey) : label;
        return href
          ? h("a", { ...attrs, class: "button big", href }, text)
          : h("button", { ...attrs, class: "big", onclick: onClick }, text);
      }),
    ),
  );
}

// How long an audio element may stay paused after play() before the banner shows.
const SOUND_WATCH_MS = 3000;

/**
 * Play the given media elements; when the browser's autoplay policy refuses (or
 * they stay paused for another reason), a small banner among the page's banners
 * asks for one click. It never covers the page: every control stays usable, and a
 * click anywhere on the page starts the sound as well. `wanted()` says whether the
 * page needs sound now (the teacher's only while a classroom speaks); `refresh()`
 * re-reads it. A projector PC started with --autoplay-policy=no-user-gesture-required
 * (README) never sees the banner.
 */
export class SoundGate {
  /**
   * @param {HTMLElement} bannerParent  the page's banners container
   * @param {() => boolean} [wanted]
   */
  constructor(bannerParent, wanted = () => true) {
    this.parent = bannerParent;
    this.wanted = wanted;
    /** @type {Set<HTMLMediaElement>} */
    this.elements = new Set();
    this.blocked = false;
    /** @type {HTMLElement|null} */
    this.banner = null;
    // Any click or key on the page is the gesture the browser waits for.
    const unlock = () => { if (this.blocked) this.playAll(); };
    document.addEventListener("pointerdown", unlock, true);
    document.addEventListener("keydown", unlock, true);
    onLangChange(() => this._render());
  }

  add(el) {
    this.elements.add(el);
    this.tryPlay(el);
  }

  tryPlay(el) {
    const p = el.play();
    if (p && p.catch) {
      p.catch((err) => {
        console.info(`sound: play() refused (${err && err.name})`);
        if (err && err.name === "NotAllowedError") this.block();
      });
    }
    // Whatever else kept it from playing (a play() interrupted by a new source
    // rejects with AbortError, not NotAllowedError): still paused with a source
    // after a moment, the banner is the way to sound.
    setTimeout(() => {
      if (el.paused && el.srcObject && this.elements.has(el)) this.block();
    }, SOUND_WATCH_MS);
  }

  block() {
    if (this.blocked) return;
    this.blocked = true;
    this.refresh();
  }

  playAll() {
    const plays = [...this.elements].map((el) => el.play());
    Promise.all(plays).then(
      () => {
        this.blocked = false;
        this.refresh();
      },
      () => { /* still refused: the banner stays */ },
    );
  }

  /** Show or hide the banner: shown while sound is refused and the page needs it. */
  refresh() {
    const show = this.blocked && this.wanted();
    if (show && !this.banner) {
      console.info("sound: asking for a click to start sound");
      this.banner = h(
        "div",
        { class: "banner banner-info sound-gate", role: "status" },
        h("span", { class: "banner-text" }),
        h("button", { class: "banner-action", dataset: { testid: "start-sound" }, onclick: () => this.playAll() }),
      );
      this.parent.prepend(this.banner);
      this._render();
    } else if (!show && this.banner) {
      this.banner.remove();
      this.banner = null;
    }
  }

  _render() {
    if (!this.banner) return;
    this.banner.querySelector(".banner-text").textContent = t("sound.hint");
    this.banner.querySelector("button").textContent = t("sound.start");
  }
}

/** Attach a remote track to a <video>/<audio> element (one MediaStream per element). */
export function attachTrack(el, track) {
  el.srcObject = track ? new MediaStream([track]) : null;
}

/** Reason words for a getUserMedia / getDisplayMedia failure. */
export function mediaErrorReason(error) {
  if (!error) return "";
  return error.name ? `${error.name}${error.message ? ": " + error.message : ""}` : String(error);
}

/** What to tell a person whose camera and microphone could not be opened. */
export function cameraProblem(error) {
  if (error && error.name === "InsecureContext") return t("camera.insecure");
  if (error && error.name === "NotFoundError") return t("camera.missing");
  if (error && error.name === "NotReadableError") return t("camera.busy");
  return t("camera.refused", { reason: mediaErrorReason(error) });
}
