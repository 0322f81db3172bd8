"""Spreading a participant's video over time, and keeping resends within a budget.

aiortc sends every packet of a frame back to back. A 720p slide's keyframe is
tens of kilobytes: into a 256 kbit/s rural link whose modem buffers a few hundred
milliseconds, a burst like that overflows the queue, and the packets lost with
it include the teacher's voice. The pacer lets video out at a rate just above
what the participant's link is estimated to carry; audio is never held back but
counts against the same budget, so video yields to it.

Resends (NACK, RFC 4585 §6.2.1) help only when they arrive in time and do not
crowd out fresh media: `ResendBudget` allows a share of the rate, and packets
older than the receiver can still use are not resent.

A probe's padding (`PaddingBudget`) fills what the media leaves of the rate.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

Clock = Callable[[], float]

# Video leaves at what the link is thought to carry, or at what was chosen to be
# sent when that is more (a probe, the floor of audio and slides), and a little
# over: a keyframe or a new slide is spread at that rate rather than poured into a
# rural modem's few hundred milliseconds of buffer. Paced 15 % over the estimate,
# the page turns of a satellite classroom's slides overflowed it and took the
# teacher's voice with them.
PACING_FACTOR = 1.05
MIN_PACING_BPS = 100_000


def pacing_rate(estimate_bps: float, chosen_bps: float) -> float:
    """The rate video is paced at: the estimate, or what was chosen to be sent
    (layers and padding) when that is more, a little over."""
    return max(MIN_PACING_BPS, max(estimate_bps, chosen_bps) * PACING_FACTOR)


# What the pacer sees is an SRTP packet; on the wire it gains UDP and IPv4 headers.
UDP_IP_BYTES = 28
# What went out is measured over this long: long enough that one keyframe burst,
# absorbed by a modem's queue, does not pass for a rate the link carries.
SENT_WINDOW_S = 2.0


class Pacer:
    """A token bucket in bytes that video waits on and audio only draws from.

    It counts what the link carries: each SRTP packet with its UDP and IP headers
    (a sixth of a small audio packet)."""

    def __init__(self, rate_bps: float, clock: Clock, burst_s: float = 0.03) -> None:
        self._clock = clock
        self._burst_s = burst_s
        self.rate_bps = rate_bps
        self._capacity = self._capacity_at(rate_bps)
        self._tokens = self._capacity
        self._at = clock()
        self._lock = asyncio.Lock()
        self.waited_s = 0.0
        # Bytes let out so far, on the wire, and samples of that count for `sent_bps`.
        self.sent_bytes = 0
        self._sent_samples: deque[tuple[float, int]] = deque()

    def _capacity_at(self, rate_bps: float) -> float:
        # At least two full packets, so that pacing never splits a small frame.
        return max(2 * 1300.0, rate_bps / 8 * self._burst_s)

    def set_rate(self, rate_bps: float) -> None:
        self._refill()
        self.rate_bps = rate_bps
        self._capacity = self._capacity_at(rate_bps)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self.rate_bps / 8)
        self._at = now

    def consume(self, size: int) -> None:
        """Audio and control: sent at once, paid for (the balance may go below zero)."""
        size += UDP_IP_BYTES
        self._refill()
        self._tokens -= size
        self.sent_bytes += size

    def sent_bps(self) -> float | None:
        """What went out (audio, video and resends) over the last `SENT_WINDOW_S`.

        Sampled by the caller's ticks, so that sending costs one addition a packet.
        None until a window has passed.
        """
        now = self._clock()
        self._sent_samples.append((now, self.sent_bytes))
        while len(self._sent_samples) > 2 and now - self._sent_samples[1][0] >= SENT_WINDOW_S:
            self._sent_samples.popleft()
        since, before = self._sent_samples[0]
        if now - since < SENT_WINDOW_S:
            return None
        return (self.sent_bytes - before) * 8 / (now - since)

    def delay_for(self, size: int) -> float:
        """How long a packet of `size` bytes on the wire must wait now (pure; for
        tests and `wait`)."""
        self._refill()
        missing = size - self._tokens
        return 0.0 if missing <= 0 else missing * 8 / self.rate_bps

    def take_now(self, sizes: Sequence[int]) -> bool:
        """Video sent at once: the tokens for packets of `sizes`, taken only if nobody
        waits and the bucket holds them all now (what `wait` would let out at once)."""
        if self._lock.locked():
            return False
        need = sum(sizes) + UDP_IP_BYTES * len(sizes)
        self._refill()
        if self._tokens < need:
            return False
        self._tokens -= need
        self.sent_bytes += need
        return True

    async def wait(self, size: int) -> None:
        """Video: wait for the tokens, in arrival order, then pay."""
        size += UDP_IP_BYTES
        if not self._lock.locked():
            # Nobody is waiting: a packet within the budget goes at once (most do).
            self._refill()
            if self._tokens >= size:
                self._tokens -= size
                self.sent_bytes += size
                return
        async with self._lock:
            delay = self.delay_for(size)
            if delay > 0:
                self.waited_s += delay
                await asyncio.sleep(delay)
                self._refill()
            self._tokens -= size
            self.sent_bytes += size


class ResendBudget:
    """How many bytes of resends a participant may send, and which packets are still worth it."""

    def __init__(
        self, share: float, clock: Clock, max_age_s: float = 1.0, min_bps: float = 16_000
    ) -> None:
        self.share = share
        self.max_age_s = max_age_s
        self._min_bps = min_bps
        self._clock = clock
        self.rate_bps = min_bps
        self._tokens = 0.0
        self._at = clock()
        self.resent = 0
        self.refused_old = 0
        self.refused_budget = 0

    def set_rate(self, media_bps: float) -> None:
        self.rate_bps = max(self._min_bps, media_bps * self.share)

    def allow(self, size: int, age_s: float) -> bool:
        if age_s > self.max_age_s:
            self.refused_old += 1
            return False
        now = self._clock()
        # Half a second of budget at most: a burst of NACKs after a loss spike is
        # answered in part, and a keyframe request follows for the rest.
        cap = self.rate_bps / 8 * 0.5
        self._tokens = min(cap, self._tokens + (now - self._at) * self.rate_bps / 8)
        self._at = now
        if self._tokens < size:
            self.refused_budget += 1
            return False
        self._tokens -= size
        self.resent += 1
        return True


class PaddingBudget:
    """Padding a probe asks for (media.control.allocator): `rate_bps` of it, owed from tick to
    tick and let out where the pacer has tokens to spare, behind the media.

    At most `max_owed_s` of it is owed: padding that could not go out (the media
    took the tokens) is not made up for later in a burst. Yet two packets always may
    be, one due and the next one partly: below about 48 kbit/s, 50 ms of padding is
    less than one packet of 300 bytes, and a small probe's padding (34 kbit/s,
    toward the camera's next layer) never went out at all; capped at one packet,
    what accrued past it between two polls was lost, a sixth of the rate.
    """

    def __init__(self, clock: Clock, max_owed_s: float = 0.05) -> None:
        self._clock = clock
        self._max_owed_s = max_owed_s
        self.rate_bps = 0.0
        self._owed = 0.0
        self._at = clock()
        # The size of the packets it is paid in (the last `due` asked about).
        self._packet_bytes = 0
        self.sent_bytes = 0

    def set_rate(self, rate_bps: float) -> None:
        self._settle()
        self.rate_bps = max(0.0, rate_bps)
        if self.rate_bps == 0:
            self._owed = 0.0

    def _settle(self) -> None:
        now = self._clock()
        cap = max(self.rate_bps / 8 * self._max_owed_s, 2.0 * self._packet_bytes)
        self._owed = min(cap, self._owed + (now - self._at) * self.rate_bps / 8)
        self._at = now

    def due(self, packet_bytes: int) -> int:
        """How many padding packets of `packet_bytes` (on the wire) are owed now."""
        self._packet_bytes = packet_bytes
        self._settle()
        return int(self._owed // packet_bytes)

    def paid(self, count: int, packet_bytes: int) -> None:
        self._owed = max(0.0, self._owed - count * packet_bytes)
        self.sent_bytes += count * packet_bytes
