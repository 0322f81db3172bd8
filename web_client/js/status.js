// What each picture on a page really is: read from the page's own peer connection
// (W3C webrtc-stats inbound-rtp: frameWidth, frameHeight, framesPerSecond,
// framesDecoded), never from what the relay meant to send. A badge that says "OK"
// over a picture that stood still for twenty seconds is worse than no badge.
//
// Each received picture is in one of these states:
//   waiting       no frame yet on this peer connection (the placeholder says why), or
//                 nothing to show: no source (the teacher left, nobody on stage)
//   live          frames are being decoded: its size and frame rate are shown
//   frozen        no new decoded frame for FROZEN_AFTER_MS (polled every POLL_MS, so
//                 a picture that stops is marked within 2 s)
//   paused        the relay switched this slot off for this page's link (its own
//                 `link` report says "off" while the source is there)
//   reconnecting  the signaling socket or the peer connection is down

import { t, onLangChange } from "./i18n.js";

/** How often the page reads getStats() (also the layout's FlowWatch). */
export const POLL_MS = 500;
/** No new frame for this long is a frozen picture; with POLL_MS, marked within 2 s. */
export const FROZEN_AFTER_MS = 1500;
/**
 * Slides are a still screen most of the time: Chromium then repeats the last frame
 * about once a second (zero-hertz screen share) and the relay passes on what comes.
 * A slide counts as frozen only after this long without one.
 */
export const FROZEN_AFTER_MS_BY_SLOT = { slides: 3000 };

/**
 * One slot's state from what the page knows (pure; tests/e2e/test_pages.py).
 * @param {{connected: boolean, everConnected: boolean, expected: boolean, off: boolean,
 *          framesDecoded: number, sinceFrameMs: number, frozenAfterMs: number}} s
 *   `expected`: the picture's source is there; `off`: the relay's own report for this
 *   page says it sends nothing on the slot.
 * @returns {"waiting"|"live"|"frozen"|"paused"|"reconnecting"}
 */
export function pictureState(s) {
  if (!s.connected) return s.everConnected ? "reconnecting" : "waiting";
  if (s.off && s.expected) return "paused";
  if (!(s.framesDecoded > 0)) return "waiting";
  if (s.sinceFrameMs >= s.frozenAfterMs) return s.expected ? "frozen" : "waiting";
  return "live";
}

/**
 * The page's summary for its connection badge, from the pictures a person can see
 * now and whether sound arrives: never "OK" over a frozen or switched-off picture.
 * @param {Array<{state: string}>} visible
 * @param {boolean} soundFlowing
 * @returns {"ok"|"frozen"|"sound_only"|"paused"|"waiting"|"reconnecting"}
 */
export function pageSummary(visible, soundFlowing) {
  const states = visible.map((p) => p.state);
  if (states.includes("reconnecting")) return "reconnecting";
  if (states.includes("frozen")) return "frozen";
  const paused = states.filter((s) => s === "paused").length;
  if (paused > 0 && paused === states.length) return soundFlowing ? "sound_only" : "paused";
  if (paused > 0) return "paused";
  if (states.includes("live")) return "ok";
  return "waiting";
}

/** The words on a picture's status chip. */
export function pictureText(p) {
  switch (p.state) {
    case "live":
      return t("pic.live", { w: p.width, h: p.height, fps: Math.round(p.fps) });
    case "frozen":
      return t("pic.frozen", { s: Math.floor(p.sinceFrameMs / 1000) });
    case "paused":
      return t("pic.paused");
    case "reconnecting":
      return t("pic.reconnecting");
    default:
      return t("pic.waiting");
  }
}

/**
 * The status of every received picture on a page, kept from the FlowWatch's polls.
 * `tiles` maps a receive slot to its tile element; `expects(slot)` says whether a
 * source is there (a teacher online, a classroom on stage): an "off" from the relay
 * then means the relay paused it, not that there is nothing to send.
 */
export class PictureStatus {
  /**
   * @param {{
   *   flow: any, tiles: Object<string, HTMLElement|null>, soundSlots: string[],
   *   connected: () => boolean, layers: () => Object<string, string>,
   *   expects: (slot: string) => boolean, onSummary: (summary: string) => void,
   * }} options
   */
  constructor({ flow, tiles, soundSlots, connected, layers, expects, onSummary }) {
    this.flow = flow;
    this.tiles = tiles;
    this.soundSlots = soundSlots;
    this.connected = connected;
    this.layers = layers;
    this.expects = expects;
    this.onSummary = onSummary;
    this.everConnected = false;
    /** @type {Object<string, any>} */
    this.now = {};
    for (const [slot, tile] of Object.entries(tiles)) {
      if (!tile || tile.querySelector(".pic-status")) continue;
      const chip = document.createElement("span");
      chip.className = "pic-status";
      chip.dataset.testid = `status-${slot}`;
      chip.setAttribute("aria-live", "polite");
      tile.append(chip);
    }
    flow.onPoll = () => this.update();
    onLangChange(() => this.update());
  }

  /** Every slot's state now; also re-renders the chips and the summary. */
  update() {
    const connected = this.connected();
    if (connected) this.everConnected = true;
    const layers = this.layers() || {};
    const visible = [];
    for (const [slot, tile] of Object.entries(this.tiles)) {
      if (!tile) continue;
      const sample = this.flow.samples.get(slot) || {};
      const frameAt = this.flow.frameAt.get(slot);
      const sinceFrameMs = frameAt === undefined ? Infinity : Date.now() - frameAt;
      const p = {
        slot,
        width: sample.frameWidth || 0,
        height: sample.frameHeight || 0,
        fps: typeof sample.framesPerSecond === "number" ? sample.framesPerSecond : this.flow.fps(slot),
        framesDecoded: sample.framesDecoded || 0,
        sinceFrameMs,
      };
      p.state = pictureState({
        connected,
        everConnected: this.everConnected,
        expected: this.expects(slot),
        off: layers[slot] === "off",
        framesDecoded: p.framesDecoded,
        sinceFrameMs,
        frozenAfterMs: FROZEN_AFTER_MS_BY_SLOT[slot] || FROZEN_AFTER_MS,
      });
      this.now[slot] = p;
      this._render(tile, p);
      if (tile.offsetParent !== null) visible.push(p);
    }
    const sound = this.soundSlots.some((slot) => this.flow.flowing.get(slot));
    this.summary = pageSummary(visible, sound);
    this.onSummary(this.summary);
  }

  _render(tile, p) {
    tile.dataset.status = p.state;
    tile.dataset.width = String(p.width);
    tile.dataset.height = String(p.height);
    tile.dataset.fps = String(Math.round(p.fps));
    const chip = /** @type {HTMLElement} */ (tile.querySelector(".pic-status"));
    const text = pictureText(p);
    if (chip.textContent !== text) chip.textContent = text;
  }

  /** What the page decodes now, for the `reception` report (docs/protocol.md). */
  report(slots) {
    /** @type {Object<string, any>} */
    const out = {};
    for (const slot of slots) {
      const p = this.now[slot];
      if (!p || p.state === "reconnecting") continue;
      out[slot] = {
        state: p.state,
        width: p.width,
        height: p.height,
        fps: Math.round(Math.min(p.fps, 240) * 10) / 10,
      };
    }
    return out;
  }
}
