"""media.adapter.srtp: LeanSrtp makes pylibsrtp's calls and answers as it does."""

from __future__ import annotations

import os
import struct
from typing import Any

import pylibsrtp
import pytest
from pylibsrtp import Policy, Session

from media.adapter.srtp import LeanSrtp, lean_srtp
from media.adapter.transport import MAX_RTP_BYTES, widen

pytestmark = pytest.mark.timeout(20)
KEY = bytes(range(30))


def session(inbound: bool) -> Session:
    kind = Policy.SSRC_ANY_INBOUND if inbound else Policy.SSRC_ANY_OUTBOUND
    policy = Policy(key=KEY, ssrc_type=kind)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def rtp(sequence: int, size: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, sequence, sequence * 3000, ssrc) + os.urandom(size)


def receiver_report(ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def test_it_protects_byte_for_byte_as_pylibsrtp_does() -> None:
    theirs, ours = widen(session(False)), LeanSrtp(session(False))
    for sequence, size in enumerate((0, 20, 160, 1100, 1400)):
        packet = rtp(sequence, size)
        assert ours.protect(packet) == theirs.protect(packet)
    for _ in range(3):
        report = receiver_report()
        assert ours.protect_rtcp(report) == theirs.protect_rtcp(report)


def test_what_it_protects_the_other_side_unprotects_and_the_reverse() -> None:
    sender, receiver = LeanSrtp(session(False)), LeanSrtp(session(True))
    plain_receiver = session(True)
    for sequence in range(5):
        packet = rtp(sequence, 300)
        protected = sender.protect(packet)
        assert receiver.unprotect(protected) == packet
    report = receiver_report()
    protected = session(False).protect_rtcp(report)
    assert receiver.unprotect_rtcp(protected) == report
    assert plain_receiver.unprotect_rtcp(sender.protect_rtcp(report)) == report


def test_it_refuses_what_pylibsrtp_refuses_with_the_same_errors() -> None:
    receiver = LeanSrtp(session(True))
    protected = LeanSrtp(session(False)).protect(rtp(7, 100))
    receiver.unprotect(protected)
    with pytest.raises(pylibsrtp.Error, match="replay check failed"):
        receiver.unprotect(protected)  # the same packet again
    forged = protected[:-1] + bytes([protected[-1] ^ 1])
    with pytest.raises(pylibsrtp.Error, match="authentication failure"):
        LeanSrtp(session(True)).unprotect(forged)
    with pytest.raises(pylibsrtp.Error):
        receiver.unprotect_rtcp(b"\x80\xc9\x00\x01" + os.urandom(20))
    with pytest.raises(ValueError, match="too long"):
        LeanSrtp(session(False)).protect(rtp(1, 1600))


def test_it_takes_the_longest_packet_the_relay_sends_and_needs_no_widening() -> None:
    ours = LeanSrtp(session(False))
    longest = rtp(3, MAX_RTP_BYTES - 12)
    assert widen(ours) is ours
    assert len(ours.protect(longest)) == MAX_RTP_BYTES + 10


class Transport:
    """What lean_srtp needs of an RTCDtlsTransport: its sessions and `_setup_srtp`."""

    def __init__(self) -> None:
        self._rx_srtp: Any = None
        self._tx_srtp: Any = None
        self.setups = 0

    def _setup_srtp(self) -> None:
        self.setups += 1
        self._rx_srtp, self._tx_srtp = session(True), session(False)


def test_a_transport_gets_lean_sessions_from_its_handshake_on() -> None:
    dtls = Transport()
    lean_srtp(dtls)
    lean_srtp(dtls)  # idempotent
    assert dtls._rx_srtp is None
    dtls._setup_srtp()
    assert dtls.setups == 1
    assert isinstance(dtls._rx_srtp, LeanSrtp) and isinstance(dtls._tx_srtp, LeanSrtp)
    packet = rtp(1, 50)
    assert session(True).unprotect(dtls._tx_srtp.protect(packet)) == packet


def test_a_transport_already_keyed_gets_lean_sessions_at_once() -> None:
    dtls = Transport()
    dtls._setup_srtp()
    lean_srtp(dtls)
    assert isinstance(dtls._rx_srtp, LeanSrtp) and isinstance(dtls._tx_srtp, LeanSrtp)
    lean_srtp(dtls)
    assert isinstance(dtls._tx_srtp.session, Session)


def test_an_operation_keeps_its_session_alive() -> None:
    """Wire keeps `protect` and drops the LeanSrtp: libsrtp's context must outlive it."""
    import gc

    protect = LeanSrtp(session(False)).protect
    gc.collect()
    packet = rtp(9, 200)
    assert session(True).unprotect(protect(packet)) == packet
