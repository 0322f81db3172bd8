"""ICE over TCP to the relay (RFC 6544): passive candidates at one port, from outside aioice.

aioice 0.13 gathers and checks over UDP only, but how it is built leaves room for
TCP next to it, with no change to aioice itself:

- A `Connection`'s local candidates are a list that aiortc reads once gathering is
  done. A hook on `Connection.gather_candidates` (installed once, active only within
  `ice_sessions.offering(port)`) adds the relay's passive TCP candidate there, next
  to each UDP host candidate, and aiortc writes it into the answer.
- A candidate pair is a `StunProtocol` and a remote candidate. A protocol hands STUN
  requests to its Connection (`request_received`, which authenticates and answers
  them, then learns the sender as peer-reflexive and checks back) and all else to the
  Connection's queue; aioice and `media.adapter.transport.Wire` send with
  `protocol.transport.sendto(data, addr)`.

So a TCP connection accepted at the port becomes one more `StunProtocol` of the
Connection whose ufrag and password its first check carries (`ice_sessions`, shared
with the UDP port), and its transport frames what is sent (RFC 4571). From there
aioice answers the check, checks back over the same stream, and uses it for the pair
like any UDP socket. A connection whose first packet is not such a check, or that
sends nothing in time, is closed; unmatched connections are bounded.

Reached into (tests/media/test_aiortc_internals.py checks each): `Connection.
_local_candidates`, `_protocols` and `_closing`; `StunProtocol.__init__(receiver)`,
its `receiver`, `local_candidate`, `transport` and `datagram_received`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, cast

import aioice.ice
from aioice import stun
from aioice.candidate import Candidate

from media.adapter.ice_sessions import SessionRegistry, candidate_as, unmapped
from media.wire.ice_tcp import MAX_FRAME, Deframer, PassiveCandidate, frame

logger = logging.getLogger(__name__)


class FramedStream:
    """A TCP transport as aioice sends through a datagram transport: `sendto` writes
    the packet as one RFC 4571 frame (the address is the stream's own).

    A UDP socket drops what it cannot send; so does this, rather than buffer without
    bound behind a stalled stream: past `max_buffered` bytes waiting, a packet is
    dropped whole (never a part of one, which would break the framing)."""

    def __init__(self, transport: asyncio.Transport, max_buffered: int) -> None:
        self._transport = transport
        self._max_buffered = max_buffered
        self.dropped = 0

    def sendto(self, data: bytes, addr: Any = None) -> None:
        if self._transport.is_closing():
            return
        if len(data) > MAX_FRAME or self._transport.get_write_buffer_size() > self._max_buffered:
            self.dropped += 1
            return
        self._transport.write(frame(data))

    def close(self) -> None:
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


class AcceptedCandidate(Candidate):
    """The passive candidate as the base of one accepted connection. It forms pairs
    only through the checks that arrive on it: a passive candidate never connects out,
    and a browser's active candidates (written with port 9) cannot be reached."""

    def can_pair_with(self, other: Candidate) -> bool:
        return False


class TcpPeer(aioice.ice.StunProtocol, asyncio.Protocol):
    """One TCP connection at the port; once matched, a StunProtocol of its session."""

    def __init__(self, port: PassiveTcpPort) -> None:
        # The session is known only from the first check (`_match`).
        super().__init__(receiver=cast(Any, None))
        self._port = port
        self._deframer = Deframer()
        self._peer: tuple[str, int] = ("", 0)
        self._matched = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        peer = stream.get_extra_info("peername")
        self._peer = (unmapped(str(peer[0])), int(peer[1]))
        self.transport = cast(Any, FramedStream(stream, self._port.max_buffered_bytes))
        if not self._port.admit(self):
            stream.close()
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._port.match_timeout_s, self._give_up)

    def data_received(self, data: bytes) -> None:
        for packet in self._deframer.feed(data):
            if not self._matched and not self._match(packet):
                self.transport.close()
                return
            self.datagram_received(packet, self._peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._port.forget(self)
        if self._matched:
            super().connection_lost(exc)

    def _match(self, packet: bytes) -> bool:
        try:
            message = stun.parse_message(packet)
        except ValueError:
            return False
        session = self._port.session_for(message)
        if session is None:
            logger.debug("ICE-TCP from %s: not a check for any session", self._peer)
            return False
        sockname = self.transport.get_extra_info("sockname")
        self.receiver = session
        self.local_candidate = self._port.base_for(session, unmapped(str(sockname[0])))
        session._protocols.append(self)
        self._matched = True
        self._cancel_timer()
        self._port.forget(self)
        return True

    def _give_up(self) -> None:
        self._timer = None
        if not self._matched:
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class PassiveTcpPort:
    """The one TCP port where browsers reach the relay when UDP is blocked.

    The sockets are bound when this is built (a port already taken stops the start),
    and accept once `start()` has run in the event loop. `offer(connection)` gives a
    gathered aioice Connection its passive candidates and makes it one of the
    sessions that connections at the port are matched to.
    """

    def __init__(
        self,
        port: int,
        addresses: tuple[str, ...] = (),
        *,
        match_timeout_s: float = 10.0,
        max_unmatched: int = 64,
        max_buffered_bytes: int = 256 * 1024,
    ) -> None:
        self.match_timeout_s = match_timeout_s
        self.max_unmatched = max_unmatched
        self.max_buffered_bytes = max_buffered_bytes
        self._addresses = addresses
        self._sockets = _bind(port, addresses)
        self.port = int(self._sockets[0].getsockname()[1])
        self._servers: list[asyncio.Server] = []
        self._sessions = SessionRegistry()
        self._unmatched: set[TcpPeer] = set()

    async def start(self) -> None:
        """Accept connections (idempotent)."""
        if self._servers:
            return
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            server = await loop.create_server(lambda: TcpPeer(self), sock=sock)
            self._servers.append(server)

    async def close(self) -> None:
        for peer in list(self._unmatched):
            peer.transport.close()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        if not self._servers:
            for sock in self._sockets:
                sock.close()

    def serves(self, address: str) -> bool:
        return not self._addresses or address in self._addresses

    def offer(self, connection: aioice.ice.Connection) -> None:
        """A passive candidate beside each UDP host candidate the port listens on."""
        local = connection._local_candidates
        if any(c.transport.lower() == "tcp" for c in local):
            return
        for udp in list(local):
            if udp.type == "host" and udp.transport.lower() == "udp" and self.serves(udp.host):
                passive = PassiveCandidate(udp.host, self.port, udp.component)
                local.append(Candidate.from_sdp(passive.sdp()))
        self._sessions.add(connection)

    def session_for(self, message: stun.Message) -> aioice.ice.Connection | None:
        return self._sessions.session_for(message)

    def base_for(self, connection: aioice.ice.Connection, address: str) -> Candidate:
        """The passive candidate a connection accepted on `address` is based on."""
        offered = [c for c in connection._local_candidates if c.transport.lower() == "tcp"]
        chosen = next((c for c in offered if c.host == address), None)
        base = chosen or Candidate.from_sdp(PassiveCandidate(address, self.port).sdp())
        return candidate_as(AcceptedCandidate, base)

    def admit(self, peer: TcpPeer) -> bool:
        if len(self._unmatched) >= self.max_unmatched:
            return False
        self._unmatched.add(peer)
        return True

    def forget(self, peer: TcpPeer) -> None:
        self._unmatched.discard(peer)


def _bind(port: int, addresses: tuple[str, ...]) -> list[socket.socket]:
    if not addresses:
        if socket.has_dualstack_ipv6():
            return [socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)]
        return [socket.create_server(("", port))]
    sockets: list[socket.socket] = []
    try:
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            # All addresses on one port: port 0 (tests) takes the first one's.
            chosen = int(sockets[0].getsockname()[1]) if sockets else port
            sockets.append(socket.create_server((address, chosen), family=family))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
