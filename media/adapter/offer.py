"""Checking a participant's offer against its role's fixed slots, before aiortc sees it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiortc import RTCRtpCodecParameters, sdp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

from classroom.roles import Role
from media.gateway import MediaError
from media.slots import SLOTS, Direction, Kind, Slot, SlotSpec

# The relay forwards packets it encoded itself, so the receiver must take these.
REQUIRED_CODEC = {"video": "VP8", "audio": "opus"}


@dataclass(frozen=True)
class OfferedSlot:
    spec: SlotSpec
    # What the offer's m-line for this slot lists (RED and transport-cc, for two,
    # are looked up there).
    codecs: list[RTCRtpCodecParameters]
    extensions: list[RTCRtpHeaderExtensionParameters]


def check_offer(offer_sdp: str, role: Role) -> tuple[OfferedSlot, ...]:
    """The role's slots, if the offer has one matching m-line per slot, in order.

    Raises MediaError with a message a user (or a client developer) can act on.
    """
    return check_lines(offer_sdp, SLOTS[role], role.value)


def check_lines(offer_sdp: str, specs: tuple[SlotSpec, ...], who: str) -> tuple[OfferedSlot, ...]:
    """`specs`, if the offer has one matching m-line for each, in order (`who` names
    the offerer in the message: a role, or an edge relay's pull, media.relay.feed)."""
    try:
        description = sdp.SessionDescription.parse(offer_sdp)
    except Exception as exc:  # aiortc's parser raises whatever it trips on
        raise MediaError(f"the offer is not a valid SDP description ({exc})") from None
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if len(media) != len(specs) or len(media) != len(description.media):
        expected = ", ".join(f"{s.slot.value} ({s.kind})" for s in specs)
        raise MediaError(
            f"a {who} offer needs {len(specs)} media sections in this order: "
            f"{expected}; this one has {len(description.media)}"
        )
    _check_bundle(description, media)
    for index, (section, spec) in enumerate(zip(media, specs, strict=True)):
        where = f"media section {index + 1} ({spec.slot.value})"
        if section.kind != spec.kind:
            raise MediaError(f"{where} must be {spec.kind}, not {section.kind}")
        if section.direction not in (spec.direction, "sendrecv"):
            raise MediaError(f"{where} must be {spec.direction}, not {section.direction}")
        codec = REQUIRED_CODEC[spec.kind]
        if not any(c.name.lower() == codec.lower() for c in section.rtp.codecs):
            raise MediaError(f"{where} must offer the {codec} codec")
        if section.ice is None or section.dtls is None:
            raise MediaError(f"{where} lacks ICE or DTLS parameters")
    return tuple(
        OfferedSlot(spec, section.rtp.codecs, section.rtp.headerExtensions)
        for spec, section in zip(specs, media, strict=True)
    )


# What a WHIP client may send (RFC 9725 ingest): the ladder decodes it and encodes
# VP8 itself, so H.264 (OBS's default, and hardware encoders') is as good as VP8.
INGEST_VIDEO_CODECS = ("VP8", "H264")
# Where a WHEP client's m-lines go, by kind, in the offer's order: a player that
# asks for one video and one audio gets the teacher; more lines get more slots.
_BY_KIND_OUT = {
    "video": (Slot.TEACHER_CAMERA, Slot.SLIDES, Slot.STAGE_VIDEO),
    "audio": (Slot.TEACHER_AUDIO, Slot.STAGE_AUDIO),
}
_BY_KIND_IN = {"video": (Slot.CAMERA,), "audio": (Slot.MICROPHONE,)}


def check_by_kind(offer_sdp: str, role: Role) -> tuple[OfferedSlot, ...]:
    """A WHIP or WHEP client's offer, its m-lines matched to slots by kind.

    Such a client knows nothing of our fixed layout: a WHIP publisher (the teacher)
    sends a camera and a microphone in any order (RFC 9725 §4.2), a WHEP player
    asks for a video and an audio. The teacher's lines feed the camera and
    microphone; an observer's take, in order, the teacher's camera, the slides and
    the stage's video, and the teacher's audio and the stage's. An offer in the
    observer's own full layout (docs/protocol.md) is taken as it is.
    """
    if role is Role.OBSERVER:
        with contextlib.suppress(MediaError):
            return check_offer(offer_sdp, role)
    if role is Role.CLASSROOM:
        raise MediaError("WHIP and WHEP are for the teacher and observers")
    try:
        description = sdp.SessionDescription.parse(offer_sdp)
    except Exception as exc:  # aiortc's parser raises whatever it trips on
        raise MediaError(f"the offer is not a valid SDP description ({exc})") from None
    publishing = role is Role.TEACHER
    table = _BY_KIND_IN if publishing else _BY_KIND_OUT
    direction: Direction = "sendonly" if publishing else "recvonly"
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if not media or len(media) != len(description.media):
        raise MediaError("the offer needs audio or video media sections, and nothing else")
    if publishing and sorted(m.kind for m in media) != ["audio", "video"]:
        raise MediaError("a WHIP offer needs one video (camera) and one audio (microphone)")
    _check_bundle(description, media)
    taken = {"audio": 0, "video": 0}
    offered = []
    for index, section in enumerate(media):
        slots = table[section.kind]
        if taken[section.kind] >= len(slots):
            raise MediaError(f"at most {len(slots)} {section.kind} media sections, please")
        kind: Kind = "video" if section.kind == "video" else "audio"
        spec = SlotSpec(slots[taken[kind]], kind, direction)
        taken[section.kind] += 1
        where = f"media section {index + 1} ({section.kind})"
        if section.direction not in (direction, "sendrecv"):
            raise MediaError(f"{where} must be {direction}, not {section.direction}")
        codecs = INGEST_VIDEO_CODECS if publishing and section.kind == "video" else None
        wanted = codecs or (REQUIRED_CODEC[section.kind],)
        names = {c.name.lower() for c in section.rtp.codecs}
        if not names & {w.lower() for w in wanted}:
            raise MediaError(f"{where} must offer {' or '.join(wanted)}")
        if section.ice is None or section.dtls is None:
            raise MediaError(f"{where} lacks ICE or DTLS parameters")
        offered.append(OfferedSlot(spec, section.rtp.codecs, section.rtp.headerExtensions))
    return tuple(offered)


def _check_bundle(description: sdp.SessionDescription, media: list[sdp.MediaDescription]) -> None:
    # Every connection is bundled on one transport (media.adapter.peer): a section
    # without a mid, or left out of the BUNDLE group, gets no transport in aiortc,
    # which then fails on its answer and on closing. WHIP clients bundle too (RFC
    # 9725 §4.2).
    mids = [section.rtp.muxId for section in media]
    if not all(mids) or len(set(mids)) != len(mids):
        raise MediaError("every media section needs its own a=mid")
    bundles = [g for g in description.group if g.semantic == "BUNDLE"]
    if len(bundles) != 1 or sorted(bundles[0].items) != sorted(mids):
        raise MediaError("the offer must bundle every media section in one BUNDLE group")
