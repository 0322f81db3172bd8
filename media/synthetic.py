"""Synthetic participants: an aiortc peer that offers a role's slots, with a moving
picture and a tone. Used by tests/media and scripts/bench_fanout.py; a real
client is a browser speaking the same SDP.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from classroom.roles import Role
from media.adapter.hooks import gather_on, install_consent_hook
from media.gateway import MediaGateway
from media.slots import SLOTS, Slot


class _Paced(MediaStreamTrack):
    """A synthetic source that produces its items in real time, `per_second` of them."""

    def __init__(self, per_second: float) -> None:
        super().__init__()
        self._per_second = per_second
        self._start: float | None = None
        self._count = 0

    async def _next(self) -> int:
        """Wait until the next item is due; return its index."""
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._count / self._per_second
        if due > now:
            await asyncio.sleep(due - now)
        self._count += 1
        return self._count - 1


class MovingPicture(_Paced):
    """A bar sliding over a gradient, paced in real time: frames differ, as a camera's do."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 360, fps: int = 15) -> None:
        super().__init__(fps)
        self._fps = fps
        y = np.tile(np.linspace(16, 235, width, dtype=np.uint8), (height, 1))
        chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)
        self._frames = []
        for i in range(fps):
            luma = y.copy()
            x = i * width // fps
            luma[:, x : x + width // 16] = 250
            planes = np.concatenate(
                [luma, chroma.reshape(height // 4, width), chroma.reshape(height // 4, width)]
            )
            self._frames.append(planes)

    async def recv(self) -> av.VideoFrame:
        index = await self._next()
        frame = av.VideoFrame.from_ndarray(self._frames[index % self._fps], format="yuv420p")
        frame.pts = index * (90000 // self._fps)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame

    @property
    def frames_sent(self) -> int:
        return self._count


class SlideDeck(_Paced):
    """Slides as a screen share sends them: sharp, mostly still, a new page now and then."""

    kind = "video"

    def __init__(
        self, width: int = 1280, height: int = 720, fps: int = 5, page_every_s: float = 10.0
    ) -> None:
        super().__init__(fps)
        self._fps = fps
        self._per_page = max(1, round(page_every_s * fps))
        rng = np.random.default_rng(7)
        chroma = np.full((height // 4, width), 128, dtype=np.uint8)
        self._pages = []
        for _ in range(4):
            luma = np.full((height, width), 235, dtype=np.uint8)
            # Lines of "text": dark dashes of random length on a white page.
            for row in range(height // 10, height - height // 10, max(8, height // 24)):
                x = width // 12
                while x < width - width // 12:
                    word = int(rng.integers(width // 40, width // 12))
                    luma[row : row + max(2, height // 90), x : x + word] = 30
                    x += word + width // 80
            self._pages.append(np.concatenate([luma, chroma, chroma]))

    async def recv(self) -> av.VideoFrame:
        index = await self._next()
        page = self._pages[(index // self._per_page) % len(self._pages)]
        frame = av.VideoFrame.from_ndarray(page, format="yuv420p")
        frame.pts = index * (90000 // self._fps)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


class Tone(_Paced):
    """A 440 Hz tone in 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, rate: int = 48000) -> None:
        super().__init__(50)  # 20 ms frames
        self._rate = rate
        self._samples = rate // 50
        t = np.arange(rate, dtype=np.float64) / rate
        self._second = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16)

    async def recv(self) -> av.AudioFrame:
        index = await self._next()
        offset = (index * self._samples) % self._rate
        chunk = self._second[offset : offset + self._samples].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = index * self._samples
        frame.time_base = fractions.Fraction(1, self._rate)
        return frame


@dataclass
class Reception:
    """What a synthetic participant receives on one slot."""

    kind: str
    frames: int = 0
    first_frame_at: float | None = None
    sizes: set[tuple[int, int]] = field(default_factory=set)
    nonsilent_frames: int = 0
    last: av.VideoFrame | None = None

    def __post_init__(self) -> None:
        self.event = asyncio.Event()


class SyntheticParticipant:
    """An aiortc peer that offers `SLOTS[role]` and counts what it decodes."""

    def __init__(
        self,
        role: Role,
        *,
        send_video: Callable[[], MediaStreamTrack] = MovingPicture,
        send_audio: Callable[[], MediaStreamTrack] = Tone,
        host_addresses: tuple[str, ...] = ("127.0.0.1",),
        decode: bool = True,
    ) -> None:
        self.role = role
        # A browser retries its consent checks; aioice alone gives each 0.5 s and drops
        # the connection after six misses, which a busy load generator's own lateness
        # can cause (the soak saw its teacher drop that way). Peers here are browsers'
        # stand-ins, so they wait as long as the relay does.
        install_consent_hook()
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self._host_addresses = host_addresses
        self._decode = decode
        self.transceivers: dict[Slot, RTCRtpTransceiver] = {}
        self.received: dict[Slot, Reception] = {}
        self.sent_tracks: dict[Slot, MediaStreamTrack] = {}
        self._readers: list[asyncio.Task[None]] = []
        for spec in SLOTS[role]:
            if spec.direction == "sendonly":
                track = send_audio() if spec.kind == "audio" else send_video()
                self.sent_tracks[spec.slot] = track
                self.transceivers[spec.slot] = self.pc.addTransceiver(track, direction="sendonly")
            else:
                self.transceivers[spec.slot] = self.pc.addTransceiver(
                    spec.kind, direction="recvonly"
                )
                self.received[spec.slot] = Reception(spec.kind)

    async def offer(self) -> str:
        with gather_on(self._host_addresses):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        for slot, reception in self.received.items():
            track = self.transceivers[slot].receiver.track
            self._readers.append(asyncio.create_task(self._read(track, reception)))

    async def join(self, gateway: MediaGateway, lesson_id: str, participant_id: str) -> None:
        """Offer straight to a media gateway (a relay, its workers), without signaling,
        and take its answer."""
        offer = await self.offer()
        await self.accept(await gateway.negotiate(lesson_id, participant_id, self.role, offer))

    @classmethod
    async def joined(
        cls,
        gateway: MediaGateway,
        lesson_id: str,
        participant_id: str,
        role: Role,
        kept: list[SyntheticParticipant],
    ) -> SyntheticParticipant:
        """A new participant that offered straight to `gateway` (`join`). It is put in
        `kept` before it offers, so that whoever closes those closes it even if the
        offer fails."""
        peer = cls(role)
        kept.append(peer)
        await peer.join(gateway, lesson_id, participant_id)
        return peer

    async def _read(self, track: MediaStreamTrack, reception: Reception) -> None:
        try:
            while True:
                frame = await track.recv()
                reception.frames += 1
                if reception.first_frame_at is None:
                    reception.first_frame_at = time.monotonic()
                if isinstance(frame, av.VideoFrame):
                    reception.sizes.add((frame.width, frame.height))
                    reception.last = frame
                elif (
                    self._decode
                    and isinstance(frame, av.AudioFrame)
                    and np.abs(frame.to_ndarray()).max() > 500
                ):
                    reception.nonsilent_frames += 1
                reception.event.set()
        except MediaStreamError:
            pass

    async def wait_frames(self, slot: Slot, count: int, timeout: float) -> Reception:
        """Wait until `count` frames were decoded on `slot`, at most `timeout` seconds."""
        reception = self.received[slot]
        async with asyncio.timeout(timeout):
            while reception.frames < count:
                reception.event.clear()
                await reception.event.wait()
        return reception

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        for track in self.sent_tracks.values():
            track.stop()
        await self.pc.close()
