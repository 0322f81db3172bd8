// Courseware in the browser: the deck's page images fetched ahead of time (pre-sync),
// kept in the Cache API, and drawn locally with the teacher's pointer and ink.
// docs/protocol.md ("Courseware") is what this follows. It imports nothing: the
// classroom page loads it only once a lesson has a deck (its own copy of a module would
// share no state with the page's). The deck's state, a fold of events, is lesson_state.js's.

/** Pages are immutable (their URL holds the file's SHA-256): one cache for all lessons. */
const CACHE_NAME = "classroom-deck-v1";
/** An interrupted page is fetched again from where it stopped (HTTP Range), this often. */
const MAX_ATTEMPTS = 6;
/** "courseware ready" goes to the teacher at most this often (and once at the end). */
const REPORT_EVERY_MS = 1000;

export function pageUrl(lessonId, deckId, page) {
  return `/api/lessons/${encodeURIComponent(lessonId)}/decks/${deckId}/pages/${page}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The Cache API is there on secure pages only (https, localhost): otherwise memory. */
async function openCache() {
  try {
    return typeof caches !== "undefined" ? await caches.open(CACHE_NAME) : null;
  } catch {
    return null;
  }
}

/**
 * One page, resumable: what arrived of an interrupted response is kept and the rest is
 * asked for with `Range: bytes=<got>-` (a 206), so that a link that drops every minute
 * still gets the page in the end, without fetching its start again.
 */
async function fetchResumable(url, token, priority, isCancelled) {
  const parts = [];
  let got = 0;
  let type = "";
  for (let attempt = 1; ; attempt++) {
    try {
      const headers = { Authorization: `Bearer ${token}` };
      if (got > 0) headers.Range = `bytes=${got}-`;
      const r = await fetch(url, { headers, priority });
      if (got > 0 && r.status !== 206) {
        // The server sent the whole page again: start over with it.
        parts.length = 0;
        got = 0;
      }
      if (!r.ok) {
        const error = new Error(`HTTP ${r.status}`);
        if (r.status >= 400 && r.status < 500) error.permanent = true;
        throw error;
      }
      type = r.headers.get("content-type") || type;
      const reader = r.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
      }
      return new Blob(parts, { type });
    } catch (err) {
      if (err.permanent || attempt >= MAX_ATTEMPTS || isCancelled()) throw err;
      await sleep(Math.min(8000, 500 * 2 ** attempt));
    }
  }
}

/**
 * The deck's pages in this browser. `setDeck()` starts fetching them while the page is
 * idle, the current page first, then the ones after it, then the ones before; `url(n)`
 * gives a page now (fetching it first, ahead of the others, when it is not there yet).
 */
export class DeckStore {
  /**
   * @param {{lessonId: string, token: string, onProgress?: (ready: number, total: number) => void,
   *   live?: () => boolean}} options
   *   `live`: whether the lesson's sound and pictures share the link now; then the pre-sync
   *   leaves the link idle twice as long as each page took, so that it takes at most a
   *   third of it (on 256 kbit/s a page fetched at full speed pushed the camera off).
   */
  constructor({ lessonId, token, onProgress, live }) {
    this.lessonId = lessonId;
    this.token = token;
    this.onProgress = onProgress || (() => {});
    this.live = live || (() => false);
    this.deck = null;
    /** @type {Map<number, string>} object URLs of the pages held */
    this.urls = new Map();
    /** @type {Map<number, Promise<string>>} */
    this.pending = new Map();
    this.current = 1;
    this._generation = 0;
    this._cache = openCache();
  }

  get ready() {
    return this.urls.size;
  }

  setDeck(deck) {
    if (this.deck && deck && this.deck.id === deck.id) return;
    this._generation++;
    for (const url of this.urls.values()) URL.revokeObjectURL(url);
    this.urls.clear();
    this.pending.clear();
    this.deck = deck;
    if (!deck) return;
    this.current = Math.max(1, deck.page || 1);
    const generation = this._generation;
    const start = () => this._presync(generation);
    if (typeof requestIdleCallback === "function") requestIdleCallback(start, { timeout: 1000 });
    else setTimeout(start, 0);
  }

  /** The page shown now: the pre-sync goes on from there. */
  setCurrent(page) {
    if (page > 0) this.current = page;
  }

  /** @returns {Promise<string>} an object URL of page `n` */
  url(n, priority = "high") {
    const held = this.urls.get(n);
    if (held) return Promise.resolve(held);
    const pending = this.pending.get(n);
    if (pending) return pending;
    const deck = this.deck;
    const generation = this._generation;
    const job = (async () => {
      const url = pageUrl(this.lessonId, deck.id, n);
      const cache = await this._cache;
      let blob = null;
      const hit = cache ? await cache.match(url) : null;
      if (hit) blob = await hit.blob();
      if (!blob) {
        blob = await fetchResumable(url, this.token, priority, () => generation !== this._generation);
        if (cache) {
          const headers = { "Content-Type": blob.type || "image/png" };
          await cache.put(url, new Response(blob, { headers })).catch(() => {});
        }
      }
      if (generation !== this._generation) throw new Error("the deck changed");
      const objectUrl = URL.createObjectURL(blob);
      this.urls.set(n, objectUrl);
      this.onProgress(this.urls.size, deck.pages);
      return objectUrl;
    })();
    this.pending.set(n, job);
    job.catch(() => {}).finally(() => this.pending.delete(n));
    return job;
  }

  /** Every page, one at a time (a weak link carries the lesson too), nearest first. */
  async _presync(generation) {
    this.onProgress(this.urls.size, this.deck.pages);
    while (generation === this._generation && this.deck && this.urls.size < this.deck.pages) {
      const next = this._nextMissing();
      if (next === null) break;
      try {
        const began = performance.now();
        await this.url(next, "low");
        if (this.live()) await sleep(2 * (performance.now() - began));
      } catch {
        if (generation !== this._generation) return;
        await sleep(3000);
      }
    }
  }

  _nextMissing() {
    const total = this.deck.pages;
    const order = [];
    for (let n = this.current; n <= total; n++) order.push(n);
    for (let n = this.current - 1; n >= 1; n--) order.push(n);
    return order.find((n) => !this.urls.has(n) && !this.pending.has(n)) ?? null;
  }
}

/** Sends "courseware ready: n/N" at most once a second, and always the last count. */
export class ReadinessReporter {
  constructor(send) {
    this.send = send;
    this.last = null;
    this.wanted = null;
    this.timer = null;
  }

  update(deckId, ready, total) {
    this.wanted = { deck_id: deckId, ready, total };
    if (!this.timer) this._flush();
  }

  /** After a reconnect the server may not have the last count: send it again. */
  resend() {
    this.last = null;
    if (this.wanted && !this.timer) this._flush();
  }

  _flush() {
    this.timer = null;
    const w = this.wanted;
    if (!w || (this.last && this.last.deck_id === w.deck_id && this.last.ready === w.ready)) return;
    if (this.send(w)) this.last = w;
    this.timer = setTimeout(() => this._flush(), REPORT_EVERY_MS);
  }
}

/**
 * A page on screen with the pointer and the ink over it, fitted into `host` (letterboxed,
 * the page's own aspect). `show(state, urlOf)` with the lesson's deck state
 * ({id, page, width, height, pointer, ink}); a page not yet held shows the previous one
 * until it arrives.
 */
export class DeckFrame {
  constructor(host) {
    this.host = host;
    this.frame = document.createElement("div");
    this.frame.className = "deck-frame";
    this.frame.dataset.testid = "deck-frame";
    this.img = document.createElement("img");
    this.img.dataset.testid = "deck-page";
    this.img.alt = "";
    this.img.draggable = false;
    this.svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.svg.classList.add("deck-ink");
    this.svg.setAttribute("preserveAspectRatio", "none");
    this.pointer = document.createElement("div");
    this.pointer.className = "deck-pointer";
    this.pointer.dataset.testid = "deck-pointer";
    this.pointer.hidden = true;
    this.frame.append(this.img, this.svg, this.pointer);
    host.append(this.frame);
    this.aspect = 16 / 9;
    this.wantedPage = 0;
    this.inkKey = "";
    /** When each page was first on screen (Date.now()), for tests and the bench. */
    this.shownAt = {};
    new ResizeObserver(() => this.fit()).observe(host);
  }

  fit() {
    const w = this.host.clientWidth;
    const h = this.host.clientHeight;
    if (!w || !h) return;
    const width = Math.min(w, h * this.aspect);
    this.frame.style.width = `${Math.floor(width)}px`;
    this.frame.style.height = `${Math.floor(width / this.aspect)}px`;
  }

  /** @param {(n: number) => Promise<string>} urlOf */
  show(state, urlOf) {
    if (!state || !state.page) {
      this.wantedPage = 0;
      this.host.hidden = true;
      return;
    }
    this.host.hidden = false;
    const aspect = state.width / state.height;
    if (aspect !== this.aspect || !this.svg.hasAttribute("viewBox")) {
      this.aspect = aspect;
      this.svg.setAttribute("viewBox", `0 0 ${state.width} ${state.height}`);
    }
    this.fit();
    const key = `${state.id}/${state.page}`;
    if (key !== this.wantedKey) {
      this.wantedKey = key;
      const page = state.page;
      urlOf(page).then(async (url) => {
        if (this.wantedKey !== key) return;
        // Decoded before it replaces the page shown: no blank flash on a turn.
        const next = new Image();
        next.src = url;
        const decoded = await next.decode().then(() => true, () => false);
        if (this.wantedKey !== key) return;
        this.img.src = url;
        if (!decoded) {
          this.frame.dataset.failed = String(page);
          return;
        }
        delete this.frame.dataset.failed;
        this.frame.dataset.page = String(page);
        if (!this.shownAt[key]) this.shownAt[key] = Date.now();
        // The next page decoded ahead: a turn forward is then a swap, even on a slow PC.
        if (page < state.pages) {
          urlOf(page + 1).then((nextUrl) => {
            this.ahead = new Image();
            this.ahead.src = nextUrl;
            return this.ahead.decode();
          }).catch(() => {});
        }
      }, () => {});
    }
    const p = state.pointer;
    this.pointer.hidden = !p;
    if (p) {
      this.pointer.style.left = `${p.x * 100}%`;
      this.pointer.style.top = `${p.y * 100}%`;
    }
    this.drawInk(state);
  }

  drawInk(state) {
    const key = `${state.page}:${state.ink.length}`;
    if (key === this.inkKey) return;
    this.inkKey = key;
    this.svg.replaceChildren(...state.ink.map((stroke) => polyline(stroke, state.width, state.height)));
  }

  /** Where an event is on the page, as fractions (0..1), or null off the page. */
  at(ev) {
    const box = this.frame.getBoundingClientRect();
    const x = (ev.clientX - box.left) / box.width;
    const y = (ev.clientY - box.top) / box.height;
    if (!(x >= 0 && x <= 1 && y >= 0 && y <= 1)) return null;
    return { x: Math.round(x * 10000) / 10000, y: Math.round(y * 10000) / 10000 };
  }
}

const COLORS = { red: "#e5231b", blue: "#1769aa", green: "#1f9d3a", yellow: "#f5c400", black: "#111", white: "#fff" };

export function polyline(stroke, width, height) {
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", stroke.points.map(([x, y]) => `${x * width},${y * height}`).join(" "));
  line.setAttribute("stroke", COLORS[stroke.color] || COLORS.red);
  line.setAttribute("fill", "none");
  // A line a projector shows from the back of the room: 0.4 % of the page's width.
  line.setAttribute("stroke-width", String(Math.max(2, width * 0.004)));
  line.setAttribute("stroke-linecap", "round");
  line.setAttribute("stroke-linejoin", "round");
  return line;
}
