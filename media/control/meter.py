"""What a layer really costs on the wire, measured from what it sends.

Nominal bitrates say little: a static slide at 5 fps costs a tenth of its
ceiling, a talking head a good part of it. The allocator shares a classroom's
link out by these measured costs. Pure: times are passed in.
"""

from __future__ import annotations

import math

# Per RTP packet on the wire: IPv4 20 + UDP 8 + RTP 12 + SRTP auth tag 10 + header
# extensions (mid, abs-send-time, audio level) about 12 bytes.
PACKET_OVERHEAD_BYTES = 62
# aiortc splits a VP8 frame into packets of at most this much payload.
PAYLOAD_PER_PACKET = 1200


class RateMeter:
    """Exponentially weighted bit rate over roughly `window_s` seconds."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window = window_s
        self._bits = 0.0
        self._since: float | None = None
        self._rate: float | None = None
        self._last: float | None = None
        self._first: float | None = None
        # What the layer cost when it last ran, while a restarted one warms up.
        self._before: float | None = None

    def add(self, payload_bytes: int, now: float) -> None:
        packets = max(1, math.ceil(payload_bytes / PAYLOAD_PER_PACKET))
        if self._last is not None and now - self._last > self._window:
            # A paused layer starts again: measured from now, not over the pause.
            # Folded over it, the first figure came out near zero, the allocator
            # and the pacer took the layer for almost free, and a classroom's
            # camera waited behind its pacer until frames were dropped (freezes
            # of 2 s and more, on a clean 2 Mbit/s link, after each switch up).
            if self._warm():
                self._before = self._rate
            self._bits = 0.0
            self._rate = None
            self._since = self._first = None
        self._bits += 8 * (payload_bytes + packets * PACKET_OVERHEAD_BYTES)
        self._last = now
        if self._since is None:
            self._since = self._first = now
        self._fold(now)

    def _fold(self, now: float) -> None:
        assert self._since is not None
        span = now - self._since
        # Fold at most ten times a window: smooth enough, cheap enough.
        if span < self._window / 10:
            return
        sample = self._bits / span
        weight = min(1.0, span / self._window)
        self._rate = sample if self._rate is None else self._rate + weight * (sample - self._rate)
        self._bits = 0.0
        self._since = now

    def _warm(self) -> bool:
        # A layer starts with a keyframe: its first fraction of a second says little
        # of what it costs. A figure comes once a whole window was seen.
        return (
            self._rate is not None
            and self._first is not None
            and self._last is not None
            and self._last - self._first >= self._window
        )

    def last_kbps(self) -> float | None:
        """The last rate measured, however old (a paused layer's best guess)."""
        if self._warm() and self._rate is not None:
            return self._rate / 1000
        return self._before / 1000 if self._before is not None else None

    def kbps(self, now: float) -> float | None:
        """The recent rate, or None if unknown (not sending lately, or only just started)."""
        if self._last is None or now - self._last > self._window or not self._warm():
            return None
        return self.last_kbps()
