"""A frame's datagrams to one address in as few system calls as the socket allows.

Sending is most of what the relay's event loop does for each classroom: every
RTP packet was one `sendto`, each a system call that also carries the packet
through the kernel's stack (on loopback, into the receiver's socket). With UDP
segmentation offload (media.wire.gso) a frame's packets to one classroom leave in
one `sendmsg`; the kernel, or the network card, cuts them apart, and the classroom
receives the same datagrams as before.

`batch_sender(transport)` gives the send function for one nominated pair's
transport:
- asyncio's own datagram transport (aioice's sockets): its socket directly while
  the transport has nothing queued (asyncio's `sendto` does the same); otherwise,
  and for what cannot be batched, the transport's `sendto`;
- a transport that batches itself (`sendmany`: media.adapter.ice_udp's shared
  port) is handed the datagrams;
- anything else (ICE over TCP, which frames each datagram) one `sendto` each.

Where the kernel or the device refuses segmentation (an old kernel, a device
without checksum offload), the first refusal turns it off for the process, logged
once, and the datagrams go one by one. A full socket buffer falls back to the
transport's `sendto` too, which queues as asyncio does.
"""

from __future__ import annotations

import asyncio.selector_events
import errno
import logging
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

from media.wire.gso import batches

logger = logging.getLogger(__name__)

SendMany = Callable[[Sequence[bytes], Any], None]

# asyncio's datagram transport on a selector loop (the only kind aioice gets on Linux).
_SELECTOR_DATAGRAM: type = getattr(asyncio.selector_events, "_SelectorDatagramTransport")  # noqa: B009

# linux/udp.h; Python's socket module does not name it.
UDP_SEGMENT = 103
_SEGMENT = struct.Struct("=H")
# What a kernel or device that cannot segment answers.
_REFUSED = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})


class Offload:
    """Whether this process still tries segmentation (off after a refusal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.sends = 0  # sendmsg calls that carried several datagrams

    def refused(self, error: OSError) -> None:
        if self.enabled:
            self.enabled = False
            logger.warning("UDP segmentation offload refused (%s): one send per packet", error)


OFFLOAD = Offload(enabled=sys.platform == "linux")


def send_segmented(
    sock: socket.socket,
    datagrams: Sequence[bytes],
    addr: Any,
    one: Callable[[bytes, Any], None],
    offload: Offload = OFFLOAD,
) -> None:
    """Send `datagrams` to `addr` on `sock`, runs of them in one `sendmsg` each
    (media.wire.gso.batches); `one(datagram, addr)` sends what goes alone, and
    what the socket would not take now."""
    if not offload.enabled or len(datagrams) < 2:
        for datagram in datagrams:
            one(datagram, addr)
        return
    for start, end, segment in batches([len(d) for d in datagrams]):
        if end - start == 1:
            one(datagrams[start], addr)
            continue
        run = datagrams[start:end]
        try:
            sock.sendmsg(
                [b"".join(run)],
                [(socket.SOL_UDP, UDP_SEGMENT, _SEGMENT.pack(segment))],
                0,
                addr,
            )
            offload.sends += 1
            continue
        except (BlockingIOError, InterruptedError):
            pass  # the transport's sendto queues them
        except OSError as error:
            if error.errno in _REFUSED:
                offload.refused(error)
        for datagram in run:
            one(datagram, addr)


def batch_sender(transport: Any) -> SendMany:
    """The function that sends a list of datagrams to one address on `transport`."""
    sendmany = getattr(transport, "sendmany", None)
    if sendmany is not None:
        return sendmany  # type: ignore[no-any-return]
    sendto: Callable[[bytes, Any], None] = transport.sendto
    if isinstance(transport, _SELECTOR_DATAGRAM):
        selector: Any = transport

        def send(datagrams: Sequence[bytes], addr: Any) -> None:
            sock = selector._sock
            if sock is None or selector._buffer or selector.is_closing():
                for datagram in datagrams:
                    sendto(datagram, addr)
            else:
                send_segmented(sock, datagrams, addr, sendto)

        return send

    def each(datagrams: Sequence[bytes], addr: Any) -> None:
        for datagram in datagrams:
            sendto(datagram, addr)

    return each
