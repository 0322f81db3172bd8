// What this classroom's browser received of the lesson, as the browser itself counted
// it: freezes of the teacher's camera and the slides, gaps in the teacher's sound. The
// relay knows what it sent; only the browser knows what the pupils saw and heard.
//
// From the peer connection's own statistics (W3C webrtc-stats, inbound-rtp:
// freezeCount, totalFreezesDuration, framesDecoded, concealedSamples,
// totalSamplesReceived, concealmentEvents), sent as the `reception` message
// (docs/protocol.md): cumulative counters per peer connection, which the server adds up
// in the lesson's delivery report. With them, what it decodes now (`pictures`: each
// of the teacher's pictures' state, size and frame rate, from status.js), which the
// teacher's classroom table shows: what the room really gets, not what the relay meant.

const POLL_MS = 5000;
/** The server keeps one report per classroom per 8 s; this page sends one per 10 s at most. */
const SEND_MS = 10000;
const VIDEO_SLOTS = new Set(["teacher_camera", "slides"]);
const AUDIO_SLOTS = new Set(["teacher_audio"]);

/**
 * Sum the lesson's inbound-rtp figures into the message's `video` and `audio` counters;
 * null for a kind the browser does not measure (or has not received yet).
 * @param {Iterable<{slot: string, stats: any}>} streams
 * @returns {{video: any, audio: any}}
 */
export function receptionCounters(streams) {
  let video = null;
  let audio = null;
  for (const { slot, stats: s } of streams) {
    if (VIDEO_SLOTS.has(slot) && typeof s.freezeCount === "number") {
      video = video || { freeze_count: 0, total_freezes_duration: 0, frames_decoded: 0 };
      video.freeze_count += s.freezeCount;
      video.total_freezes_duration += s.totalFreezesDuration || 0;
      video.frames_decoded += s.framesDecoded || 0;
    } else if (AUDIO_SLOTS.has(slot) && typeof s.totalSamplesReceived === "number") {
      audio = audio || { concealed_samples: 0, total_samples_received: 0, concealment_events: 0 };
      audio.concealed_samples += s.concealedSamples || 0;
      audio.total_samples_received += s.totalSamplesReceived;
      audio.concealment_events += s.concealmentEvents || 0;
    }
  }
  if (video) video.total_freezes_duration = Math.round(video.total_freezes_duration * 1000) / 1000;
  return { video, audio };
}

/** 16 hex digits. Not crypto.randomUUID: it needs https, and a school's LAN server may be http. */
function newSessionId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class ReceptionWatch {
  /**
   * @param {{pc: RTCPeerConnection|null, transceivers: Map<string, RTCRtpTransceiver>}} link  the page's MediaLink
   * @param {{state: string, reception: (session: string, video: any, audio: any, pictures?: any) => boolean}} conn  its LessonConnection
   * @param {() => any} [pictures]  what the page decodes now, by slot (PictureStatus.report)
   */
  constructor(link, conn, pictures = () => null) {
    this.link = link;
    this.conn = conn;
    this.pictures = pictures;
    /** @type {RTCPeerConnection|null} */ this.pc = null;
    this.session = "";
    /** Each inbound-rtp stream's last figures, by stats id: one the browser replaced keeps what it counted. */
    this.streams = new Map();
    this.sent = "";
    this.sentAt = -Infinity;
    this.timer = setInterval(() => this.poll().catch(() => {}), POLL_MS);
  }

  async poll() {
    if (this.conn.state === "closed") return this.stop();
    const pc = this.link.pc;
    if (!pc) return;
    if (pc !== this.pc) {
      // A new peer connection counts from zero: a new session, which the server adds.
      this.pc = pc;
      this.session = newSessionId();
      this.streams = new Map();
      this.sent = "";
    }
    const slotOfMid = new Map();
    for (const [slot, tr] of this.link.transceivers) if (tr.mid !== null) slotOfMid.set(tr.mid, slot);
    const report = await pc.getStats();
    if (pc !== this.pc) return;
    report.forEach((s) => {
      const slot = s.type === "inbound-rtp" && slotOfMid.get(s.mid);
      if (slot) this.streams.set(s.id, { slot, stats: s });
    });
    const { video, audio } = receptionCounters(this.streams.values());
    const now = this.pictures();
    const pictures = now && Object.keys(now).length ? now : null;
    // A picture that froze changes no counter, and is exactly what the teacher must see.
    const key = JSON.stringify([video, audio, pictures]);
    if ((!video && !audio) || key === this.sent || Date.now() - this.sentAt < SEND_MS) return;
    // Not sent while disconnected: the next poll tries again, counters still cumulative.
    if (this.conn.reception(this.session, video, audio, pictures)) {
      this.sent = key;
      this.sentAt = Date.now();
    }
  }

  stop() {
    clearInterval(this.timer);
  }
}
