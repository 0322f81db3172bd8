"""Checking a participant's offer against its role's fixed slots, before aiortc sees it."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCRtpCodecParameters, sdp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

from classroom.roles import Role
from media.gateway import MediaError
from media.slots import SLOTS, SlotSpec

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
    try:
        description = sdp.SessionDescription.parse(offer_sdp)
    except Exception as exc:  # aiortc's parser raises whatever it trips on
        raise MediaError(f"the offer is not a valid SDP description ({exc})") from None
    specs = SLOTS[role]
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if len(media) != len(specs) or len(media) != len(description.media):
        expected = ", ".join(f"{s.slot.value} ({s.kind})" for s in specs)
        raise MediaError(
            f"a {role.value} offer needs {len(specs)} media sections in this order: "
            f"{expected}; this one has {len(description.media)}"
        )
    # Every connection is bundled on one transport (media.adapter.peer): a section
    # without a mid, or left out of the BUNDLE group, gets no transport in aiortc,
    # which then fails on its answer and on closing.
    mids = [section.rtp.muxId for section in media]
    if not all(mids) or len(set(mids)) != len(mids):
        raise MediaError("every media section needs its own a=mid")
    bundles = [g for g in description.group if g.semantic == "BUNDLE"]
    if len(bundles) != 1 or sorted(bundles[0].items) != sorted(mids):
        raise MediaError("the offer must bundle every media section in one BUNDLE group")
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
