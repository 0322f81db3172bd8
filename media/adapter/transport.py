"""From a sender to its socket: pacing in front of the transport, and a direct wire.

- Pacing (`pace_sender`). A sender writes every packet through its private
  `__transport`'s `_send_rtp()`: resends and RTCP at each packet, our RTP loop
  (media.adapter.sender) through `PacedTransport.pace` and the `Wire`. A proxy
  there paces it (media.control.pacer); RTCP is never held back, and goes straight
  to the socket (`send_rtcp`).
- The direct wire (`Wire`). RTCDtlsTransport._send_rtp and aioice send a packet
  through four coroutines and several property lookups; the wire does what they do
  (SRTP, then a datagram to the nominated candidate pair) in two calls, and adds
  what it sent to the transport's stats as they would. Where transport-cc was
  negotiated (media.adapter.twcc), it numbers each packet as it leaves. A whole
  frame (`send_all`) leaves in as few system calls as the socket allows
  (media.adapter.gso).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import is_rtcp

from media.adapter.gso import SendMany, batch_sender
from media.adapter.twcc import TransportCc, transport_cc_of


class Pacing(Protocol):
    """What the transport needs of media.control.pacer.Pacer."""

    def take_now(self, sizes: Sequence[int]) -> bool: ...

    def consume(self, size: int) -> None: ...

    async def wait(self, size: int) -> None: ...


class PacedTransport:
    """Stands in for a sender's RTCDtlsTransport; everything but sending passes through."""

    def __init__(self, transport: Any, pacer: Pacing, wait: bool) -> None:
        self.inner = transport
        self._pacer = pacer
        self._wait = wait

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def waits(self) -> bool:
        """Video waits for its turn; audio only draws from the budget."""
        return self._wait

    def take_now(self, sizes: list[int]) -> bool:
        """Video: the tokens for a whole frame's packets, if the pacer has them now."""
        return bool(self._pacer.take_now(sizes))

    def draw(self, size: int) -> None:
        """Audio: draw a packet's tokens (it never waits)."""
        self._pacer.consume(size)

    async def pace(self, size: int) -> None:
        """Wait for (video) or draw (audio) the pacer's tokens for an RTP packet."""
        if self._wait:
            await self._pacer.wait(size)
        else:
            self.draw(size)

    async def _send_rtp(self, data: bytes) -> None:
        if is_rtcp(data):
            send_rtcp(self.inner, data)
            return
        await self.pace(len(data))
        await self.inner._send_rtp(data)


def pace_sender(sender: RTCRtpSender, pacer: Pacing, *, wait: bool) -> None:
    """Route a sender's packets through `pacer` (media.control.pacer.Pacer).

    `wait`: video waits for its turn; audio (wait=False) is sent at once and only
    draws from the budget. RTCP is never held back.
    """
    transport = sender._RTCRtpSender__transport  # type: ignore[attr-defined]
    if isinstance(transport, PacedTransport):
        transport = transport.inner
    sender._RTCRtpSender__transport = PacedTransport(transport, pacer, wait)  # type: ignore[attr-defined]


def unpaced(transport: Any) -> tuple[Any, PacedTransport | None]:
    """A sender's transport without its pacing proxy, and the proxy if it has one."""
    if isinstance(transport, PacedTransport):
        return transport.inner, transport
    return transport, None


# What an SRTP session protects at most (`widen`): a 1500-byte IP packet less its IP and
# UDP headers (28 bytes) and the SRTP tag (10 bytes, AES_CM_128_HMAC_SHA1_80).
MAX_RTP_BYTES = 1500 - 28 - 10
_WIDE_BUFFER = MAX_RTP_BYTES + 144  # pylibsrtp keeps room for its longest trailer


def widen(session: Any) -> Any:
    """Let a pylibsrtp Session protect packets up to MAX_RTP_BYTES (idempotent).

    Its buffer is 1500 bytes less 144 for the longest trailer, so RTP packets over
    1,356 bytes are refused: an FEC packet over full-size camera packets (a
    keyframe's) is 1,370 or so (media.adapter.sender). The buffer is its private
    `_cdata`/`_buffer` pair, as pylibsrtp 1.0 makes it (tests/media/
    test_aiortc_internals.py checks it).
    """
    from pylibsrtp._binding import ffi

    if len(session._cdata) < _WIDE_BUFFER:
        session._cdata = ffi.new("char[]", _WIDE_BUFFER)
        session._buffer = ffi.buffer(session._cdata)
    return session


def send_rtcp(dtls: Any, data: bytes) -> None:
    """An RTCP packet as `RTCDtlsTransport._send_rtp` sends it (SRTCP, then a datagram
    to the nominated pair, counted in the transport's stats), in one call instead of
    its four coroutines: a classroom's senders report several times a second each."""
    if dtls._state is not DtlsState.CONNECTED:
        raise ConnectionError("Cannot send encrypted RTCP, not connected")
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        raise ConnectionError("Cannot send data, not connected")
    data = dtls._tx_srtp.protect_rtcp(data)
    pair.protocol.transport.sendto(data, pair.remote_addr)
    dtls._RTCDtlsTransport__tx_bytes += len(data)
    dtls._RTCDtlsTransport__tx_packets += 1


class Wire:
    """An RTP packet from a sender to its socket as RTCDtlsTransport._send_rtp and
    aioice send it (SRTP, then a datagram to the nominated candidate pair), without
    their four coroutines and property lookups per packet.

    `ready()` once a frame: a frame's packets go to the pair nominated when it started.
    `twcc_at`: where the sender's packets hold the transport sequence number (None:
    they do not), written by the transport's numbering if it has one.
    """

    def __init__(self, dtls: RTCDtlsTransport, twcc_at: int | None = None) -> None:
        self.dtls = dtls
        self._twcc: TransportCc | None = transport_cc_of(dtls) if twcc_at is not None else None
        self._twcc_at = twcc_at or 0
        self._pair: Any = None
        self._protect: Callable[[bytes], bytes] = lambda packet: packet
        self._sendto: Callable[[bytes, Any], None] = lambda data, address: None
        self._sendmany: SendMany = lambda datagrams, address: None
        self._address: Any = None
        self._packets = 0
        self._bytes = 0

    def ready(self) -> None:
        pair = self.dtls.transport._connection._nominated.get(1)
        if self.dtls._state is not DtlsState.CONNECTED or pair is None:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        if pair is not self._pair:
            self._pair = pair
            self._protect = widen(self.dtls._tx_srtp).protect
            self._sendto = pair.protocol.transport.sendto
            self._sendmany = batch_sender(pair.protocol.transport)
            self._address = pair.remote_addr

    def send(self, packet: bytes) -> None:
        if self.dtls._state is not DtlsState.CONNECTED:  # it may close while paced
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        if self._twcc is not None:
            packet = self._twcc.stamp(packet, self._twcc_at)
        data = self._protect(packet)
        self._sendto(data, self._address)
        self._packets += 1
        self._bytes += len(data)

    def send_all(self, packets: Iterable[bytes], draw: Callable[[int], None] | None) -> None:
        """A frame's packets, made as they are taken from `packets` (each is drawn
        from the pacer's budget with `draw`, if given), then sent together."""
        if self.dtls._state is not DtlsState.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        twcc, at, protect = self._twcc, self._twcc_at, self._protect
        datagrams = []
        for packet in packets:
            if draw is not None:
                draw(len(packet))
            if twcc is not None:
                packet = twcc.stamp(packet, at)
            datagram = protect(packet)
            datagrams.append(datagram)
            self._bytes += len(datagram)
        self._packets += len(datagrams)
        self._sendmany(datagrams, self._address)

    def count(self) -> None:
        """Add what was sent to the transport's stats (getStats), as it would."""
        dtls: Any = self.dtls
        dtls._RTCDtlsTransport__tx_packets += self._packets
        dtls._RTCDtlsTransport__tx_bytes += self._bytes
        self._packets = self._bytes = 0
