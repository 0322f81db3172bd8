"""RED (RFC 2198): each audio packet also carries the previous one(s).

A classroom that loses one packet in ten still has every 40 ms of the
teacher's voice when the next packet arrives, at the price of sending each
Opus payload twice. Chromium offers `red/48000/2` with `fmtp 111/111` (RED
carrying Opus) and its NetEq splits the blocks back out; Opus's own in-band
FEC (RFC 6716 §2.1.7) covers a single loss at lower quality, RED at full
quality and for `distance` losses in a row.

Wire format (RFC 2198 §3), redundant blocks oldest first, primary last:

    redundant header: F=1 | block PT (7) | timestamp offset (14) | block length (10)
    primary header:   F=0 | block PT (7)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from media.wire.rates import AUDIO_CLOCK_RATE

# RFC 2198 §3: 14 bits of timestamp offset, 10 bits of block length.
MAX_OFFSET = (1 << 14) - 1
MAX_BLOCK = (1 << 10) - 1


@dataclass(frozen=True)
class Block:
    payload_type: int
    timestamp: int
    data: bytes


def pack(payload_type: int, timestamp: int, primary: bytes, redundant: list[Block]) -> bytes:
    """One RED payload: `redundant` (oldest first) that still fits, then `primary`.

    A redundant block is left out when the header cannot express it (too old,
    too long) or when it does not precede the primary.
    """
    usable = [
        b
        for b in redundant
        if 0 < (timestamp - b.timestamp) & 0xFFFFFFFF <= MAX_OFFSET and len(b.data) <= MAX_BLOCK
    ]
    header = bytearray()
    for b in usable:
        offset = (timestamp - b.timestamp) & 0xFFFFFFFF
        word = (1 << 31) | (b.payload_type << 24) | (offset << 10) | len(b.data)
        header += word.to_bytes(4, "big")
    header.append(payload_type & 0x7F)
    return bytes(header) + b"".join(b.data for b in usable) + primary


def parse(payload: bytes, timestamp: int) -> list[Block]:
    """The blocks of a RED payload, oldest first; the last one is the primary."""
    headers: list[tuple[int, int, int]] = []
    pos = 0
    while True:
        if pos >= len(payload):
            raise ValueError("RED payload ends inside its headers")
        if not payload[pos] & 0x80:
            primary_type = payload[pos] & 0x7F
            pos += 1
            break
        if pos + 4 > len(payload):
            raise ValueError("RED payload ends inside a block header")
        word = int.from_bytes(payload[pos : pos + 4], "big")
        headers.append(((word >> 24) & 0x7F, (word >> 10) & MAX_OFFSET, word & MAX_BLOCK))
        pos += 4
    blocks = []
    for payload_type, offset, length in headers:
        if pos + length > len(payload):
            raise ValueError("a RED block runs past the end of the payload")
        data = payload[pos : pos + length]
        blocks.append(Block(payload_type, (timestamp - offset) & 0xFFFFFFFF, data))
        pos += length
    blocks.append(Block(primary_type, timestamp, payload[pos:]))
    return blocks


class RedEncoder:
    """Packs pre-encoded Opus packets into RED, one sender's worth of history.

    Speaks aiortc's encoder interface in packet mode (`pack(packet) -> (payloads,
    timestamp)`); `distance` is how many earlier packets ride along (0: plain
    Opus inside RED, which Chromium also accepts).
    """

    def __init__(self, opus_payload_type: int, distance: int = 1) -> None:
        self.opus_payload_type = opus_payload_type
        self.distance = distance
        self._history: deque[Block] = deque(maxlen=max(distance, 1))

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        timestamp = int(packet.pts * packet.time_base / Fraction(1, AUDIO_CLOCK_RATE)) & 0xFFFFFFFF
        data = bytes(packet)
        redundant = list(self._history)[-self.distance :] if self.distance else []
        payload = pack(self.opus_payload_type, timestamp, data, redundant)
        self._history.append(Block(self.opus_payload_type, timestamp, data))
        return [payload], timestamp

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise RuntimeError("the relay sends encoded packets; RED only packs them")
