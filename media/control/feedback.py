"""What a receiving peer told one of our senders over RTCP, as plain data.

The adapter (media.adapter.rtcp) fills it in as RTCP arrives; the downlink
(media.control.downlink) reads it at each tick. Times are the relay's clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SenderFeedback:
    """What the receiving peer told one of our senders over RTCP."""

    remb_bps: int | None = None
    # SSRC of the RTCP sender of that REMB: one estimate per reporting receiver.
    remb_reporter: int | None = None
    # RFC 3550 §6.4.1: fraction lost since the previous report, 0..1.
    fraction_lost: float = 0.0
    # Cumulative figures of the latest report block: packets lost, and the extended
    # highest sequence number received. Their differences between two reports give
    # the loss over that interval exactly (RFC 3550 §A.3).
    packets_lost: int = 0
    highest_sequence: int | None = None
    reports: int = 0
    rembs: int = 0
    keyframe_requests: int = 0
    # The round trip taken from the latest report that answered one of our SRs
    # (RFC 3550 §6.4.1: arrival - sent - DLSR), in seconds, and how many such
    # reports have come.
    rtt_s: float | None = None
    rtts: int = 0
    # When the SR that round trip answers left (the relay's clock): the newest SR
    # tells the path as it is now.
    rtt_sr_at: float | None = None
