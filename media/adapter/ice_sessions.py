"""What the relay's one-port ICE transports share: the sessions, matching a first check
to one of them, and the gathering hook that offers their candidates.

ICE over TCP (`ice_tcp`) and the shared UDP port (`ice_udp`) both receive, on one
port, packets from peers they have not heard from before. A stranger is let in only
by a connectivity check that names a live session's ufrag and is signed with its
password (`match_session`); the sessions are the aioice `Connection`s that were
offered the port's candidates (`SessionRegistry`). The candidates are added after
aioice gathers, by one hook on `Connection.gather_candidates` that asks each port
given to `offering()` to `offer()` them.

Reached into (tests/media/test_aiortc_internals.py checks each): `Connection.
gather_candidates` (wrapped) and `_closing`.
"""

from __future__ import annotations

import contextvars
import functools
import ipaddress
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

import aioice.ice
from aioice import stun
from aioice.candidate import Candidate

from media.wire.ice_tcp import local_ufrag


class IceSession(Protocol):
    @property
    def local_username(self) -> str: ...

    @property
    def local_password(self) -> str: ...


S = TypeVar("S", bound=IceSession)


def match_session(message: stun.Message, sessions: Iterable[S]) -> S | None:
    """The session a stranger's packet is a connectivity check for: a Binding
    request whose USERNAME starts with the session's ufrag (RFC 8445 §7.2.2) and whose
    MESSAGE-INTEGRITY its password verifies (RFC 8489 §9.1.3). Anything else is
    matched to none: a stranger cannot attach itself to a classroom's session."""
    if message.message_method != stun.Method.BINDING or message.message_class != stun.Class.REQUEST:
        return None
    username = message.attributes.get("USERNAME")
    ufrag = local_ufrag(username) if isinstance(username, str) else None
    if ufrag is None:
        return None
    for session in sessions:
        if session.local_username == ufrag and message.check_message_integrity(
            session.local_password.encode("utf8")
        ):
            return session
    return None


class SessionRegistry:
    """The aioice sessions a port was offered to, weakly held: a Connection that is
    gone is no session, and one that is closing matches nothing."""

    def __init__(self) -> None:
        self._sessions: weakref.WeakSet[aioice.ice.Connection] = weakref.WeakSet()

    def add(self, connection: aioice.ice.Connection) -> None:
        self._sessions.add(connection)

    def live(self) -> list[aioice.ice.Connection]:
        return [c for c in self._sessions if not c._closing]

    def session_for(self, message: stun.Message) -> aioice.ice.Connection | None:
        return match_session(message, self.live())


C = TypeVar("C", bound=Candidate)


def candidate_as(kind: type[C], candidate: Candidate, **changes: object) -> C:
    """`candidate` as a `kind`, with `changes` (aioice's Candidate has no replace())."""
    fields: dict[str, object] = {
        name: getattr(candidate, name)
        for name in (
            "foundation", "component", "transport", "priority", "host", "port", "type",
            "related_address", "related_port", "tcptype", "generation",
        )
    }  # fmt: skip
    fields.update(changes)
    return kind(**fields)  # type: ignore[arg-type]


def unmapped(address: str) -> str:
    """An IPv4 peer of a dual-stack socket as its IPv4 address ("::ffff:10.0.0.2" ->
    "10.0.0.2"): as the candidates and the browser's own checks write it."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return address


class OneIcePort(Protocol):
    """A port that adds its candidates to a session aioice has gathered."""

    def offer(self, connection: aioice.ice.Connection) -> None: ...


_offering: contextvars.ContextVar[tuple[OneIcePort, ...]] = contextvars.ContextVar(
    "media_ice_ports", default=()
)
_HOOK_MARK = "_classroom_ice_tcp_hook"


def install_gather_hook() -> None:
    """Make aioice's gathering add the candidates of `offering()`'s ports (idempotent)."""
    current = aioice.ice.Connection.gather_candidates
    if getattr(current, _HOOK_MARK, False):
        return
    original = current

    # `wraps`: inspect (and the canaries) still read aioice's own source through it.
    @functools.wraps(original)
    async def gather_candidates(self: aioice.ice.Connection) -> None:
        await original(self)
        for port in _offering.get():
            port.offer(self)

    setattr(gather_candidates, _HOOK_MARK, True)
    aioice.ice.Connection.gather_candidates = gather_candidates  # type: ignore[method-assign]


@contextmanager
def offering(*ports: OneIcePort | None) -> Iterator[None]:
    """Within this block, ICE gathering also offers the candidates of `ports`, in
    their order (None: skipped). Wrap `await pc.setLocalDescription(...)`, as
    `hooks.gather_on`: aiortc gathers in tasks that inherit this context."""
    install_gather_hook()
    token = _offering.set(tuple(p for p in ports if p is not None))
    try:
        yield
    finally:
        _offering.reset(token)
