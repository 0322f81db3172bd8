"""The baseline the benchmarks compare against: stock aiortc, one encoder per classroom.

aiortc's MediaRelay hands every sender the teacher's decoded frames and each
sender encodes them for its own classroom, adapting its encoder to that
classroom's REMB (clamped to 250 kbit/s..1.5 Mbit/s for VP8), resending every
NACKed packet. It speaks the same MediaGateway interface as the real relay, so
the same server, pages and measurements run on both.

    python -m scripts.naive_relay --host 198.18.0.1 --port 8000 --data-dir ./naive-data
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from classroom.roles import Role
from media.adapter.hooks import gather_on
from media.gateway import LinkReport, MediaError
from media.slots import SLOTS, Slot

_FROM_TEACHER = {
    Slot.TEACHER_CAMERA: Slot.CAMERA,
    Slot.TEACHER_AUDIO: Slot.MICROPHONE,
    Slot.SLIDES: Slot.SCREEN,
}


class NaiveRelay:
    """A MediaGateway on aiortc's MediaRelay (no stage, no reports: a baseline)."""

    def __init__(self, host_addresses: tuple[str, ...] = ()) -> None:
        self._hosts = host_addresses
        self._relay = MediaRelay()
        self._teacher: dict[Slot, MediaStreamTrack] = {}
        self._pcs: dict[tuple[str, str], RTCPeerConnection] = {}

    def has_peer(self, lesson_id: str, participant_id: str) -> bool:
        return (lesson_id, participant_id) in self._pcs

    async def negotiate(
        self, lesson_id: str, participant_id: str, role: Role, sdp: str, *, whip: bool = False
    ) -> str:
        if whip:
            raise MediaError("the naive relay takes no WHIP or WHEP offers")
        old = self._pcs.pop((lesson_id, participant_id), None)
        if old is not None:
            await old.close()
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self._pcs[(lesson_id, participant_id)] = pc
        transceivers = []
        for spec in SLOTS[role]:
            incoming = spec.direction == "sendonly"
            t = pc.addTransceiver(spec.kind, direction="recvonly" if incoming else "sendonly")
            wanted = ("video/vp8", "video/rtx") if spec.kind == "video" else ("audio/opus",)
            caps = RTCRtpSender.getCapabilities(spec.kind).codecs
            t.setCodecPreferences([c for c in caps if c.mimeType.lower() in wanted])
            source = _FROM_TEACHER.get(spec.slot)
            if source is not None and source in self._teacher:
                t.sender.replaceTrack(self._relay.subscribe(self._teacher[source]))
            transceivers.append((spec, t))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        except Exception as exc:
            raise MediaError(f"the offer cannot be used: {exc}") from None
        with gather_on(self._hosts):
            await pc.setLocalDescription(await pc.createAnswer())
        if role is Role.TEACHER:
            for spec, t in transceivers:
                if spec.direction == "sendonly":
                    self._teacher[spec.slot] = t.receiver.track
        return str(pc.localDescription.sdp)

    async def set_stage(self, lesson_id: str, classroom_id: str | None) -> None:
        return None

    async def cover_screen(self, lesson_id: str, covered: bool) -> None:
        # The baseline sends everyone everything, as aiortc's MediaRelay does.
        return None

    async def disconnect(self, lesson_id: str, participant_id: str) -> None:
        pc = self._pcs.pop((lesson_id, participant_id), None)
        if pc is not None:
            await pc.close()

    async def end_lesson(self, lesson_id: str) -> None:
        for key in [k for k in self._pcs if k[0] == lesson_id]:
            await self._pcs.pop(key).close()

    def link_reports(self) -> AsyncIterator[LinkReport]:
        return self._never()

    async def _never(self) -> AsyncIterator[LinkReport]:
        await asyncio.Event().wait()
        yield  # type: ignore[misc]  # pragma: no cover

    async def close(self) -> None:
        for pc in self._pcs.values():
            await pc.close()
        self._pcs.clear()


def main() -> None:
    from signaling.cli import serve
    from signaling.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    settings = Settings(host=args.host, port=args.port, data_dir=args.data_dir)
    serve(settings, NaiveRelay(tuple(settings.ice_host_addresses)))


if __name__ == "__main__":
    main()
