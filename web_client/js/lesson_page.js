// What every lesson page (teacher, classroom, observer) does the same way: read the
// token, join over the protocol, keep the peer connection up, fold events into the
// lesson view, show the connection state, and turn failures into sentences.

import { LessonConnection, tokenFromLocation } from "./protocol.js";
import { MediaLink, FlowWatch } from "./media.js";
import { fromWelcome, apply, foldRecording } from "./lesson_state.js";
import { t, initI18n, onLangChange } from "./i18n.js";
import { ConnectionBadge, SoundGate, showBanner, showFullMessage, errorText, byTestId, attachTrack } from "./ui.js";
import { PictureStatus } from "./status.js";

/** After a failed peer connection, wait this long before offering again (doubling). */
const MEDIA_RETRY_MIN_MS = 1000;
const MEDIA_RETRY_MAX_MS = 15000;
/** A "disconnected" peer connection often recovers by itself; past this, start over. */
const MEDIA_DISCONNECTED_GRACE_MS = 8000;

/** Run `f` once the page has loaded. A media element given a stream holds its page's
 * load event until the first frame comes (HTML's "delay the load event"), and an offer
 * made before the welcome (`offerEarly`) has its tracks before the page has loaded: the
 * page would be "loading" until the teacher's camera came. */
function whenLoaded(f) {
  if (document.readyState === "complete") f();
  else window.addEventListener("load", () => f(), { once: true });
}

export class LessonPage {
  /**
   * @param {{
   *   role: "teacher"|"classroom"|"observer",
   *   render: (page: LessonPage) => void,
   *   onTrack?: (slot: string, track: MediaStreamTrack) => void,
   *   onFlow?: (slot: string, flowing: boolean, stats: any) => void,
   *   onEvent?: (event: any) => void,
   *   onLink?: (link: any) => void,
   *   onWelcome?: (welcome: any) => void,
   *   noToken?: () => void,
   *   sendOptions?: Object<string, any>,
   *   endedActions?: (page: LessonPage) => Array<{labelKey: string, href: string, testid?: string}>,
   *   pictures?: Object<string, string>,
   *   soundSlots?: string[],
   *   expects?: (page: LessonPage, slot: string) => boolean,
   *   soundWanted?: (page: LessonPage) => boolean,
   *   reconnectMaxMs?: number,
   *   onFatal?: (error: {code: string, message: string}, page: LessonPage) => boolean,
   *   afterEnd?: (page: LessonPage) => void,
   *   offerEarly?: boolean,
   * }} options
   *   `pictures`: the received video slots and the testid of the tile that shows each
   *   (each gets a status chip, status.js); `soundSlots`: the received sound slots;
   *   `expects`: whether a slot's source is there now (then the relay's "off" is a pause).
   *   `reconnectMaxMs`: cap of the signaling reconnect backoff; `onFatal`: a fatal error
   *   the page handles itself (returns true); `afterEnd`: once the ended message shows.
   *   The last three are the room's device page's (room.js): a projector PC that goes
   *   back to waiting by itself. `offerEarly`: make the media offer before the welcome
   *   when the server has no ICE servers to hand out (the classroom page's first frame).
   */
  constructor(options) {
    this.options = options;
    this.role = options.role;
    initI18n();
    this.main = /** @type {HTMLElement} */ (document.querySelector("main"));
    this.banners = byTestId("banners");
    this.badge = new ConnectionBadge(byTestId("connection"));
    // The teacher's page plays sound only while a classroom speaks: it asks for a click then.
    this.sound = new SoundGate(this.banners, () => !options.soundWanted || options.soundWanted(this));
    /** @type {import("./lesson_state.js").LessonView|null} */
    this.view = null;
    this.you = null;
    this.ended = false;
    this.mediaRetryMs = MEDIA_RETRY_MIN_MS;
    this._mediaTimer = null;
    /** @type {Promise<void>|null} the start of an offer made before the welcome */
    this._early = null;
    this._disconnectTimer = null;
    /** What the relay sends this page, by slot: its own latest `link` report. */
    this.ownLayers = {};

    if (typeof RTCPeerConnection === "undefined") {
      this.fail(t("browser.no_webrtc"));
      return;
    }
    this.token = tokenFromLocation();
    if (!this.token) {
      if (options.noToken) options.noToken();
      else this.fail(t("error.no_token"));
      return;
    }

    this.media = new MediaLink({
      role: this.role,
      negotiate: (sdp) => this.conn.offer(sdp),
      onTrack: (slot, track) => whenLoaded(() => options.onTrack && options.onTrack(slot, track)),
      onState: (state) => this._mediaState(state),
      sendOptions: options.sendOptions,
    });
    this.flow = new FlowWatch(this.media, (slot, flowing, stats) => options.onFlow && options.onFlow(slot, flowing, stats));
    this.pictures = new PictureStatus({
      flow: this.flow,
      tiles: Object.fromEntries(Object.entries(options.pictures || {}).map(([slot, id]) => [slot, byTestId(id)])),
      soundSlots: options.soundSlots || [],
      connected: () => this.conn.state === "open" && !!this.media.pc && this.media.pc.connectionState === "connected",
      layers: () => this.ownLayers,
      expects: (slot) => !!(this.view && options.expects && options.expects(this, slot)),
      onSummary: (summary) => this.badge.setPictures(summary),
    });

    this.conn = new LessonConnection({
      token: this.token,
      maxBackoffMs: options.reconnectMaxMs,
      handlers: {
        onState: (state, detail) => {
          this.badge.setSignal(state, detail);
          if (state === "reconnecting") this.badge.setMedia(null);
          if (this.pictures) this.pictures.update();
          // Buttons that need the connection enable and disable themselves.
          this.render();
        },
        onWelcome: (welcome) => this._welcome(welcome),
        onEvent: (event, replayed) => this._event(event, replayed),
        onLink: (link) => {
          if (this.you && link.participant_id === this.you.id) {
            this.ownLayers = { ...(link.layers || {}) };
            // A pause shows at once, not at the next poll.
            this.pictures.update();
            // The server's own load (it sheds its work before a classroom's): the
            // teacher is told, the classrooms see only what it does to their picture.
            if (this.you.role === "teacher") this._serverLoad(link.server_load || "ok");
          }
          options.onLink && options.onLink(link);
        },
        onError: (error, fatal) => this._error(error, fatal),
        onMediaMoved: () => {
          if (!this.ended && this.conn.state === "open") {
            this.mediaRetryMs = MEDIA_RETRY_MIN_MS;
            this._startMedia();
          }
        },
      },
    });

    // Stable hooks for tests and for a person debugging on site (docs in tests/e2e).
    const page = this;
    window.__classroom = {
      role: this.role,
      get pc() { return page.media.pc; },
      get view() { return page.view; },
      get you() { return page.you; },
      get connection() { return page.conn; },
      media: this.media,
      inboundStats: () => this.media.inboundStats(),
      /** What each picture's status chip says now (status.js), by slot. */
      get pictures() { return page.pictures.now; },
      /** What the relay says it sends this page, by slot (its own latest `link`). */
      get relayLayers() { return page.ownLayers; },
      drop: () => this.conn.drop(),
    };

    onLangChange(() => this.render());
    // While the page waits to reconnect, a click on the badge tries at once.
    byTestId("connection").addEventListener("click", () => this.conn.retryNow());
    this.conn.connect();
    // A page the server has no STUN or TURN server for (its hint, signaling/app.py)
    // needs nothing from the welcome to make its offer: made now, it leaves right
    // behind the join, and the answer comes a round trip sooner (on a satellite
    // link, 600 ms). The welcome then lets it be (`_welcome`).
    if (options.offerEarly && document.documentElement.dataset.iceServers === "none") {
      performance.mark("offer-early"); // read by tests/e2e and scripts/bench_weaklink.py
      this._early = this._startMedia();
    }
  }

  render() {
    if (!this.view) return;
    this._renderTopbar();
    if (!this.ended) this.sound.refresh();
    if (!this.ended) this.options.render(this);
  }

  _renderTopbar() {
    byTestId("lesson-title").textContent = this.view.title;
    // A classroom's name says where it is; "Teacher" / "Observer" would repeat the role.
    const name = this.role === "classroom" && this.you && this.you.name ? ` · ${this.you.name}` : "";
    byTestId("who").textContent = `${t(`role.${this.role}`)}${name}`;
    document.title = `${this.view.title} · ${t("app.name")}`;
  }

  /** Replace the page with a message a person can act on. */
  fail(text, title = t("error.generic", { message: "" }).replace(/[:：]\s*$/, "")) {
    showFullMessage(this.main, { title, text, testid: "fatal-error" });
    this.main.className = "";
  }

  banner(text, kind = "error", key, actions) {
    return showBanner(this.banners, { text, kind, key, actions });
  }

  // -- inside -----------------------------------------------------------------------

  _serverLoad(load) {
    if (load === this.serverLoad) return;
    this.serverLoad = load;
    this.banners.querySelectorAll('[data-key="server-load"]').forEach((el) => el.remove());
    if (load !== "ok") this.banner(t(`load.${load}`), "info", "server-load");
  }

  _welcome(welcome) {
    this.you = welcome.you;
    this.view = fromWelcome(welcome.lesson, this.view);
    if (Array.isArray(welcome.ice_servers)) this.media.iceServers = welcome.ice_servers;
    this._renderTopbar();
    if (this.view.state === "ended") {
      this._ended();
      return;
    }
    this.options.onWelcome && this.options.onWelcome(welcome);
    this.render();
    // A (re)join means a fresh peer connection: the relay replaced or closed the old one.
    // Not the first join's if the page offered before it (`offerEarly`) and that offer
    // is still under way: made or being made, it went (or goes) right behind this join.
    const early = this._early;
    this._early = null;
    if (!early) this._startMedia();
  }

  _event(event, replayed) {
    if (!this.view) return;
    if (replayed) {
      // Missed while disconnected; the snapshot has its effect, the chat line is news.
      if (event.kind === "chat_posted") this.view.chat.push({ name: event.name, text: event.text, at: event.at });
      // The recording's state is in the snapshot too, but not when it started or paused.
      if (/^recording_/.test(event.kind)) this.view.recording = foldRecording(this.view.recording, event);
      this.render();
      return;
    }
    apply(this.view, event);
    this.options.onEvent && this.options.onEvent(event);
    if (event.kind === "lesson_ended") {
      this._ended();
      return;
    }
    this.render();
  }

  _error(error, fatal) {
    if (fatal) {
      this.media && this.media.close();
      this.flow && this.flow.stop();
      if (this.options.onFatal && this.options.onFatal(error, this)) return;
      if (error.code === "lesson_ended" && !this.view) {
        // The link was opened after the lesson: what it leads to now is the replay.
        location.replace(this.replayHref());
        return;
      }
      if (error.code === "lesson_ended") this._ended();
      else if (error.code === "replaced") {
        showFullMessage(this.main, {
          title: t("error.replaced"),
          testid: "replaced",
          actions: [{ label: t("error.replaced_take_over"), onClick: () => location.reload() }],
        });
        this.main.className = "";
      } else this.fail(errorText(error));
      return;
    }
    this.banner(errorText(error), "error", `server-${error.code}`);
  }

  _ended() {
    this.ended = true;
    this.flow.onPoll = null;
    clearTimeout(this._mediaTimer);
    this.media.close();
    this.flow.stop();
    this.conn.close();
    document.querySelectorAll("dialog[open]").forEach((d) => d.close());
    // What the banners said (a refused action, a camera problem, the sound) is moot now;
    // the top bar's lesson controls (end, recording) too.
    this.sound.wanted = () => false;
    this.sound.refresh();
    this.banners.replaceChildren();
    document.querySelectorAll("[data-live-only]").forEach((el) => { /** @type {HTMLElement} */ (el).hidden = true; });
    const actions = this.options.endedActions ? this.options.endedActions(this) : this.replayActions();
    showFullMessage(this.main, { titleKey: "lesson.ended", textKey: "lesson.ended_hint", testid: "lesson-ended", actions });
    this.main.className = "";
    this.options.afterEnd && this.options.afterEnd(this);
  }

  /** The replay page for this lesson: it takes any token of the lesson (docs/protocol.md). */
  replayHref() {
    return `/replay#token=${encodeURIComponent(this.token)}`;
  }

  /** After the lesson, its replay, for everyone who took part or watched (if recorded). */
  replayActions() {
    return this.view && this.view.recording
      ? [{ labelKey: "rec.replay", href: this.replayHref(), testid: "replay-link" }]
      : [];
  }

  /** @returns {Promise<void>} the peer connection's start (settled: the caller needs
   * no handler) */
  _startMedia() {
    clearTimeout(this._mediaTimer);
    this.flow.reset();
    const started = this.media.start();
    started.then(
      () => { this.mediaRetryMs = MEDIA_RETRY_MIN_MS; },
      (err) => {
        // An early offer lost with its socket: the welcome of the next starts afresh.
        if (this._early === started) this._early = null;
        if (this.ended || this.conn.state !== "open") return;
        this.banner(t("error.media", { message: err && err.message ? err.message : String(err) }), "error", "media");
        this._retryMedia();
      },
    );
    return started;
  }

  _retryMedia() {
    clearTimeout(this._mediaTimer);
    const delay = this.mediaRetryMs;
    this.mediaRetryMs = Math.min(MEDIA_RETRY_MAX_MS, this.mediaRetryMs * 2);
    this._mediaTimer = setTimeout(() => {
      if (!this.ended && this.conn.state === "open") this._startMedia();
    }, delay);
  }

  _mediaState(state) {
    this.badge.setMedia(state);
    this.pictures.update();
    clearTimeout(this._disconnectTimer);
    if (state === "connected") {
      this.mediaRetryMs = MEDIA_RETRY_MIN_MS;
      this.banners.querySelectorAll('[data-key="media"]').forEach((el) => el.remove());
    } else if (state === "failed") {
      this._retryMedia();
    } else if (state === "disconnected") {
      this._disconnectTimer = setTimeout(() => {
        if (this.media.pc && this.media.pc.connectionState === "disconnected") this._retryMedia();
      }, MEDIA_DISCONNECTED_GRACE_MS);
    }
  }
}

/** Attach the lesson's receive slots to the page's standard elements. */
export function attachStandardTrack(page, slot, track) {
  const map = {
    teacher_camera: "teacher-video",
    slides: "slides-video",
    stage_video: "stage-video",
    teacher_audio: "teacher-audio",
    stage_audio: "stage-audio",
  };
  const el = /** @type {HTMLMediaElement|null} */ (byTestId(map[slot] || ""));
  if (!el) return;
  attachTrack(el, track);
  if (el.tagName === "AUDIO") {
    page.sound.add(el);
    return;
  }
  el.play().catch(() => {});
  // The first picture hides the placeholder at once; FlowWatch notices when it stops.
  const tile = /** @type {HTMLElement|null} */ (el.closest(".tile"));
  const shown = () => {
    if (tile && el.videoWidth > 0) tile.dataset.flowing = "true";
  };
  el.onresize = shown;
  el.onplaying = shown;
}
