// The lesson's WebSocket protocol (docs/protocol.md), with no UI in it.
//
// One LessonConnection per page. It joins with the page's token, reconnects by
// itself with backoff after a drop (asking for the events it missed with `since`),
// answers the server's liveness needs with pings, and hands everything it receives
// to callbacks. The UI decides what to show; this module decides nothing visible.

export const PROTOCOL_VERSION = 1;

/** Errors after which retrying cannot help: the person must act (new link, new code). */
const FATAL_CODES = new Set([
  "bad_token",
  "token_expired",
  "lesson_ended",
  "unsupported_protocol",
  // The same participant connected again elsewhere (another tab, another PC): two
  // pages taking the connection from each other forever would help nobody.
  "replaced",
]);

/** Bounds of the reconnect backoff, in milliseconds. Short: a classroom whose link
 * came back must not sit out a long wait (issue 24); an attempt that meets a down link
 * or server costs a SYN or a refused connect, nothing more. */
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 1000;
/** A ping every PING_MS; no message at all for DEAD_MS means the link is gone. */
const PING_MS = 2000;
const DEAD_MS = 6000;
/** An attempt that has not opened by then is given up and a new one started: a SYN
 * lost while the link was cut is otherwise retried by the kernel only after 1, 3, 7 s.
 * The first attempt, and every fourth, waits longer: a link slow to open a connection. */
const OPEN_TIMEOUTS_MS = [5000, 1500, 1500, 1500];
/** How long the relay may take to answer an offer. */
const ANSWER_TIMEOUT_MS = 20000;
/** An opening socket gets a second one beside it after SECOND_OPEN_RTTS round trips
 * (an open takes two: TCP's, then the upgrade's), SECOND_OPEN_MIN_MS at the least;
 * the first of the two to open is kept. A lost SYN is otherwise resent by the kernel
 * a whole second later: on a link losing one packet in two hundred, that second was
 * most of a classroom's wait for the teacher's picture in two runs of three. */
const SECOND_OPEN_RTTS = 4;
const SECOND_OPEN_MIN_MS = 400;

/**
 * @typedef {"idle"|"connecting"|"open"|"reconnecting"|"closed"} ConnectionState
 *
 * @typedef {Object} Handlers
 * @property {(welcome: any) => void} [onWelcome]   every (re)join's welcome
 * @property {(event: any, replayed: boolean) => void} [onEvent]  each lesson event, once, in seq
 *           order; `replayed` when it is already part of the latest welcome's snapshot
 * @property {(link: any) => void} [onLink]         the teacher's per-classroom link reports
 * @property {(error: {code: string, message: string}, fatal: boolean) => void} [onError]
 * @property {(state: ConnectionState, detail?: any) => void} [onState]
 * @property {() => void} [onMediaMoved]   the lesson's media moved: offer again
 * @property {(message: any) => void} [onMessage]   any other message type
 */

/** The WebSocket address of the page's own server. */
export function defaultSocketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/** The token carried in the page address' fragment (`#token=...`), or null. */
export function tokenFromLocation() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  return params.get("token");
}

/** One round trip to the page's server as its own load measured it (the TCP
 * handshake, with TLS's when there is one), in ms; 0 if the browser does not say. */
function pageRoundTripMs() {
  const nav = /** @type {any} */ (performance.getEntriesByType("navigation")[0]);
  if (!nav || !(nav.connectEnd > nav.connectStart)) return 0;
  return nav.connectEnd - nav.connectStart;
}

/**
 * The socket a page's first inline script opened while the page was still arriving
 * (classroom.html), if it is to `url` for `token` and still usable; taken once. It
 * may have joined already, and what the server answered waits in its `inbox`.
 * @returns {{ws: WebSocket, joined: boolean, inbox: MessageEvent[]}|null}
 */
function takeEarlySocket(url, token) {
  const early = /** @type {any} */ (window).__earlySocket;
  if (!early) return null;
  /** @type {any} */ (window).__earlySocket = null;
  const usable = early.ws.url === url && early.token === token && early.ws.readyState <= WebSocket.OPEN;
  if (!usable) early.ws.close();
  performance.mark(usable ? "early-socket-taken" : "early-socket-refused");
  return usable ? early : null;
}

export class LessonConnection {
  /**
   * @param {{token: string, url?: string, handlers?: Handlers, maxBackoffMs?: number}} options
   *   `maxBackoffMs`: a lower cap on the reconnect backoff (a projector PC that nobody
   *   watches must be back within seconds of the server).
   */
  constructor({ token, url, handlers = {}, maxBackoffMs = BACKOFF_MAX_MS }) {
    this.token = token;
    this.maxBackoffMs = maxBackoffMs;
    this.url = url || defaultSocketUrl();
    this.handlers = handlers;
    /** @type {ConnectionState} */
    this.state = "idle";
    /** Sequence number of the last event seen: sent as `since` on a reconnect. */
    this.seq = null;
    /** @type {WebSocket|null} */
    this.ws = null;
    this.attempt = 0;
    this.welcomed = false;
    this.lastHeard = 0;
    /** @type {any} */ this.you = null;
    this._timers = new Set();
    /** @type {{resolve: Function, reject: Function, timer: any, ref: string}|null} */
    this._pendingAnswer = null;
    /** Events up to this seq are already in the welcome's snapshot (a reconnect's backlog). */
    this.replayUntil = 0;
    this._refs = 0;
    /** How long the last socket this page opened itself took to open (ms). */
    this.openMs = 0;
    this._stopped = false;
    /** @type {WebSocket|null} a second socket opening beside the first (`_second`) */
    this._racing = null;
    /** @type {WebSocket|null} the socket that has sent its join */
    this._joined = null;
  }

  connect() {
    this._stopped = false;
    this._open();
  }

  /** Leave for good: no reconnect. */
  close() {
    this._stopped = true;
    this._clearTimers();
    this._failAnswer(new Error("connection closed"));
    this._dropSecond();
    if (this.ws) {
      try { this.ws.close(1000, "bye"); } catch (_) { /* already closed */ }
    }
    this.ws = null;
    this._setState("closed");
  }

  /** While waiting to reconnect: try now instead (a person pressed "reconnect now"). */
  retryNow() {
    if (this._stopped || this.state !== "reconnecting" || this.ws) return;
    this._open();
  }

  /** Drop the socket as a network would (tests). */
  drop() {
    if (this.ws) this.ws.close(4000, "dropped by client");
  }

  // -- what a participant can say (docs/protocol.md, client messages) ------------

  raiseHand(student) { return this.send({ type: "raise_hand", student }); }
  lowerHand() { return this.send({ type: "lower_hand" }); }
  dismissHand(classroomId) { return this.send({ type: "dismiss_hand", classroom_id: classroomId }); }
  grantFloor(classroomId) { return this.send({ type: "grant_floor", classroom_id: classroomId }); }
  revokeFloor() { return this.send({ type: "revoke_floor" }); }
  chat(text) { return this.send({ type: "chat", text }); }
  endLesson() { return this.send({ type: "end_lesson" }); }
  pauseRecording() { return this.send({ type: "pause_recording" }); }
  resumeRecording() { return this.send({ type: "resume_recording" }); }
  /** A classroom's browser counters (reception.js): cumulative for one peer connection;
   * `pictures`, when given, what it decodes now. */
  reception(mediaSession, video, audio, pictures = null) {
    const msg = { type: "reception", media_session: mediaSession, video, audio };
    if (pictures) msg.pictures = pictures;
    return this.send(msg);
  }
  ping() { return this.send({ type: "ping" }); }
  // Courseware (docs/protocol.md): the teacher's deck, and a classroom's pre-sync.
  turnPage(page) { return this.send({ type: "turn_page", page }); }
  point(x, y) { return this.send({ type: "point", x, y }); }
  ink(points, color = "red") { return this.send({ type: "ink", points, color }); }
  clearInk() { return this.send({ type: "clear_ink" }); }
  courseware(deckId, ready, total) { return this.send({ type: "courseware", deck_id: deckId, ready, total }); }

  /**
   * Send an SDP offer and wait for the relay's answer.
   * @param {string} sdp
   * @returns {Promise<string>} the answer's SDP
   */
  offer(sdp) {
    this._failAnswer(new Error("superseded by a newer offer"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pendingAnswer = null;
        reject(new Error("the server did not answer the media offer in time"));
      }, ANSWER_TIMEOUT_MS);
      const ref = `offer-${++this._refs}`;
      const message = { type: "offer", sdp, ref };
      this._pendingAnswer = { resolve, reject, timer, ref, message, ws: null };
      if (this.welcomed) {
        if (this.send(message)) this._pendingAnswer.ws = this.ws;
        else this._failAnswer(new Error("not connected"));
      } else if (this.ws) {
        // Before the welcome (a page that offers at once, lesson_page.js): it leaves
        // right behind the join, which the server handles first; the welcome and
        // then the answer come back in one round trip instead of two.
        this._sendOffer();
      } else {
        this._failAnswer(new Error("not connected"));
      }
    });
  }

  /** The offer waiting for its answer, if it has not left yet and the socket in use
   * has joined: sent now. */
  _sendOffer() {
    const pending = this._pendingAnswer;
    const ws = this.ws;
    if (!pending || pending.ws || !ws || ws !== this._joined || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify(pending.message));
    pending.ws = ws;
  }

  /** @returns {boolean} whether the message left (false while disconnected) */
  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.welcomed) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  // -- inside -----------------------------------------------------------------------

  _open() {
    this._clearTimers();
    this.welcomed = false;
    this._setState(this.attempt === 0 && this.seq === null ? "connecting" : "reconnecting");
    let ws;
    const early = takeEarlySocket(this.url, this.token);
    try {
      ws = early ? early.ws : new WebSocket(this.url);
    } catch (err) {
      this._scheduleReconnect();
      return;
    }
    this._adopt(ws, early, Date.now());
  }

  /** Make `ws` the page's socket (made at `started`, by the page's inline script if
   * `early`): its timers and handlers; join once it is open. */
  _adopt(ws, early, started) {
    this.ws = ws;
    // On a satellite link an open takes two round trips of 600 ms and more: never
    // give up on one sooner than 2.5 times what the last open took.
    const opening = Math.max(
      OPEN_TIMEOUTS_MS[this.attempt % OPEN_TIMEOUTS_MS.length],
      2.5 * (this.openMs || 0),
    );
    this._after(opening, () => {
      if (this.ws === ws && ws.readyState === WebSocket.CONNECTING) this._abandon(ws, 4002, "no answer");
    });
    if (ws.readyState === WebSocket.CONNECTING) {
      // A second socket if this one is slow to open (SECOND_OPEN_RTTS), timed from
      // when it was made: the inline script's may be some round trips old already.
      const roundTrip = Math.max(pageRoundTripMs(), (this.openMs || 0) / 2);
      const age = early && typeof early.at === "number" ? performance.now() - early.at : 0;
      const wait = Math.max(SECOND_OPEN_MIN_MS, SECOND_OPEN_RTTS * roundTrip) - age;
      this._after(Math.max(0, wait), () => this._second(ws));
    }
    ws.onopen = () => {
      performance.mark("socket-open"); // read by scripts/bench_weaklink.py
      this._dropSecond();
      this.lastHeard = Date.now();
      if (!early) this.openMs = this.lastHeard - started;
      if (!(early && early.joined)) {
        /** @type {any} */
        const join = { type: "join", token: this.token, protocol: PROTOCOL_VERSION };
        if (this.seq !== null) join.since = this.seq;
        ws.send(JSON.stringify(join));
      }
      this._joined = ws;
      this._sendOffer();
      this._every(PING_MS, () => {
        if (Date.now() - this.lastHeard > DEAD_MS) {
          // A half-open socket on a weak link: nothing comes, nothing fails. Give up on it.
          this._abandon(ws, 4001, "no traffic");
          return;
        }
        if (this.welcomed) this.ping();
      });
    };
    const deliver = (msg) => {
      if (this.ws !== ws) return; // a socket this client already gave up on
      this.lastHeard = Date.now();
      let data;
      try { data = JSON.parse(msg.data); } catch (_) { return; }
      this._receive(data);
    };
    ws.onmessage = deliver;
    if (early) {
      // What came before this module ran (the welcome, on a slow link) is handled once
      // the code that took the socket over has finished: the page's handlers read
      // what its constructor is still setting up. What comes meanwhile waits behind it.
      const inbox = early.inbox;
      ws.onmessage = (msg) => inbox.push(msg);
      setTimeout(() => {
        if (this.ws === ws) ws.onmessage = deliver;
        for (const msg of inbox.splice(0)) deliver(msg);
      }, 0);
    }
    ws.onclose = () => {
      if (this.ws === ws) this._lost();
    };
    ws.onerror = () => { /* onclose follows and decides */ };
    // A socket the page opened before this module ran, or a second one that won,
    // may be open already.
    if (ws.readyState === WebSocket.OPEN) ws.onopen(new Event("open"));
  }

  /** A second socket beside `ws`, still opening: whichever opens first is kept. */
  _second(ws) {
    if (this.ws !== ws || ws.readyState !== WebSocket.CONNECTING || this._racing) return;
    let other;
    try {
      other = new WebSocket(this.url);
    } catch (_) {
      return;
    }
    performance.mark("socket-second");
    const started = Date.now();
    this._racing = other;
    other.onopen = () => {
      if (this._racing !== other) return;
      this._racing = null;
      if (this.ws !== ws || ws.readyState !== WebSocket.CONNECTING) {
        other.close();
        return;
      }
      // The second won: the first is dropped without a word (it never joined), and
      // the second goes the way of any socket this page opens.
      ws.onopen = ws.onmessage = ws.onclose = null;
      try { ws.close(); } catch (_) { /* never opened */ }
      this._adopt(other, null, started);
    };
    other.onclose = () => {
      if (this._racing === other) this._racing = null;
    };
  }

  /** The first socket opened: a second one still opening is not needed. */
  _dropSecond() {
    const other = this._racing;
    this._racing = null;
    if (other) {
      other.onopen = other.onclose = null;
      try { other.close(); } catch (_) { /* never opened */ }
    }
  }

  /** Give up on a socket now. Its close event could come a minute later on a dead
   * link (the closing handshake waits for the server), so the next attempt does not
   * wait for it. */
  _abandon(ws, code, reason) {
    this._dropSecond();
    ws.onopen = ws.onmessage = ws.onclose = null;
    try { ws.close(code, reason); } catch (_) { /* already closed */ }
    this._lost();
  }

  _lost() {
    this._dropSecond();
    this.ws = null;
    this.welcomed = false;
    this._clearTimers();
    this._failAnswer(new Error("connection lost"));
    if (this._stopped) {
      this._setState("closed");
    } else {
      this._scheduleReconnect();
    }
  }

  _receive(data) {
    const h = this.handlers;
    switch (data.type) {
      case "welcome": {
        performance.mark("welcome");
        this.welcomed = true;
        this.attempt = 0;
        this.you = data.you;
        const seq = data.lesson && typeof data.lesson.seq === "number" ? data.lesson.seq : null;
        if (seq !== null) {
          // The backlog that follows (events since `since`) is already folded into the
          // snapshot: the UI may keep its chat lines but must not fold them again.
          this.replayUntil = seq;
          if (this.seq === null) this.seq = seq;
        }
        this._setState("open");
        h.onWelcome && h.onWelcome(data);
        break;
      }
      case "event": {
        const event = data.event;
        if (!event) break;
        // After a reconnect the server may repeat events the welcome already holds.
        if (this.seq !== null && typeof event.seq === "number" && event.seq <= this.seq) break;
        if (typeof event.seq === "number") this.seq = event.seq;
        const replayed = typeof event.seq === "number" && event.seq <= this.replayUntil;
        h.onEvent && h.onEvent(event, replayed);
        if (event.kind === "lesson_ended") this.close();
        break;
      }
      case "link":
        h.onLink && h.onLink(data);
        break;
      case "answer":
        if (this._pendingAnswer && (!data.ref || data.ref === this._pendingAnswer.ref)) {
          const { resolve, timer } = this._pendingAnswer;
          clearTimeout(timer);
          this._pendingAnswer = null;
          resolve(data.sdp);
        }
        break;
      case "pong":
        break;
      case "media_moved":
        // The node that ran the lesson's media died and another adopted the lesson:
        // the peer connection leads nowhere; the page offers again, to the new node.
        h.onMediaMoved && h.onMediaMoved();
        break;
      case "error": {
        const fatal = FATAL_CODES.has(data.code);
        if (this._pendingAnswer && data.ref && data.ref === this._pendingAnswer.ref) {
          this._failAnswer(new Error(data.message || data.code));
        }
        h.onError && h.onError({ code: data.code, message: data.message }, fatal);
        if (fatal) this.close();
        break;
      }
      default:
        h.onMessage && h.onMessage(data);
    }
  }

  _scheduleReconnect() {
    // Exponential backoff with jitter, so that thirty classrooms behind one village
    // uplink do not all come back in the same second.
    const base = Math.min(this.maxBackoffMs, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt += 1;
    this._setState("reconnecting", { inMs: delay, attempt: this.attempt });
    this._after(delay, () => this._open());
  }

  _failAnswer(err) {
    if (!this._pendingAnswer) return;
    const { reject, timer } = this._pendingAnswer;
    clearTimeout(timer);
    this._pendingAnswer = null;
    reject(err);
  }

  _setState(state, detail) {
    this.state = state;
    this.handlers.onState && this.handlers.onState(state, detail);
  }

  _after(ms, fn) {
    const id = setTimeout(() => { this._timers.delete(id); fn(); }, ms);
    this._timers.add(id);
  }

  _every(ms, fn) {
    const id = setInterval(fn, ms);
    this._timers.add(id);
  }

  _clearTimers() {
    for (const id of this._timers) { clearTimeout(id); clearInterval(id); }
    this._timers.clear();
  }
}
