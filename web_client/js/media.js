// One RTCPeerConnection per page, with a fixed transceiver for each media slot.
//
// The slots and their order mirror media/slots.py (docs/protocol.md): the relay
// reads the offer's m-lines by position, and when the stage changes it swaps the
// source behind a slot, so no renegotiation ever happens during a lesson.

/** @typedef {{slot: string, kind: "audio"|"video", direction: "sendonly"|"recvonly"}} SlotSpec */
/** @typedef {{maxBitrate?: number, maxFramerate?: number, scaleResolutionDownBy?: number, priority?: RTCPriorityType, degradationPreference?: string}} SendOptions */

const TEACHER_IN = [
  { slot: "camera", kind: "video", direction: "sendonly" },
  { slot: "microphone", kind: "audio", direction: "sendonly" },
  { slot: "screen", kind: "video", direction: "sendonly" },
];
const LESSON_OUT = [
  { slot: "teacher_camera", kind: "video", direction: "recvonly" },
  { slot: "teacher_audio", kind: "audio", direction: "recvonly" },
  { slot: "slides", kind: "video", direction: "recvonly" },
];
const STAGE_OUT = [
  { slot: "stage_video", kind: "video", direction: "recvonly" },
  { slot: "stage_audio", kind: "audio", direction: "recvonly" },
];

/** @type {Object<string, SlotSpec[]>} */
export const SLOTS = {
  // The last slot: every classroom not on stage, as one mosaic (media/mosaic.py).
  teacher: [...TEACHER_IN, ...STAGE_OUT, { slot: "classrooms", kind: "video", direction: "recvonly" }],
  classroom: [
    { slot: "camera", kind: "video", direction: "sendonly" },
    { slot: "microphone", kind: "audio", direction: "sendonly" },
    ...LESSON_OUT,
    ...STAGE_OUT,
  ],
  observer: [...LESSON_OUT, ...STAGE_OUT],
};

/** aiortc does not trickle ICE: the offer leaves once gathering is complete, or after this. */
const GATHER_TIMEOUT_MS = 5000;
/** With no ICE servers a browser has only host candidates, found all at once; it calls
 * gathering complete a while later (Chromium: 120 ms after them, measured; 300 ms
 * while the classroom page still loads). The offer leaves once no candidate has come
 * for this long. */
const HOST_QUIET_MS = 40;

/**
 * Open the camera and the microphone. Either may be refused or missing: the lesson
 * goes on without it, and the caller shows why.
 * @returns {Promise<{video: MediaStreamTrack|null, audio: MediaStreamTrack|null, error: any}>}
 */
export async function openCameraAndMicrophone(videoConstraints = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 25 } }) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    // Browsers open cameras only on https:// or localhost pages.
    const name = window.isSecureContext ? "NotSupportedError" : "InsecureContext";
    return { video: null, audio: null, error: { name } };
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: videoConstraints,
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    return { video: stream.getVideoTracks()[0] || null, audio: stream.getAudioTracks()[0] || null, error: null };
  } catch (error) {
    // One of the two may still work (a classroom with a microphone but no camera).
    for (const constraints of [{ audio: true }, { video: videoConstraints }]) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        return { video: stream.getVideoTracks()[0] || null, audio: stream.getAudioTracks()[0] || null, error };
      } catch (_) { /* try the next */ }
    }
    return { video: null, audio: null, error };
  }
}

export class MediaLink {
  /**
   * @param {{
   *   role: string,
   *   negotiate: (offerSdp: string) => Promise<string>,
   *   iceServers?: RTCIceServer[],
   *   onTrack?: (slot: string, track: MediaStreamTrack) => void,
   *   onState?: (state: string) => void,
   *   sendOptions?: Object<string, SendOptions>,
   * }} options
   */
  constructor({ role, negotiate, iceServers = [], onTrack, onState, sendOptions = {} }) {
    if (!SLOTS[role]) throw new Error(`unknown role ${role}`);
    this.role = role;
    this.slots = SLOTS[role];
    this.negotiate = negotiate;
    this.iceServers = iceServers;
    this.onTrack = onTrack || (() => {});
    this.onState = onState || (() => {});
    this.sendOptions = sendOptions;
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** @type {Map<string, RTCRtpTransceiver>} */
    this.transceivers = new Map();
    /** Tracks to send, by slot; kept across reconnects. @type {Map<string, MediaStreamTrack|null>} */
    this.local = new Map();
    this.generation = 0;
  }

  /** Set (or clear, with null) what a send slot carries; no renegotiation needed. */
  async setTrack(slot, track) {
    this.local.set(slot, track);
    const tr = this.transceivers.get(slot);
    if (tr) await tr.sender.replaceTrack(track);
  }

  /** Build a fresh peer connection and negotiate it; a previous one is closed. */
  async start() {
    const generation = ++this.generation;
    this.closePeer();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    this.transceivers = new Map();
    for (const spec of this.slots) {
      const init = { direction: spec.direction };
      const local = this.local.get(spec.slot);
      const tr = pc.addTransceiver(spec.direction === "sendonly" && local ? local : spec.kind, init);
      this.transceivers.set(spec.slot, tr);
      if (spec.direction === "recvonly") this.onTrack(spec.slot, tr.receiver.track);
    }
    pc.onconnectionstatechange = () => {
      if (this.pc === pc) this.onState(pc.connectionState);
    };
    this.onState("connecting");
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc, GATHER_TIMEOUT_MS, this.iceServers.length ? 0 : HOST_QUIET_MS);
    if (generation !== this.generation) return;
    performance.mark("offer-sent"); // read by scripts/bench_weaklink.py
    const answer = await this.negotiate(pc.localDescription.sdp);
    if (generation !== this.generation) return;
    performance.mark("answered");
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    await this._applySendOptions();
  }

  /**
   * Per-slot sender settings (W3C webrtc-pc RTCRtpEncodingParameters): a bitrate cap
   * for a classroom's weak uplink, audio first when the link is short, slides that
   * keep their resolution. A browser that refuses one still sends.
   */
  async _applySendOptions(only = null) {
    for (const [slot, options] of Object.entries(this.sendOptions)) {
      if (only && slot !== only) continue;
      const tr = this.transceivers.get(slot);
      if (!tr) continue;
      try {
        const params = tr.sender.getParameters();
        if (!params.encodings || params.encodings.length === 0) params.encodings = [{}];
        for (const enc of params.encodings) {
          if (options.maxBitrate) enc.maxBitrate = options.maxBitrate;
          if (options.maxFramerate) enc.maxFramerate = options.maxFramerate;
          if (options.scaleResolutionDownBy) enc.scaleResolutionDownBy = options.scaleResolutionDownBy;
          if (options.priority) {
            enc.priority = options.priority;
            enc.networkPriority = options.priority;
          }
        }
        if (options.degradationPreference) params.degradationPreference = options.degradationPreference;
        await tr.sender.setParameters(params);
      } catch (err) {
        console.warn(`sender settings for ${slot} not applied:`, err);
      }
    }
  }

  /**
   * Change one slot's sender settings now (and for the next connection).
   * @param {string} slot
   * @param {SendOptions} options
   */
  async setSendOptions(slot, options) {
    this.sendOptions = { ...this.sendOptions, [slot]: { ...(this.sendOptions[slot] || {}), ...options } };
    if (this.pc) await this._applySendOptions(slot);
  }

  closePeer() {
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.close();
      this.pc = null;
    }
  }

  close() {
    this.generation++;
    this.closePeer();
    for (const track of this.local.values()) if (track) track.stop();
    this.local.clear();
  }

  /**
   * What each receive slot gets, from the browser's own statistics (W3C
   * webrtc-stats "inbound-rtp": framesDecoded, frameWidth, totalSamplesReceived).
   * @returns {Promise<Object<string, {kind: string, codec?: string, framesDecoded?: number, frameWidth?: number, frameHeight?: number, framesPerSecond?: number, totalSamplesReceived?: number, bytesReceived?: number, packetsLost?: number}>>}
   */
  async inboundStats() {
    const out = {};
    if (!this.pc) return out;
    const bySlotMid = new Map();
    for (const [slot, tr] of this.transceivers) if (tr.mid !== null) bySlotMid.set(tr.mid, slot);
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      const codec = s.codecId ? report.get(s.codecId) : undefined;
      const slot = bySlotMid.get(s.mid);
      if (!slot) return;
      out[slot] = {
        kind: s.kind,
        codec: codec ? codec.mimeType : undefined,
        framesDecoded: s.framesDecoded,
        frameWidth: s.frameWidth,
        frameHeight: s.frameHeight,
        framesPerSecond: s.framesPerSecond,
        totalSamplesReceived: s.totalSamplesReceived,
        concealedSamples: s.concealedSamples,
        bytesReceived: s.bytesReceived,
        packetsLost: s.packetsLost,
      };
    });
    return out;
  }
}

/**
 * Notice which receive slots carry pictures / sound, by polling getStats.
 * Calls onChange(slot, flowing, stats) when a slot starts or stops. Slides may come
 * at a frame a second or slower: a slot counts as stopped only after `staleMs`
 * without a new frame, so the layout does not flap between two polls.
 *
 * It also keeps, for status.js, each slot's latest figures (`samples`), when its
 * last new frame was decoded on this peer connection (`frameAt`) and its recent
 * frame counts (for a frame rate where the browser gives none); `onPoll` runs
 * after each poll.
 */
export class FlowWatch {
  constructor(link, onChange, intervalMs = 500, staleMs = 6000) {
    this.link = link;
    this.onChange = onChange;
    this.staleMs = staleMs;
    /** @type {Map<string, number>} */ this.last = new Map();
    /** @type {Map<string, number>} */ this.progressAt = new Map();
    /** @type {Map<string, boolean>} */ this.flowing = new Map();
    /** @type {Map<string, any>} */ this.samples = new Map();
    /** @type {Map<string, number>} */ this.frameAt = new Map();
    /** @type {Map<string, Array<[number, number]>>} */ this.history = new Map();
    /** @type {(() => void)|null} */ this.onPoll = null;
    this.timer = setInterval(() => this.poll().catch(() => {}), intervalMs);
  }

  async poll() {
    const pc = this.link.pc;
    const stats = await this.link.inboundStats();
    // A poll that straddled a new peer connection says nothing about the new one.
    if (pc !== this.link.pc) return;
    const now = Date.now();
    for (const [slot, s] of Object.entries(stats)) {
      this.samples.set(slot, s);
      const counter = s.kind === "video" ? s.framesDecoded || 0 : s.bytesReceived || 0;
      const previous = this.last.get(slot);
      this.last.set(slot, counter);
      if (s.kind === "video") {
        const history = (this.history.get(slot) || []).filter(([at]) => now - at <= 2000);
        history.push([now, counter]);
        this.history.set(slot, history);
        if (counter > 0 && (previous === undefined || counter > previous)) this.frameAt.set(slot, now);
      }
      if (previous === undefined) continue; // one sample says nothing about motion
      if (counter > previous) this.progressAt.set(slot, now);
      const at = this.progressAt.get(slot);
      const flowing = at !== undefined && now - at < this.staleMs;
      if (this.flowing.get(slot) !== flowing) {
        this.flowing.set(slot, flowing);
        this.onChange(slot, flowing, s);
      }
    }
    if (this.onPoll) this.onPoll();
  }

  /** Frames a second over the last two seconds of polls (0 with fewer than two). */
  fps(slot) {
    const history = this.history.get(slot) || [];
    if (history.length < 2) return 0;
    const [t0, c0] = history[0];
    const [t1, c1] = history[history.length - 1];
    return t1 > t0 ? ((c1 - c0) * 1000) / (t1 - t0) : 0;
  }

  /** A new peer connection: its counters start from zero. */
  reset() {
    this.last.clear();
    this.samples.clear();
    this.frameAt.clear();
    this.history.clear();
  }

  stop() {
    clearInterval(this.timer);
  }
}

/**
 * Until `pc` has gathered its candidates: gathering complete, or (`quietMs` > 0) no new
 * candidate for `quietMs` since the last, or `timeoutMs` in all.
 */
function waitForGathering(pc, timeoutMs, quietMs = 0) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    let quiet = null;
    const done = () => {
      clearTimeout(timer);
      clearTimeout(quiet);
      pc.removeEventListener("icegatheringstatechange", check);
      pc.removeEventListener("icecandidate", candidate);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const candidate = (event) => {
      if (!quietMs || !event.candidate) return;
      clearTimeout(quiet);
      quiet = setTimeout(done, quietMs);
    };
    // On a machine with an unreachable interface gathering can hang; send what we have.
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
    pc.addEventListener("icecandidate", candidate);
    // Candidates found before this listener: the quiet counts from now.
    if (quietMs && pc.localDescription && /\r\na=candidate:/.test(pc.localDescription.sdp)) {
      quiet = setTimeout(done, quietMs);
    }
  });
}
