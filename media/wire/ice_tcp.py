"""ICE over TCP on the wire: RFC 4571 framing and the relay's passive candidate.

On a TCP connection ICE carries what would be datagrams (STUN, DTLS, SRTP, SRTCP)
one after another, each preceded by its length in two bytes (RFC 4571 §2, as
RFC 6544 §3 requires). The relay only listens: its candidate is `tcptype passive`
(RFC 6544 §4.5), at one port for every peer, and browsers connect to it from
their `tcptype active` candidates (port 9, as §4.5 says an active one is written).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# The length is two bytes: no frame carries more.
MAX_FRAME = 0xFFFF


def frame(packet: bytes) -> bytes:
    """`packet` with its RFC 4571 length in front."""
    if len(packet) > MAX_FRAME:
        raise ValueError(f"a frame carries at most {MAX_FRAME} bytes, not {len(packet)}")
    return len(packet).to_bytes(2, "big") + packet


class Deframer:
    """Cuts a TCP byte stream back into the packets it carries (RFC 4571 §2).

    TCP delivers bytes in whatever pieces the network made: a packet may come in
    several reads, a read may hold several packets. What is not yet a whole packet
    stays buffered (at most one frame's worth, 64 KiB).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        packets = []
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + length:
                break
            packets.append(bytes(self._buffer[2 : 2 + length]))
            del self._buffer[: 2 + length]
        return packets

    @property
    def pending(self) -> int:
        """Bytes received that are not yet a whole packet."""
        return len(self._buffer)


# Candidate priority (RFC 8445 §5.1.2.1): type preference << 24, local preference << 8,
# 256 - component. RFC 6544 §4.2 asks UDP to be preferred: media over TCP stalls on
# every lost segment (head-of-line blocking). Browsers rank TURN relays 2 (UDP), 1
# (TCP) and 0 (TLS), far below any UDP path to the relay (host 126, srflx 100), so
# type preference 1 with the highest local preference puts the pair with this
# candidate after every UDP pair, TURN over UDP included, and before TURN over TCP
# and TLS, which carry the same TCP stream through one more hop.
TYPE_PREFERENCE = 1
# RFC 6544 §4.2: local preference = 2^13 * direction-pref + other-pref; a passive
# host candidate's direction-pref is 4 (active 6, simultaneous-open 2).
DIRECTION_PREFERENCE_PASSIVE = 4
OTHER_PREFERENCE = (1 << 13) - 1


def passive_priority(component: int) -> int:
    local = (DIRECTION_PREFERENCE_PASSIVE << 13) + OTHER_PREFERENCE
    return (TYPE_PREFERENCE << 24) + (local << 8) + (256 - component)


@dataclass(frozen=True)
class PassiveCandidate:
    """The relay's TCP host candidate on `address`:`port` (RFC 6544 §4.5)."""

    address: str
    port: int
    component: int = 1

    @property
    def foundation(self) -> str:
        # Equal for candidates of the same type, base and transport (RFC 8445 §5.1.1.3).
        key = f"host|tcp|{self.address}".encode()
        return hashlib.md5(key, usedforsecurity=False).hexdigest()[:8]

    def sdp(self) -> str:
        """The candidate as `a=candidate:` writes it, without that prefix (RFC 6544 §4.5)."""
        return (
            f"{self.foundation} {self.component} tcp {passive_priority(self.component)}"
            f" {self.address} {self.port} typ host tcptype passive"
        )


def local_ufrag(username: str) -> str | None:
    """Whose session a connectivity check is for: the receiver's ufrag, before the
    colon of the check's USERNAME (RFC 8445 §7.2.2). None if it is not of that form."""
    ours, colon, theirs = username.partition(":")
    if not colon or not ours or not theirs:
        return None
    return ours
