"""What a participant sends cannot end its connection.

aiortc's RTP and RTCP parsers raise ValueError on a packet they cannot read, and the
DTLS transport drops such a packet. A few raise `struct.error` instead, which its
receive loop does not expect: a header extension of the wrong size for what its id
was negotiated to carry (abs-send-time, toffset, audio level, transport-wide
sequence number), a REMB that lists more SSRCs than it holds (found by
scripts/fuzz_rtp.py). The loop logs the traceback and ends: the participant's
receivers stop, its senders hear no more feedback, and the relay keeps a connection
that carries nothing until ICE consent runs out. `guard_transport` wraps the
transport's two handlers so that such a packet is dropped like any other it cannot
parse.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)
_MARK = "_classroom_guarded"


def guard_transport(dtls: Any) -> None:
    """Drop what aiortc cannot parse on `dtls` (an RTCDtlsTransport) rather than let it
    end the transport's receive loop (idempotent). Install after any other wrapper of
    its handlers (media.adapter.twcc), so that it guards them too."""
    if getattr(dtls, _MARK, False):
        return
    handle_rtp: Callable[..., Awaitable[None]] = dtls._handle_rtp_data
    handle_rtcp: Callable[[bytes], Awaitable[None]] = dtls._handle_rtcp_data

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        try:
            await handle_rtp(data, arrival_time_ms=arrival_time_ms)
        except struct.error as exc:
            logger.debug("RTP packet dropped, it does not parse: %s", exc)

    async def handle_rtcp_data(data: bytes) -> None:
        try:
            await handle_rtcp(data)
        except struct.error as exc:
            logger.debug("RTCP packet dropped, it does not parse: %s", exc)

    # The receive loop calls `self._handle_rtp_data(...)`: instance attributes
    # shadow the methods for this transport only.
    dtls._handle_rtp_data = handle_rtp_data
    dtls._handle_rtcp_data = handle_rtcp_data
    setattr(dtls, _MARK, True)
