"""One UDP port for every peer connection of the relay, from outside aioice.

aioice binds an ephemeral UDP socket per session and address, so a firewall in front
of the relay must let a whole range of ports in. With `SharedUdpPort` every session
offers the same host candidate port instead, and one socket per address receives for
all of them. aioice needs no change for it, as for ICE over TCP (`ice_tcp`):

- After aioice gathers (the hook of `ice_sessions.offering`), `offer(connection)`
  closes the session's own UDP host sockets on the port's addresses and puts in their
  place a `SessionShare`: a `StunProtocol` of that session whose candidate is at the
  shared port and whose transport sends through the shared socket. aioice and
  `media.adapter.transport.Wire` send with `protocol.transport.sendto(data, addr)`,
  so nothing else notices. Instead of aioice's ports rather than beside them: a
  firewall that lets one UDP port in wants only that one offered, and the browser
  does not spend checks on ports it cannot reach.
- What arrives is routed by its source address (`UdpDemux`): an address is let in by
  a Binding request that names a live session's ufrag and is signed with its password
  (`ice_sessions.match_session`, as the TCP port does for a connection's first
  packet); from then on everything from it (STUN, DTLS, SRTP) goes to that session's
  share. A response to one of the relay's own checks is handed to the share that
  awaits its transaction, without binding the address: the transaction id is the
  relay's own random 96 bits, and the transaction verifies the response's
  MESSAGE-INTEGRITY.
- Bounded: at most `max_addresses` addresses (past that, the one quiet longest makes
  room); one quiet for `quiet_s` is forgotten (RFC 7675: consent has expired by then);
  a session's addresses are forgotten when it closes.

A NAT that rebinds a classroom's address is learned at the browser's next check from
the new address (consent checks go every ~5 s): until then what it sends is dropped.

Reached into (tests/media/test_aiortc_internals.py checks each): `Connection.
_local_candidates` and `_protocols`; `StunProtocol.__init__(receiver)`, its
`local_candidate`, `transport`, `transactions` and `datagram_received`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aioice.ice
from aioice import stun
from aioice.candidate import Candidate

from media.adapter.gso import send_segmented
from media.adapter.ice_sessions import (
    IceSession,
    SessionRegistry,
    candidate_as,
    match_session,
    unmapped,
)
from media.wire.ice_tcp import local_ufrag

logger = logging.getLogger(__name__)

Address = tuple[str, int]

# RFC 7675 §5.1: consent expires 30 s after the last answered check; an address quiet
# that long has no session that still uses it (a live one checks every ~5 s).
QUIET_S = 30.0
# A few hundred classrooms with a handful of addresses each; ~200 bytes an address.
MAX_ADDRESSES = 4096
# One socket receives for every peer: room for bursts of all of them together (the
# kernel caps it at net.core.rmem_max).
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
# A Binding request's first two bytes (RFC 8489 §5: class and method 0x0001).
_BINDING_REQUEST = b"\x00\x01"

S = TypeVar("S", bound=IceSession)
P = TypeVar("P")


@dataclass
class Binding(Generic[S, P]):
    session: S
    protocol: P
    heard: float


class UdpDemux(Generic[S, P]):
    """Which session's protocol a datagram at the shared socket goes to (sans I/O).

    `sessions()` lists the live sessions, `protocol_of(session)` is the protocol
    a session receives through here, `awaiting(transaction_id)` the protocol whose
    request a response answers. `route()` is called for every packet: a known
    address costs one dict lookup."""

    def __init__(
        self,
        sessions: Callable[[], Iterable[S]],
        protocol_of: Callable[[S], P | None],
        awaiting: Callable[[bytes], P | None] = lambda _: None,
        *,
        max_addresses: int = MAX_ADDRESSES,
        quiet_s: float = QUIET_S,
    ) -> None:
        self._sessions = sessions
        self._protocol_of = protocol_of
        self._awaiting = awaiting
        self.max_addresses = max_addresses
        self.quiet_s = quiet_s
        self._table: dict[Address, Binding[S, P]] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._table)

    def bound(self, source: Address) -> P | None:
        binding = self._table.get(source)
        return binding.protocol if binding else None

    def route(self, data: bytes, source: Address, now: float) -> P | None:
        """The protocol `data` from `source` goes to; None: dropped."""
        binding = self._table.get(source)
        if binding is not None:
            binding.heard = now
            if data[:2] == _BINDING_REQUEST:
                # A check for another session moves the address there (a NAT gave
                # the port to another browser); one for nobody stays where it was,
                # and the session answers it with an error.
                moved = self._admit(data, source, now, unless=binding.session)
                if moved is not None:
                    return moved
            return binding.protocol
        # RFC 7983 §7: a STUN packet's first byte is 0-3. DTLS and SRTP from an
        # address no check has let in are dropped unread.
        if not data or data[0] > 3:
            self.dropped += 1
            return None
        protocol = self._admit(data, source, now)
        if protocol is None:
            self.dropped += 1
        return protocol

    def _admit(self, data: bytes, source: Address, now: float, unless: S | None = None) -> P | None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return None
        if message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            return self._awaiting(message.transaction_id) if unless is None else None
        if unless is not None:
            username = message.attributes.get("USERNAME")
            if isinstance(username, str) and local_ufrag(username) == unless.local_username:
                return None
        session = match_session(message, self._sessions())
        protocol = self._protocol_of(session) if session is not None else None
        if session is None or protocol is None:
            return None
        self._bind(source, Binding(session, protocol, now))
        return protocol

    def _bind(self, source: Address, binding: Binding[S, P]) -> None:
        if source not in self._table and len(self._table) >= self.max_addresses:
            self.expire(binding.heard)
            if len(self._table) >= self.max_addresses:
                quietest = min(self._table, key=lambda a: self._table[a].heard)
                del self._table[quietest]
        self._table[source] = binding

    def forget(self, protocol: P) -> None:
        """A session's protocol is closed: its addresses are let in no more."""
        for source in [a for a, b in self._table.items() if b.protocol is protocol]:
            del self._table[source]

    def expire(self, now: float) -> int:
        """Forget the addresses quiet for `quiet_s`; how many."""
        quiet = [a for a, b in self._table.items() if now - b.heard > self.quiet_s]
        for source in quiet:
            del self._table[source]
        return len(quiet)


class SharedSocketView:
    """A session's transport on the shared socket: `sendto` goes out through it;
    `close` ends the session's share only (the socket stays for the others)."""

    def __init__(self, socket: SharedSocket, share: SessionShare) -> None:
        self._socket = socket
        self._share = share
        self._closing = False

    def sendto(self, data: bytes, addr: Any = None) -> None:
        if not self._closing:
            self._socket.sendto(data, addr)

    def sendmany(self, datagrams: Sequence[bytes], addr: Any) -> None:
        """A frame's datagrams to one address (media.adapter.gso.batch_sender)."""
        if not self._closing:
            send_segmented(self._socket.sock, datagrams, addr, self._socket.sendto)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._socket.forget(self._share)
        asyncio.get_running_loop().call_soon(self._share.connection_lost, None)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._socket.get_extra_info(name, default)


class SessionShare(aioice.ice.StunProtocol):
    """One session's part of the shared socket: a StunProtocol of that session."""

    def __init__(
        self, connection: aioice.ice.Connection, socket: SharedSocket, candidate: Candidate
    ) -> None:
        super().__init__(receiver=connection)
        self.local_candidate = candidate
        self.transport = SharedSocketView(socket, self)  # type: ignore[assignment]


class SharedSocket:
    """One bound socket of the port, read by one loop for every session: each time it
    is readable, up to `BATCH` datagrams are read and routed by its `UdpDemux`.

    Not asyncio's datagram transport, which reads one datagram per turn of the event
    loop: with every peer on one socket, that is a turn (and an epoll call) per packet,
    where sockets of their own come ready together and share the turns."""

    # Then the loop runs the rest of its work: a flood on the port delays the
    # senders' timers by at most this many packets' routing.
    BATCH = 64
    # Larger than any datagram aioice or DTLS sends (a UDP payload's maximum).
    RECEIVE_SIZE = 65536

    def __init__(self, port: SharedUdpPort, sock: socket.socket) -> None:
        self.sock = sock
        self.address = unmapped(str(sock.getsockname()[0]))
        self._clock = port.clock
        self._shares: weakref.WeakKeyDictionary[aioice.ice.Connection, SessionShare] = (
            weakref.WeakKeyDictionary()
        )
        self.demux: UdpDemux[aioice.ice.Connection, SessionShare] = UdpDemux(
            port.sessions.live,
            self._shares.get,
            self._awaiting,
            max_addresses=port.max_addresses,
            quiet_s=port.quiet_s,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self.unsent = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        for _ in range(self.BATCH):
            try:
                data, addr = recvfrom(self.RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error reported on the socket: as asyncio, ignored
            try:
                self.datagram_received(data, addr)
            except Exception:
                logger.exception("shared UDP port: a packet from %s", addr)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = (addr[0], addr[1])
        share = self.demux.route(data, source, self._clock())
        if share is not None:
            share.datagram_received(data, source)

    def sendto(self, data: bytes, addr: Any) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError:
            # A full send buffer drops the packet, as aioice's own sockets do.
            self.unsent += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self.sock.getsockname()
        if name == "socket":
            return self.sock
        return default

    def share_for(self, connection: aioice.ice.Connection, candidate: Candidate) -> SessionShare:
        share = SessionShare(connection, self, candidate)
        self._shares[connection] = share
        return share

    def forget(self, share: SessionShare) -> None:
        self.demux.forget(share)
        if self._shares.get(share.receiver) is share:
            del self._shares[share.receiver]

    def _awaiting(self, transaction_id: bytes) -> SessionShare | None:
        for share in self._shares.values():
            if transaction_id in share.transactions:
                return share
        return None

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


class SharedUdpPort:
    """The one UDP port every session of the relay is reached at.

    The sockets are bound when this is built (a port already taken stops the start)
    and receive once `start()` has run in the event loop. `offer(connection)` moves a
    gathered aioice Connection's UDP host candidates onto the port and makes it one
    of the sessions that strangers' checks are matched to.
    """

    def __init__(
        self,
        port: int,
        addresses: tuple[str, ...] = (),
        *,
        max_addresses: int = MAX_ADDRESSES,
        quiet_s: float = QUIET_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_addresses = max_addresses
        self.quiet_s = quiet_s
        self.clock = clock
        self.sessions = SessionRegistry()
        # Unset: the addresses aioice would gather on, one socket each, so that a
        # reply leaves from the address the browser sent to (a socket on every
        # interface would let routing choose, and ICE needs it symmetric).
        chosen = addresses or tuple(aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True))
        sockets = _bind(port, chosen)
        self.port = int(sockets[0].getsockname()[1])
        self._sockets = [SharedSocket(self, sock) for sock in sockets]
        self._started = False
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self._sockets]

    async def start(self) -> None:
        """Receive (idempotent)."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        for shared in self._sockets:
            shared.start(loop)
        self._sweep()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for shared in self._sockets:
            shared.close()

    def _sweep(self) -> None:
        now = self.clock()
        for shared in self._sockets:
            shared.demux.expire(now)
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(self.quiet_s / 6, self._sweep)

    def dropped(self) -> int:
        """Datagrams let in by no check, on every address."""
        return sum(s.demux.dropped for s in self._sockets)

    def bound_addresses(self) -> int:
        return sum(len(s.demux) for s in self._sockets)

    def offer(self, connection: aioice.ice.Connection) -> None:
        """The session's UDP host candidates (component 1) move to the shared port."""
        if any(isinstance(p, SessionShare) for p in connection._protocols):
            return
        by_address = {s.address: s for s in self._sockets}
        replaced: set[str] = set()
        for own in list(connection._protocols):
            candidate = own.local_candidate
            shared = by_address.get(candidate.host)
            if (
                shared is None
                or candidate.type != "host"
                or candidate.transport.lower() != "udp"
                or candidate.component != 1
            ):
                continue
            moved = candidate_as(Candidate, candidate, port=self.port)
            # aioice's own socket goes: nothing would reach it through the firewall.
            connection._protocols.remove(own)
            own.transport.close()
            at = connection._local_candidates.index(candidate)
            connection._local_candidates[at] = moved
            connection._protocols.append(shared.share_for(connection, moved))
            replaced.add(candidate.host)
        if not replaced:
            return
        # Server-reflexive candidates were found through the sockets just closed.
        connection._local_candidates[:] = [
            c
            for c in connection._local_candidates
            if not (c.type == "srflx" and c.related_address in replaced)
        ]
        self.sessions.add(connection)


def _bind(port: int, addresses: Iterable[str]) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            # All addresses on one port: port 0 (tests) takes the first one's.
            chosen = int(sockets[0].getsockname()[1]) if len(sockets) > 1 else port
            sock.bind((address, chosen))
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError("no address to bind the shared ICE UDP port on")
    return sockets
