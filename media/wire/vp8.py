"""VP8 as RTP carries it (RFC 7741) and as a keyframe announces its size (RFC 6386).

A layer's frame is cut once (`chunks`) for all of its subscribers; each sender then
puts its own payload descriptor (`descriptor`) in front of every piece.
"""

from __future__ import annotations

# aiortc's VP8 payloads are at most 1300 bytes; ours too, a 4-byte descriptor
# (RFC 7741 §4.2: X and I set, a 15-bit PictureID) and up to 1296 bytes of frame.
PAYLOAD_BYTES = 1300
DESCRIPTOR_BYTES = 4
CHUNK_BYTES = PAYLOAD_BYTES - DESCRIPTOR_BYTES


def chunks(frame: bytes) -> tuple[bytes, ...]:
    """A VP8 frame cut into the pieces its RTP payloads carry after their descriptors.

    The same for every subscriber of a layer, so a layer's packet cuts it once
    (media.pipeline.fanout.SenderPacket) and each sender only puts its own
    descriptor in front.
    """
    return tuple(frame[start : start + CHUNK_BYTES] for start in range(0, len(frame), CHUNK_BYTES))


def descriptors(picture_id: int) -> tuple[bytes, bytes]:
    """The payload descriptors (RFC 7741 §4.2) of a frame's first packet and of the
    others: X set, S set on the first only, partition 0, I set with a 15-bit PictureID."""
    pid = (0x80, 0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF)
    return bytes((0x90, *pid)), bytes((0x80, *pid))


def is_keyframe(frame: bytes) -> bool:
    """Whether a VP8 frame is a keyframe: bit 0 of its frame tag is 0 (RFC 6386 §9.1)."""
    return bool(frame) and not frame[0] & 1


def keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe's header (RFC 6386 §9.1), else None."""
    if len(payload) < 10 or payload[0] & 1:  # bit 0 of the frame tag: 1 = interframe
        return None
    if payload[3:6] != b"\x9d\x01\x2a":  # the keyframe start code
        return None
    width = int.from_bytes(payload[6:8], "little") & 0x3FFF
    height = int.from_bytes(payload[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None
