"""Process-wide hooks into aioice and aiortc, each installed once and idempotent.

- ICE gathering on chosen addresses (`gather_on`): aioice gathers host candidates on
  every interface except loopback, with no per-connection choice. We replace
  `aioice.ice.get_host_addresses` once with a function that answers from a context
  variable when one is set, so each setLocalDescription() can gather on the
  operator's addresses (or 127.0.0.1 in tests) without touching other connections.
- Patient consent checks (`install_consent_hook`): aioice checks ICE consent
  (RFC 7675) every ~5 s with a single STUN request that it gives up on after its
  initial 0.5 s timeout, and closes the connection after six failures. On a
  satellite link (600 ms round trip and more) every check fails and the classroom
  is cut off after 30 s. Consent requests (the only ones aioice sends with
  `retransmissions=0`) get two retransmissions, so an answer is awaited 3.5 s (a
  late answer to the first try counts).
- Receivers' decoders (`replace_decoders`), for load generators only.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aioice.ice
import aiortc.rtcrtpreceiver

_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "media_host_addresses", default=None
)
_HOOK_MARK = "_classroom_media_hook"

# What the consent fix gives a consent check: 0.5 + 1 + 2 s of waiting.
CONSENT_RETRANSMISSIONS = 2
_CONSENT_MARK = "_classroom_consent_hook"


def patient_consent(request: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap StunProtocol.request so that consent checks (retransmissions=0) retry."""

    async def wrapped(
        self: Any,
        message: Any,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> Any:
        if retransmissions == 0:
            retransmissions = CONSENT_RETRANSMISSIONS
        return await request(self, message, addr, integrity_key, retransmissions)

    setattr(wrapped, _CONSENT_MARK, True)
    return wrapped


def install_consent_hook() -> None:
    """Let consent checks wait for a long round trip (idempotent)."""
    protocol = aioice.ice.StunProtocol
    if not getattr(protocol.request, _CONSENT_MARK, False):
        protocol.request = patient_consent(protocol.request)  # type: ignore[method-assign,assignment]


def install_host_address_hook() -> None:
    """Make aioice ask `gather_on()` which host addresses to use (idempotent)."""
    current = aioice.ice.get_host_addresses
    if getattr(current, _HOOK_MARK, False):
        return
    original = current

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        chosen = _host_addresses.get()
        if chosen is None:
            return original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    setattr(get_host_addresses, _HOOK_MARK, True)
    aioice.ice.get_host_addresses = get_host_addresses


@contextmanager
def gather_on(addresses: tuple[str, ...]) -> Iterator[None]:
    """Within this block, ICE gathering uses exactly `addresses` (empty: aioice's default).

    Wrap `await pc.setLocalDescription(...)`: aiortc gathers inside it, in tasks
    that inherit this context.
    """
    install_host_address_hook()
    token = _host_addresses.set(addresses or None)
    try:
        yield
    finally:
        _host_addresses.reset(token)


def replace_decoders(factory: Callable[[Any], Any]) -> None:
    """Make aiortc's receivers build their decoders with `factory(codec)`.

    For load generators only (scripts/bench_fanout.py): dozens of synthetic
    classrooms in one process cannot all decode VP8, so most count frames that
    aiortc's jitter buffer completed and only a sample decodes. aiortc's decoder
    thread looks `get_decoder` up in its module's namespace at each new codec.
    """
    aiortc.rtcrtpreceiver.get_decoder = factory  # type: ignore[attr-defined,assignment]
