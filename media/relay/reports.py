"""Link reports: what each participant's downlink carries, to whoever listens.

Signaling reads them (`Relay.link_reports()`) to show the teacher how every
classroom receives the lesson and to keep the lesson's delivery timeline. A
reader that lags loses the oldest reports, never holds the relay up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from media.adapter.rtcp import sender_octets
from media.gateway import LinkReport
from media.pipeline.mosaic import Tiles
from media.relay.session import Participant
from media.slots import Slot

# Reports a reader may fall behind by before it loses the oldest.
READER_BACKLOG = 1024


def link_report(
    participant: Participant,
    interval_s: float | None,
    tiles: Tiles | None = None,
    server_load: str = "ok",
) -> LinkReport:
    """`interval_s`: since the previous periodic report, whose counts this one
    takes over; None for a report between them, which repeats the last rate.
    `tiles`: the lesson's mosaic, whose layout a teacher's report carries.
    `server_load`: the relay's own (media.control.overload)."""
    side = participant.sending
    if interval_s is not None:
        sent_octets = 0
        for out in side.outgoing.values():
            octets = sender_octets(out.sender)
            sent_octets += octets - out.octets_at_last_report
            out.octets_at_last_report = octets
        side.sent_kbps = sent_octets * 8 / 1000.0 / interval_s
    estimate = side.downlink.estimate
    previews: dict[str, Any] = {}
    if Slot.CLASSROOMS in side.outgoing and tiles is not None:
        previews = {"previews": tuple(tiles.positions), "preview_columns": tiles.columns}
    return LinkReport(
        lesson_id=participant.lesson_id,
        participant_id=participant.participant_id,
        estimate_kbps=estimate.bitrate_bps / 1000.0,
        sent_kbps=side.sent_kbps,
        loss=estimate.loss,
        rtt_ms=side.downlink.shown_rtt_ms,
        layers={slot.value: out.track.layer_name for slot, out in side.outgoing.items()},
        server_load=server_load,
        **previews,
    )


class LinkReports:
    """The listeners of link reports, each with its own bounded queue."""

    def __init__(self) -> None:
        self._listeners: set[asyncio.Queue[LinkReport]] = set()

    @property
    def listened(self) -> bool:
        return bool(self._listeners)

    def broadcast(self, report: LinkReport) -> None:
        for queue in self._listeners:
            if queue.full():
                queue.get_nowait()  # a reader that lags loses the oldest report
            queue.put_nowait(report)

    def soon(self, participant: Participant, make: Callable[[], LinkReport | None]) -> None:
        """A slot of the participant switched layers: report it now, not at the next
        periodic report. The teacher's page shows it at once, and the lesson's
        timeline (DeliveryChanged, the delivery report) keeps when it happened, not
        up to a report interval later. Switches in one turn of the loop (an
        allocation that moves several slots) make one report."""
        side = participant.sending
        if not self._listeners or side.report_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        side.report_due = True

        def send() -> None:
            side.report_due = False
            report = make()
            if report is not None:
                self.broadcast(report)

        loop.call_soon(send)

    async def stream(self) -> AsyncIterator[LinkReport]:
        queue: asyncio.Queue[LinkReport] = asyncio.Queue(maxsize=READER_BACKLOG)
        self._listeners.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._listeners.discard(queue)
