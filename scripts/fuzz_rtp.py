"""Fuzz the relay's media path: malformed RTP and RTCP from a connected participant.

    python -m scripts.fuzz_rtp --packets 100000 --seconds 180

On 127.0.0.1: the real relay (media.relay.relay.Relay with the operator's default
settings), a synthetic teacher publishing camera, microphone and screen
(media.synthetic), a witness classroom that decodes the teacher's camera, in a
process of its own (scripts/witness.py), and an attacker: a classroom whose ICE and
DTLS-SRTP are done, so that what it sends passes decryption. The attacker writes
crafted packets through its own peer connection's SRTP session and ICE transport
(what RTCDtlsTransport._send_rtp does, and media.adapter.transport.Wire for the
relay): truncated RTP headers, bad padding lengths, bad CSRC counts and extension
lengths, header extensions of the wrong size, compound RTCP with bogus lengths and
counts, NACKs that ask for every packet, PLI and FIR storms, REMB garbage,
transport-cc feedback garbage (the attacker's offer asks for transport-cc, so the
relay parses it: media.wire.twcc), RED with bogus block lengths on audio
(media.wire.red), replayed SRTP datagrams, junk in DTLS records, and random
mutations of its own valid packets.

libsrtp refuses to protect a header it cannot parse (a CSRC count or an extension
length past the end, fewer than 12 bytes), and the relay's libsrtp refuses the same
on arrival before anything else reads it. Such packets are sent unprotected and
counted as `unprotectable`: they test the relay's SRTP stage, which is all that a
real attacker could reach with them.

What counts: `tracebacks` (every log record at ERROR or above, or with an exception
or a traceback in it: aiortc logs a dying transport's traceback as a warning; the
peers share the process, so theirs count too, which errs on the strict side),
`crashes` (a task of the relay's that ended: its loops, the ladders, a participant's
DTLS receive loop), and the witness's decoded camera frames per second, each second
of the attack on its own clock (target: 14 or more), beside the same figure before
the attack, and how late each event loop woke, the relay's and the witness's: they
share the machine's cores. The last line printed is a JSON object.

Why the witness has a process of its own: the relay's downlink estimate for it
comes from what it measures (aiortc's REMB, on arrival times, and its receiver
reports). Sharing the relay's event loop, it stamped packets late by as much as the
loop ran late, and the relay read that as a queue on a loopback path whose round
trip is under a millisecond: with no attack at all, the witness's estimate fell to
about 100 kbit/s and its camera was off 20 s out of 29. `--witness-in-process`
puts it back there, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from classroom.roles import Role
from media.relay.relay import Relay
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant
from media.wire import twcc

HOST = "127.0.0.1"
LESSON = "fuzz-rtp"
MAX_PACKETS = 2_000_000
MAX_SECONDS = 3600.0
# Datagrams larger than a path's MTU are not what a browser sends; keep under it.
MTU = 1200
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
RED_PT = 63  # what Chromium offers RED/48000 under

# How often each kind of packet is sent, relative to the others.
WEIGHTS: dict[str, float] = {
    "rtp_truncated": 4,
    "rtp_padding": 6,
    "rtp_csrc": 4,
    "rtp_extension": 8,
    "rtp_mutated": 14,
    "red_audio": 6,
    "rtcp_compound": 10,
    "nack_huge": 6,
    "pli_storm": 6,
    "remb_garbage": 6,
    "twcc_garbage": 10,
    "rtcp_random": 6,
    "replay": 6,
    "srtp_junk": 4,
    "dtls_junk": 1,
}


# -- what the attacker knows of its connection ------------------------------------------


@dataclass
class Target:
    """What the attacker read from its own connection and the relay's answer."""

    own_ssrcs: dict[str, int]  # kind -> the attacker's sending SSRC
    payload_types: dict[str, int]  # kind -> VP8 / Opus payload type
    relay_ssrcs: list[int]  # the relay's senders towards the attacker
    extensions: dict[str, int]  # URI -> id, as the relay answered
    rtcp_ssrc: int


def read_target(participant: SyntheticParticipant, answer_sdp: str) -> Target:
    own = {
        kind: t.sender._ssrc
        for t in participant.pc.getTransceivers()
        if t.direction == "sendonly"
        for kind in [t.kind]
    }
    relay_ssrcs = sorted({int(x) for x in re.findall(r"^a=ssrc:(\d+) ", answer_sdp, re.M)})
    extensions = {
        uri: int(i) for i, uri in re.findall(r"^a=extmap:(\d+)\S* (\S+)", answer_sdp, re.M)
    }
    payload_types: dict[str, int] = {}
    for pt, name in re.findall(r"^a=rtpmap:(\d+) (\w+)/", answer_sdp, re.M):
        if name.lower() == "vp8":
            payload_types.setdefault("video", int(pt))
        elif name.lower() == "opus":
            payload_types.setdefault("audio", int(pt))
    return Target(own, payload_types, relay_ssrcs, extensions, random.getrandbits(32))


def ask_for_transport_cc(offer: str, extension_id: int = 14) -> str:
    """The offer with transport-cc on its video sections, as a browser's has it: the
    relay then answers it and parses the attacker's transport feedback."""
    out = []
    for line in offer.split("\r\n"):
        out.append(line)
        match = re.match(r"a=rtpmap:(\d+) VP8/90000", line)
        if match:
            out.append(f"a=rtcp-fb:{match.group(1)} transport-cc")
            out.append(f"a=extmap:{extension_id} {twcc.URI}")
    return "\r\n".join(out)


# -- packets ------------------------------------------------------------------------------


class PacketFuzzer:
    """Seeded crafted packets: `next()` -> (kind, datagram, how to send it).

    How: "protect" (SRTP or SRTCP with the attacker's keys), "raw" (as is),
    "replay" (an SRTP datagram already sent, as is).
    """

    def __init__(
        self,
        rng: random.Random,
        target: Target,
        recent_rtp: Callable[[], list[bytes]],
        recent_srtp: Callable[[], list[bytes]],
        kinds: list[str] | None = None,
        newest_seq: dict[int, int] | None = None,
    ) -> None:
        # SSRC -> the newest sequence number the attacker's real senders sent.
        self.newest_seq = {} if newest_seq is None else newest_seq
        self.rng = rng
        self.target = target
        self.recent_rtp = recent_rtp
        self.recent_srtp = recent_srtp
        # Streams of our own under SSRCs the relay never heard of: a small pool, since
        # every new SSRC costs a stream in the relay's SRTP session.
        self._fake = [rng.getrandbits(32) for _ in range(6)]
        self._seq: dict[int, int] = {}
        self._kinds = list(kinds or WEIGHTS)
        self._weights = [WEIGHTS[k] for k in self._kinds]

    def next(self) -> tuple[str, bytes, str]:
        kind = self.rng.choices(self._kinds, self._weights)[0]
        data, how = getattr(self, "_" + kind)()
        return kind, data[:MTU], how

    # RTP

    def _ssrc(self, kind: str) -> int:
        if self.rng.random() < 0.5:
            return self.target.own_ssrcs.get(kind, self._fake[0])
        return self.rng.choice(self._fake)

    def _header(self, kind: str = "video", first: int = 0x80, **over: int) -> bytes:
        ssrc = over.get("ssrc", self._ssrc(kind))
        seq = self._next_seq(ssrc)
        pt = over.get("pt", self.target.payload_types.get(kind, 96))
        marker = 0x80 if self.rng.random() < 0.3 else 0
        ts = over.get("ts", self.rng.getrandbits(32))
        return struct.pack("!BBHII", first, marker | pt, seq, ts, ssrc)

    def _next_seq(self, ssrc: int) -> int:
        """A sequence number the relay's SRTP replay window takes. On the attacker's own
        streams, just ahead of its real sender's newest: running further ahead would
        leave that sender's next packets too old for its own SRTP session (it would
        stop, on the attacker's side)."""
        newest = self.newest_seq.get(ssrc)
        if newest is not None:
            return (newest + self.rng.randint(1, 3)) & 0xFFFF
        seq = self._seq.get(ssrc, self.rng.randrange(1 << 16))
        self._seq[ssrc] = (seq + 1) & 0xFFFF
        return seq

    def _payload(self, size: int | None = None) -> bytes:
        size = self.rng.randint(0, 900) if size is None else size
        return self.rng.randbytes(size)

    def _rtp_truncated(self) -> tuple[bytes, str]:
        return self._header()[: self.rng.randint(0, 11)], "protect"

    def _rtp_padding(self) -> tuple[bytes, str]:
        body = self._header(first=0xA0) + self._payload(self.rng.randint(0, 40))
        last = self.rng.choice([0, 1, 255, len(body), len(body) - 11, len(body) + 1])
        return body + bytes((last & 0xFF,)), "protect"

    def _rtp_csrc(self) -> tuple[bytes, str]:
        cc = self.rng.randint(1, 15)
        words = self.rng.randint(0, cc)  # may claim more CSRCs than it holds
        return self._header(first=0x80 | cc) + self._payload(4 * words), "protect"

    def _rtp_extension(self) -> tuple[bytes, str]:
        rng = self.rng
        ids = [*self.target.extensions.values(), 15, 0, rng.randint(1, 14)]
        if rng.random() < 0.3:  # a length past the end, or a profile cut short
            length = rng.choice([1, 2, 0xFFFF, rng.randrange(1 << 16)])
            ext = struct.pack("!HH", rng.choice([0xBEDE, 0x1000, 0]), length)
            ext += self._payload(rng.randint(0, 8))[: 4 * length]
            return self._header(first=0x90) + ext, "protect"
        if rng.random() < 0.7:  # one-byte elements, each of a size its id does not take
            elements = b""
            for _ in range(rng.randint(1, 6)):
                size = rng.randint(1, 16)
                elements += bytes(((rng.choice(ids) << 4) | (size - 1),)) + self._payload(size)
            profile = 0xBEDE
        else:  # two-byte elements, lengths possibly past the end
            elements = b""
            for _ in range(rng.randint(1, 4)):
                size = rng.randint(0, 20)
                elements += bytes((rng.choice(ids), size + rng.choice([0, 0, 3]))) + self._payload(
                    size
                )
            profile = 0x1000 | rng.randrange(16)
        elements += bytes(-len(elements) % 4)
        ext = struct.pack("!HH", profile, len(elements) // 4) + elements
        return self._header(first=0x90) + ext + self._payload(rng.randint(0, 200)), "protect"

    def _rtp_mutated(self) -> tuple[bytes, str]:
        rng = self.rng
        recent = self.recent_rtp()
        if not recent:
            return self._rtp_padding()
        packet = bytearray(rng.choice(recent))
        for _ in range(rng.choice([1, 1, 2, 4, 16])):
            op = rng.randrange(5)
            if op == 0 and len(packet) > 12:  # flip bits past the header
                at = rng.randrange(12, len(packet))
                packet[at] ^= 1 << rng.randrange(8)
            elif op == 1 and len(packet) > 12:  # a byte anywhere, the version kept
                at = rng.randrange(1, len(packet))
                packet[at] = rng.randrange(256)
            elif op == 2:  # cut
                del packet[rng.randint(12, max(12, len(packet))) :]
            elif op == 3:  # insert
                at = rng.randint(12, len(packet))
                packet[at:at] = self._payload(rng.randint(1, 32))
            else:  # the first byte's flags (P, X, CC)
                packet[0] = 0x80 | (rng.randrange(64) & 0x3F)
        # Then a sequence number that the relay's replay window takes.
        packet[2:4] = self._next_seq(int.from_bytes(packet[8:12], "big")).to_bytes(2, "big")
        return bytes(packet), "protect"

    def _red_audio(self) -> tuple[bytes, str]:
        """RED (RFC 2198) whose block headers lie about their lengths, under RED's
        payload type and under Opus's."""
        rng = self.rng
        opus = self.target.payload_types.get("audio", 111)
        headers = b""
        blocks = b""
        for _ in range(rng.randint(0, 5)):
            length = rng.choice([0, 1, 1023, rng.randrange(1024)])
            offset = rng.randrange(1 << 14)
            headers += ((1 << 31) | (opus << 24) | (offset << 10) | length).to_bytes(4, "big")
            blocks += self._payload(rng.randint(0, min(length, 100)))
        if rng.random() < 0.8:
            headers += bytes((opus,))
        payload = headers + blocks + self._payload(rng.randint(0, 60))
        pt = rng.choice([RED_PT, opus])
        return self._header("audio", pt=pt) + payload, "protect"

    # RTCP

    def _rtcp(self, kind: int, count: int, body: bytes, words: int | None = None) -> bytes:
        words = (len(body) + 3) // 4 if words is None else words
        body += bytes(-len(body) % 4)
        return struct.pack("!BBH", 0x80 | (count & 0x1F), kind, words & 0xFFFF) + body

    def _relay_ssrc(self) -> int:
        ssrcs = self.target.relay_ssrcs
        return (
            self.rng.choice(ssrcs)
            if ssrcs and self.rng.random() < 0.9
            else self.rng.getrandbits(32)
        )

    def _rtcp_compound(self) -> tuple[bytes, str]:
        rng = self.rng
        parts = []
        for _ in range(rng.randint(1, 5)):
            kind = rng.choice([200, 201, 202, 203, 204, 205, 206, 207, 210])
            count = rng.randrange(32)
            body = struct.pack("!I", self.target.rtcp_ssrc)
            if kind in (200, 201):
                if kind == 200:
                    body += self._payload(20)
                for _ in range(rng.randint(0, count)):
                    body += struct.pack("!I", self._relay_ssrc()) + self._payload(20)
            elif kind == 202:  # SDES items with lengths past the end
                body += bytes((1, rng.randrange(256))) + self._payload(rng.randint(0, 30))
            else:
                body += self._payload(rng.randint(0, 60))
            part = self._rtcp(kind, count, body)
            if rng.random() < 0.4:  # a length that lies
                words = rng.choice([0, 1, 0xFFFF, len(part) // 4 + rng.randint(-3, 3)])
                part = part[:2] + struct.pack("!H", words & 0xFFFF) + part[4:]
            if rng.random() < 0.2:  # padding bit with a bogus count
                part = bytes((part[0] | 0x20,)) + part[1:-1] + bytes((rng.randrange(256),))
            parts.append(part)
        data = b"".join(parts)
        if rng.random() < 0.2:
            data = data[: rng.randint(2, len(data))]
        if len(data) < 2 or not 192 <= data[1] <= 208:  # what makes it SRTCP (aiortc is_rtcp)
            data = self._rtcp(201, 0, struct.pack("!I", self.target.rtcp_ssrc)) + data
        return data, "protect"

    def _nack_huge(self) -> tuple[bytes, str]:
        """Generic NACKs (RFC 4585 §6.2.1) asking for up to ~5,000 packets at once."""
        rng = self.rng
        start = rng.choice([0, 65535, 65530, rng.randrange(1 << 16)])
        # One bitmask for all items, and one struct call: the attacker shares the
        # relay's event loop, and must not be what slows it down.
        blp = rng.choice([0xFFFF, 0, rng.randrange(1 << 16)])
        step = rng.choice([17, 1, 0])  # every packet, each item again, the same one
        count = rng.randint(1, (MTU - 16) // 4)
        items = [v for i in range(count) for v in ((start + i * step) & 0xFFFF, blp)]
        fci = struct.pack(f"!{2 * count}H", *items)
        body = struct.pack("!II", self.target.rtcp_ssrc, self._relay_ssrc()) + fci
        return self._rtcp(205, 1, body), "protect"

    def _pli_storm(self) -> tuple[bytes, str]:
        """PLIs and FIRs for the relay's senders, many in one compound packet."""
        rng = self.rng
        parts = []
        for _ in range(rng.randint(1, 60)):
            fmt = rng.choice([1, 1, 1, 4])
            media = self._relay_ssrc()
            body = struct.pack("!II", self.target.rtcp_ssrc, media)
            if fmt == 4:
                body += struct.pack("!IBxxx", media, rng.randrange(256))
            parts.append(self._rtcp(206, fmt, body))
        return b"".join(parts), "protect"

    def _remb_garbage(self) -> tuple[bytes, str]:
        rng = self.rng
        n = rng.choice([0, 1, 2, 255, rng.randrange(256)])
        listed = rng.randint(0, min(n, 4))
        exponent = rng.choice([0, 63, rng.randrange(64)])
        mantissa = rng.choice([0, 1, (1 << 18) - 1, rng.randrange(1 << 18)])
        fci = rng.choice([b"REMB", b"REMX", b"RE"]) + bytes(
            (n, (exponent << 2) | (mantissa >> 16), (mantissa >> 8) & 0xFF, mantissa & 0xFF)
        )
        fci += b"".join(struct.pack("!I", self._relay_ssrc()) for _ in range(listed))
        body = struct.pack("!II", self.target.rtcp_ssrc, 0) + fci
        return self._rtcp(206, 15, body), "protect"

    def _twcc_garbage(self) -> tuple[bytes, str]:
        rng = self.rng
        media = self._relay_ssrc()
        if rng.random() < 0.4:  # well formed, with arrivals that make no sense
            count = rng.randint(1, 200)
            arrivals: list[int | None] = [
                None if rng.random() < 0.3 else rng.choice([0, rng.randrange(1 << 30), -(1 << 20)])
                for _ in range(count)
            ]
            arrivals = [a if a is None or a >= 0 else 0 for a in arrivals]
            return twcc.build(
                self.target.rtcp_ssrc, media, rng.randrange(1 << 16), arrivals, rng.randrange(256)
            ), "protect"
        count = rng.choice([0, 1, 65535, rng.randrange(1 << 16)])
        body = struct.pack(
            "!IIHHI",
            self.target.rtcp_ssrc,
            media,
            rng.randrange(1 << 16),
            count,
            rng.getrandbits(32),
        )
        chunks = b"".join(
            struct.pack(
                "!H",
                rng.choice(
                    [
                        0x1FFF,
                        0x3FFF,
                        0x7FFF,
                        0x8000 | rng.randrange(1 << 15),
                        rng.randrange(1 << 16),
                    ]
                ),
            )
            for _ in range(rng.randint(0, 40))
        )
        body += chunks + self._payload(rng.randint(0, 200))
        return self._rtcp(205, 15, body), "protect"

    def _rtcp_random(self) -> tuple[bytes, str]:
        rng = self.rng
        data = bytes((0x80 | rng.randrange(64), rng.randint(192, 208))) + self._payload(
            rng.randint(0, 200)
        )
        return data, "protect"

    # Datagrams

    def _replay(self) -> tuple[bytes, str]:
        recent = self.recent_srtp()
        if not recent:
            return self._srtp_junk()
        return self.rng.choice(recent), "replay"

    def _srtp_junk(self) -> tuple[bytes, str]:
        """Bytes that look like SRTP or SRTCP but were never protected."""
        rng = self.rng
        data = bytes((rng.randint(128, 191), rng.randrange(256))) + self._payload(
            rng.randint(0, 300)
        )
        return data, "raw"

    def _dtls_junk(self) -> tuple[bytes, str]:
        """Records for the DTLS session that carries the data channel: junk to OpenSSL."""
        rng = self.rng
        data = bytes((rng.choice([20, 21, 22, 23, 25]), 0xFE, 0xFD)) + self._payload(
            rng.randint(0, 200)
        )
        return data, "raw"


# -- the attacker's connection ------------------------------------------------------------


class Attacker:
    """Sends crafted packets over a connected participant's own SRTP session and ICE
    transport, and keeps its recent real packets (plain, and as they left) to mutate
    and replay."""

    def __init__(self, participant: SyntheticParticipant) -> None:
        dtls: Any = participant.pc.getTransceivers()[0].sender.transport
        self.dtls = dtls
        self.ice: Any = dtls.transport
        self.recent_rtp: deque[bytes] = deque(maxlen=64)
        self.recent_srtp: deque[bytes] = deque(maxlen=64)
        self.newest_seq: dict[int, int] = {}
        send_rtp = dtls._send_rtp
        send = self.ice._send

        async def keep_rtp(data: bytes) -> None:
            if len(data) >= 12 and not 192 <= data[1] <= 208:
                self.recent_rtp.append(data)
                self.newest_seq[int.from_bytes(data[8:12], "big")] = int.from_bytes(
                    data[2:4], "big"
                )
            await send_rtp(data)

        async def keep_srtp(data: bytes) -> None:
            if data and 128 <= data[0] < 192:
                self.recent_srtp.append(data)
            await send(data)

        # Senders call `transport._send_rtp`, the DTLS transport `self.transport._send`:
        # instance attributes shadow both for this connection only.
        dtls._send_rtp = keep_rtp
        self.ice._send = keep_srtp
        self._send = send

    async def send(self, data: bytes, how: str) -> bool:
        """Send one datagram; False if libsrtp would not protect it (sent as is then)."""
        import pylibsrtp

        protected = True
        if how == "protect":
            try:
                srtp = self.dtls._tx_srtp
                is_rtcp = len(data) >= 2 and 192 <= data[1] <= 208
                data = srtp.protect_rtcp(data) if is_rtcp else srtp.protect(data)
            except pylibsrtp.Error:
                protected = False
        await self._send(data)
        return protected


# -- what counts --------------------------------------------------------------------------


class Tracebacks(logging.Handler):
    """Counts log records at ERROR and above, and any carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.kinds: Counter[str] = Counter()
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR or record.exc_info or "Traceback" in message:
            self.count += 1
            text = message
            if record.exc_info:
                text += "\n" + "".join(logging.Formatter().formatException(record.exc_info))
            lines = [x for x in text.splitlines() if x.strip()]
            self.kinds[f"{record.name}: {lines[-1][:160] if lines else ''}"] += 1
            if self.first is None:
                self.first = text[-3000:]


def dead_tasks(relay: Relay, lesson_id: str = LESSON) -> list[str]:
    """The relay's tasks that have ended: its loops, its ladders, each participant's
    DTLS receive loop (aiortc ends it on an exception it did not expect)."""
    dead = [t.get_name() for t in relay._tasks if t.done()]
    lesson = relay._lessons.get(lesson_id)
    for participant in lesson.participants.values() if lesson else []:
        name = participant.participant_id
        for slot, ladder in participant.ladders.items():
            reader = ladder._reader
            if reader is not None and reader.done():
                dead.append(f"{name}: ladder {slot}")
        transceivers = participant.pc.getTransceivers()
        # aiortc's RTCP loops: one that raised is gone silently (its exception is only
        # logged when the task is collected), and closing the connection then waits
        # for it forever.
        for t in transceivers:
            for part, attribute in (
                (t.receiver, "_RTCRtpReceiver__rtcp_task"),
                (t.sender, "_RTCRtpSender__rtcp_task"),
                (t.sender, "_RTCRtpSender__rtp_task"),
            ):
                task = getattr(part, attribute, None)
                if task is not None and task.done() and not task.cancelled():
                    error = task.exception()
                    if error is not None:
                        dead.append(f"{name}: {attribute.split('__')[-1]} {t.mid}: {error!r}")
        transports = {t.sender.transport for t in transceivers}
        for dtls in transports:
            task = dtls._task
            if task is None or task.done():
                dead.append(f"{name}: dtls receive loop ({dtls.state})")
    return dead


# -- the witness ---------------------------------------------------------------------------


class LocalWitness:
    """The witness in the relay's process: a SyntheticParticipant whose decoded camera
    frames are counted each second on the shared event loop. Its receive times, so
    the REMB and the receiver reports it sends, carry whatever that loop ran late
    by: an attack's cost to the relay reads as a queue on its path."""

    def __init__(self) -> None:
        self.peer = SyntheticParticipant(
            Role.CLASSROOM, send_video=lambda: MovingPicture(320, 180, 15)
        )
        self.fps_each_s: list[int] = []
        self.late_ms_each_s: list[int] = []
        self._stop = asyncio.Event()
        self._sampler: asyncio.Task[None] | None = None

    @property
    def frames(self) -> int:
        return self.peer.received[Slot.TEACHER_CAMERA].frames

    async def offer(self) -> str:
        return await self.peer.offer()

    async def accept(self, answer_sdp: str) -> None:
        await self.peer.accept(answer_sdp)
        self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        last = self.frames
        while not self._stop.is_set():
            asked = time.monotonic()
            try:
                await asyncio.wait_for(self._stop.wait(), 1.0)
            except TimeoutError:
                self.fps_each_s.append(self.frames - last)
                self.late_ms_each_s.append(round(1000 * (time.monotonic() - asked - 1.0)))
                last = self.frames

    async def wait_frames(self, count: int, timeout: float) -> None:
        await self.peer.wait_frames(Slot.TEACHER_CAMERA, count, timeout)

    async def close(self) -> tuple[int, str | None]:
        """Close; its tracebacks are the parent's own (counted there)."""
        self._stop.set()
        if self._sampler is not None:
            await self._sampler
        await self.peer.close()
        return 0, None


class RemoteWitness:
    """The witness in a process of its own (scripts/witness.py), as a browser on another
    machine is to the relay: what it measures of its path is not the relay's loop."""

    def __init__(self) -> None:
        self.frames = 0
        self.fps_each_s: list[int] = []
        self.late_ms_each_s: list[int] = []
        self._changed = asyncio.Event()
        self._offer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._bye: asyncio.Future[tuple[int, str | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def offer(self) -> str:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scripts.witness",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Big enough for an SDP on one line.
            limit=1 << 20,
        )
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(30):
            return await self._offer

    async def accept(self, answer_sdp: str) -> None:
        self._send({"type": "answer", "sdp": answer_sdp})

    def _send(self, message: dict[str, Any]) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write((json.dumps(message) + "\n").encode())

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        while line := await self._process.stdout.readline():
            message = json.loads(line)
            kind = message.get("type")
            if kind == "offer":
                self._offer.set_result(message["sdp"])
            elif kind == "frames":
                self.frames = message["total"]
                self._changed.set()
            elif kind == "second":
                self.fps_each_s.append(message["fps"])
                self.late_ms_each_s.append(message["late_ms"])
            elif kind == "bye" and not self._bye.done():
                self._bye.set_result((message["tracebacks"], message["first_traceback"]))
        for future in (self._offer, self._bye):
            if not future.done():
                future.set_exception(RuntimeError("the witness process ended"))

    async def wait_frames(self, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while self.frames < count:
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> tuple[int, str | None]:
        """Close the witness; its tracebacks, and the first of them."""
        process = self._process
        if process is None:
            return 0, None
        try:
            self._send({"type": "close"})
            async with asyncio.timeout(10):
                return await self._bye
        except (TimeoutError, RuntimeError, ConnectionError):
            return 1, "the witness process did not say bye"
        finally:
            if process.returncode is None:
                try:
                    async with asyncio.timeout(5):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()
            if self._reader is not None:
                await self._reader


Witness = LocalWitness | RemoteWitness


@dataclass
class Result:
    sent: Counter[str] = field(default_factory=Counter)
    unprotectable: int = 0
    fps: list[int] = field(default_factory=list)
    late_s: list[float] = field(default_factory=list)
    witness_late_ms: list[int] = field(default_factory=list)


async def loop_lateness(into: list[float], stop: asyncio.Event, every_s: float = 1.0) -> None:
    """How late this process's event loop wakes from a wait of `every_s` (the relay's
    here, each second; scripts/soak.py's, every 50 ms), in seconds."""
    while not stop.is_set():
        asked = time.monotonic()
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            into.append(time.monotonic() - asked - every_s)


async def attack(
    relay: Relay,
    attacker: Attacker,
    target: Target,
    witness: Witness,
    *,
    packets: int,
    seconds: float,
    rate: float,
    seed: int,
    kinds: list[str] | None = None,
) -> Result:
    """Send up to `packets` crafted packets at `rate` a second, for at most `seconds`."""
    result = Result()
    fuzzer = PacketFuzzer(
        random.Random(seed),
        target,
        lambda: list(attacker.recent_rtp),
        lambda: list(attacker.recent_srtp),
        kinds,
        attacker.newest_seq,
    )
    stop = asyncio.Event()
    sampler = asyncio.create_task(loop_lateness(result.late_s, stop))
    seen = len(witness.fps_each_s)
    started = time.monotonic()
    sent = 0
    try:
        while sent < packets and time.monotonic() - started < seconds:
            # A burst every 10 ms, as many as the rate owes by now.
            due = min(packets, int((time.monotonic() - started) * rate) + 1)
            while sent < due:
                kind, data, how = fuzzer.next()
                if not await attacker.send(data, how):
                    result.unprotectable += 1
                result.sent[kind] += 1
                sent += 1
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await sampler
    # The witness's seconds that began during the attack, on its own clock.
    result.fps = witness.fps_each_s[seen:]
    result.witness_late_ms = witness.late_ms_each_s[seen:]
    return result


async def run(
    *,
    packets: int,
    seconds: float,
    rate: float,
    seed: int = 1,
    baseline: float = 3.0,
    kinds: list[str] | None = None,
    witness_in_process: bool = False,
) -> dict[str, Any]:
    """The relay, a teacher, a witness and an attacker; the attack; the figures.

    `witness_in_process`: the witness shares the relay's process and event loop
    (as it did at first) instead of running in its own (RemoteWitness)."""
    counter = Tracebacks()
    root = logging.getLogger()
    root.addHandler(counter)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    unhandled: list[str] = []
    previous_handler = loop.get_exception_handler()

    def on_unhandled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        unhandled.append(str(context.get("exception") or context.get("message")))
        loop.default_exception_handler(context)

    loop.set_exception_handler(on_unhandled)
    relay = Relay(RelaySettings(host_addresses=(HOST,), encoder_threads=2))
    peers: list[SyntheticParticipant] = []
    witness: Witness = LocalWitness() if witness_in_process else RemoteWitness()
    witness_tracebacks: tuple[int, str | None] = (0, None)
    started = time.monotonic()
    try:

        async def join(
            name: str, role: Role, munge: Callable[[str], str] = str
        ) -> tuple[SyntheticParticipant, str]:
            kwargs: dict[str, Any] = {}
            if role is Role.CLASSROOM:
                kwargs["send_video"] = lambda: MovingPicture(320, 180, 15)
            peer = SyntheticParticipant(role, **kwargs)
            peers.append(peer)
            answer = await relay.negotiate(LESSON, name, role, munge(await peer.offer()))
            await peer.accept(answer)
            return peer, answer

        await join("teacher", Role.TEACHER)
        offer = await witness.offer()
        await witness.accept(await relay.negotiate(LESSON, "witness", Role.CLASSROOM, offer))
        intruder, answer = await join("attacker", Role.CLASSROOM, ask_for_transport_cc)
        await witness.wait_frames(15, timeout=20)
        await intruder.wait_frames(Slot.TEACHER_CAMERA, 5, timeout=20)
        attacker = Attacker(intruder)
        target = read_target(intruder, answer)
        # The witness's frame rate before the attack, over a few whole seconds.
        seen = len(witness.fps_each_s)
        await asyncio.sleep(baseline + 0.5)
        before = witness.fps_each_s[seen:] or [0]
        result = await attack(
            relay,
            attacker,
            target,
            witness,
            packets=packets,
            seconds=seconds,
            rate=rate,
            seed=seed,
            kinds=kinds,
        )
        # A moment for what the last packets set off (resends, keyframes) to finish.
        await asyncio.sleep(1.0)
        dead = dead_tasks(relay)
        attacker_alive = relay.has_peer(LESSON, "attacker")
        # How the relay sees each downlink now: an attack on the relay's estimate of
        # the attacker's link must not move the witness's.
        links = {
            name: {
                "estimate_kbps": round(report.estimate_kbps),
                "layers": report.layers,
                "server_load": report.server_load,
            }
            for name in ("witness", "attacker")
            if relay.has_peer(LESSON, name)
            for report in [relay.link_report(LESSON, name)]
        }
        # How soon after the attack the witness decodes a new frame (None: not in 10 s).
        after, ended = witness.frames, time.monotonic()
        recovered_s: float | None = None
        while time.monotonic() - ended < 10.0:
            await asyncio.sleep(0.05)
            if witness.frames > after:
                recovered_s = round(time.monotonic() - ended, 2)
                break
    finally:
        witness_tracebacks = await witness.close()
        for peer in peers:
            await peer.close()
        await relay.close()
        root.removeHandler(counter)
        loop.set_exception_handler(previous_handler)
    fps = result.fps or [0]
    return {
        "seed": seed,
        "duration_s": round(time.monotonic() - started, 1),
        "witness": "in the relay's process" if witness_in_process else "own process",
        "attack_s": len(result.fps),
        "packets": sum(result.sent.values()),
        "sent_by_kind": dict(sorted(result.sent.items())),
        "unprotectable": result.unprotectable,
        "tracebacks": counter.count + witness_tracebacks[0],
        "traceback_kinds": dict(counter.kinds.most_common(10)),
        "unhandled_in_loop": len(unhandled),
        "crashes": len(dead),
        "dead_tasks": dead,
        "attacker_still_connected": attacker_alive,
        "witness_fps_before": round(sum(before) / len(before), 1),
        "witness_fps_min": min(fps),
        "witness_fps_mean": round(sum(fps) / len(fps), 1),
        "witness_next_frame_after_s": recovered_s,
        "witness_fps_each_s": result.fps,
        "loop_late_ms_each_s": [round(1000 * x) for x in result.late_s],
        "witness_loop_late_ms_each_s": result.witness_late_ms,
        "links_after": links,
        "loop_late_ms_max": round(1000 * max(result.late_s, default=0.0)),
        "first_traceback": counter.first or witness_tracebacks[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--rate", type=float, default=600.0, help="packets per second")
    parser.add_argument("--baseline", type=float, default=3.0, help="seconds measured before")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", nargs="+", choices=list(WEIGHTS), help="only these")
    parser.add_argument(
        "--witness-in-process",
        action="store_true",
        help="the witness in the relay's process, its loop shared (as it was at first)",
    )
    args = parser.parse_args()
    if not 1 <= args.packets <= MAX_PACKETS:
        parser.error(f"--packets must be within 1..{MAX_PACKETS}")
    if not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be within 1..{MAX_SECONDS}")
    if not 1 <= args.rate <= 20_000:
        parser.error("--rate must be within 1..20000")
    figures = run(
        packets=args.packets,
        seconds=args.seconds,
        rate=args.rate,
        seed=args.seed,
        baseline=args.baseline,
        kinds=args.kinds,
        witness_in_process=args.witness_in_process,
    )
    print(json.dumps(asyncio.run(figures), default=str))


if __name__ == "__main__":
    main()
