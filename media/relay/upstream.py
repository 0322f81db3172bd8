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

from aiortc import RTCRtpReceiver

from media.adapter.encoded import request_keyframe, tap_encoded
from media.pipeline.relayed import RelayedLayer, RelayedSource
from media.relay.backbone import BackbonePeer
from media.relay.feed import FEED
from media.settings import RelaySettings
from media.slots import Slot

logger = logging.getLogger(__name__)


class Upstream(BackbonePeer):
    """One lesson's feed from the origin (see the module docstring)."""

    def __init__(self, lesson_id: str, settings: RelaySettings, clock: Callable[[], float]) -> None:
        super().__init__(settings)
        self.lesson_id = lesson_id
        self._asking: set[asyncio.Task[None]] = set()
        # Called with the FEED lines some classroom follows, after each change of them.
        self.on_wanted: Callable[[tuple[int, ...]], None] | None = None
        self._wanted_due = False
        self.lines: list[RelayedLayer] = []
        layers: dict[Slot, list[RelayedLayer]] = {}
        for line in FEED:
            receiver = self.add_line(line.kind, "recvonly").receiver
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
