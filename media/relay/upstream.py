"""An edge relay's pull of one lesson from the origin: one peer connection, every layer.

The edge offers one `recvonly` m-line per line of `media.relay.feed.FEED`; the
origin answers with a sender per line, each bound to that layer of the lesson's
source (`Relay.negotiate_feed`). Each receiver's frames go, still encoded, to a
`RelayedLayer` (media.adapter.encoded, media.pipeline.relayed); the edge's own
relay routes its classrooms' slots to these sources (`Relay.set_upstream`) and
each classroom's allocator chooses among their layers, as at the origin. The
origin sends only the layers some classroom of the edge follows (`on_wanted`, the
edge link's `want`); a layer a classroom switches to starts at its next keyframe,
asked for at once.

Whatever number of classrooms the edge serves, the origin sees one connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCRtpReceiver, RTCRtpSender, RTCSessionDescription

from media.adapter.encoded import request_keyframe, tap_encoded
from media.adapter.hooks import gather_on
from media.adapter.peer import new_peer
from media.gateway import MediaError
from media.pipeline.relayed import RelayedLayer, RelayedSource
from media.relay.feed import FEED
from media.settings import RelaySettings
from media.slots import Slot

logger = logging.getLogger(__name__)

# What the origin's layers are: VP8 (with its resends) and Opus, nothing to negotiate.
_CODECS = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}


class Upstream:
    """One lesson's feed from the origin (see the module docstring)."""

    def __init__(self, lesson_id: str, settings: RelaySettings, clock: Callable[[], float]) -> None:
        self.lesson_id = lesson_id
        self._settings = settings
        self.pc = new_peer(settings.stun_servers)
        self._asking: set[asyncio.Task[None]] = set()
        # Called with the FEED lines some classroom follows, after each change of them.
        self.on_wanted: Callable[[tuple[int, ...]], None] | None = None
        self._wanted_due = False
        self.lines: list[RelayedLayer] = []
        layers: dict[Slot, list[RelayedLayer]] = {}
        for line in FEED:
            transceiver = self.pc.addTransceiver(line.kind, direction="recvonly")
            codecs = RTCRtpSender.getCapabilities(line.kind).codecs
            wanted = _CODECS[line.kind]
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in wanted])
            receiver = transceiver.receiver
            layer = RelayedLayer(
                line.layer,
                line.kind,
                clock,
                lambda receiver=receiver: self._ask_keyframe(receiver),  # type: ignore[misc]
                settings.keyframe_min_interval_s,
                line.layer_spec,
            )
            tap_encoded(receiver, layer.receive)
            layer.on_demand = self._demand_changed
            self.lines.append(layer)
            layers.setdefault(line.slot, []).append(layer)
        self.sources: dict[Slot, RelayedSource] = {
            slot: RelayedSource(found[0].kind, found) for slot, found in layers.items()
        }

    async def offer(self) -> str:
        """The edge's offer to the origin (gathered on the relay's addresses)."""
        description = await self.pc.createOffer()
        with gather_on(self._settings.host_addresses):
            await self.pc.setLocalDescription(description)
        sdp: str = self.pc.localDescription.sdp
        return sdp

    async def accept(self, answer_sdp: str) -> None:
        """Apply the origin's answer: the layers start to flow."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        except Exception as exc:  # aiortc raises ValueError, OperationError, ...
            raise MediaError(f"the origin's answer cannot be used: {exc}") from None

    def wanted(self) -> tuple[int, ...]:
        """The FEED lines some classroom of this edge follows (or awaits) now."""
        return tuple(i for i, layer in enumerate(self.lines) if layer.active)

    def _demand_changed(self) -> None:
        # A route moves many slots at once: one message for all of them.
        if self._wanted_due or self.on_wanted is None:
            return
        self._wanted_due = True

        def report() -> None:
            self._wanted_due = False
            if self.on_wanted is not None:
                self.on_wanted(self.wanted())

        asyncio.get_running_loop().call_soon(report)

    @property
    def failed(self) -> bool:
        return self.pc.connectionState in ("failed", "closed")

    def _ask_keyframe(self, receiver: RTCRtpReceiver) -> None:
        task = asyncio.create_task(request_keyframe(receiver), name="edge-pli")
        self._asking.add(task)
        task.add_done_callback(self._asking.discard)

    async def close(self) -> None:
        for source in self.sources.values():
            source.close()
        for task in list(self._asking):
            task.cancel()
        await self.pc.close()
