"""How many packets a second the relay's receive path takes in: one shared UDP port
(media.adapter.ice_udp: one socket, every packet through the demultiplexer) against
aioice's socket per peer.

Both on loopback, both ending where aioice hands a packet on (`Connection.
data_received`, here a counter): the shared port's path adds the table lookup of
`UdpDemux.route` and the view's call. A sender process sends RTP-sized datagrams from
`--peers` sockets round-robin at `--rate` packets a second, below what the receiver
can take; the receiver's own CPU time per packet received (its process only, so
another load on the machine counts little) gives the packets a second one core
would take in: 1 / (CPU seconds per packet).

    .venv/bin/python -m scripts.microbench_udp_port --peers 50 --seconds 3 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import socket
import statistics
import time
from typing import Any

from aioice import Connection, stun
from aioice.candidate import Candidate
from aioice.ice import StunProtocol

from media.adapter.ice_udp import SharedUdpPort

PACKET = b"\x80\x60" + bytes(1198)  # a video RTP packet's size


def blast(targets: list[tuple[str, int]], checks: list[bytes], seconds: float, rate: int) -> None:
    socks = []
    for target, check in zip(targets, checks, strict=True):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(target)
        if check:
            sock.send(check)
        socks.append(sock)
    time.sleep(0.2)  # the checks are in before the media
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        while sent < elapsed * rate:
            with contextlib.suppress(OSError):
                socks[sent % len(socks)].send(PACKET)
            sent += 1
        time.sleep(0.0005)


def candidate(port: int) -> Candidate:
    return Candidate("1", 1, "udp", 1, "127.0.0.1", port, "host")


def signed_check(connection: Connection) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    message.attributes["USERNAME"] = f"{connection.local_username}:peer"
    message.add_message_integrity(connection.local_password.encode())
    message.add_fingerprint()
    return bytes(message)


async def run(shared: bool, peers: int, seconds: float, rate: int) -> tuple[float, float]:
    """Packets received a second, and CPU microseconds per packet received."""
    loop = asyncio.get_running_loop()
    received = [0]

    def count(data: bytes, component: int) -> None:
        received[0] += 1

    connections = []
    for _ in range(peers):
        connection = Connection(ice_controlling=False)
        connection.data_received = count  # type: ignore[method-assign]
        connections.append(connection)
    closers: list[Any] = []
    if shared:
        port = SharedUdpPort(0, ("127.0.0.1",))
        await port.start()
        sock = port._sockets[0]
        for connection in connections:
            port.sessions.add(connection)
            sock.share_for(connection, candidate(port.port))
        targets = [("127.0.0.1", port.port)] * peers
        checks = [signed_check(c) for c in connections]
        closers.append(port.close)
    else:
        targets, checks = [], []
        for connection in connections:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda c=connection: StunProtocol(c), local_addr=("127.0.0.1", 0)
            )
            protocol.local_candidate = candidate(transport.get_extra_info("sockname")[1])
            transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024 // peers
            )
            targets.append(transport.get_extra_info("sockname"))
            checks.append(b"")
            closers.append(transport.close)
    sender = multiprocessing.get_context("spawn").Process(
        target=blast, args=(targets, checks, seconds + 1.5, rate)
    )
    sender.start()
    await asyncio.sleep(1.0)  # the sender is up and the checks are in
    start, at, cpu = received[0], time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    packets = received[0] - start
    got = packets / (time.perf_counter() - at)
    per_packet_us = (time.process_time() - cpu) / packets * 1e6
    sender.join()
    for close in closers:
        result = close()
        if asyncio.iscoroutine(result):
            await result
    if shared:
        assert port.bound_addresses() == peers, port.bound_addresses()
    return got, per_packet_us


def route_only(peers: int, rounds: int = 200_000) -> float:
    """The demultiplexer's own cost: route() calls a second for bound addresses."""
    from media.adapter.ice_udp import UdpDemux

    class Session:
        local_username, local_password = "abcd", "p" * 22

    demux: UdpDemux[Any, object] = UdpDemux(lambda: [Session()], lambda s: object())
    sources = [("10.0.0.2", 40000 + i) for i in range(peers)]
    check = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    check.attributes["USERNAME"] = "abcd:peer"
    check.add_message_integrity(b"p" * 22)
    for source in sources:
        demux.route(bytes(check), source, 0.0)
    at = time.perf_counter()
    for i in range(rounds):
        demux.route(PACKET, sources[i % peers], 1.0)
    return rounds / (time.perf_counter() - at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=20_000)
    args = parser.parse_args()
    for shared in (False, True):
        runs = [
            asyncio.run(run(shared, args.peers, args.seconds, args.rate)) for _ in range(args.runs)
        ]
        cost = statistics.median(us for _, us in runs)
        name = "one shared port" if shared else "a socket per peer"
        print(
            f"{name:>18}: {cost:5.1f} us CPU a packet = {1e6 / cost:>9,.0f} packets/s a core "
            f"(received {', '.join(f'{r:,.0f}' for r, _ in runs)} packets/s of {args.rate:,}; "
            f"us a packet {', '.join(f'{us:.1f}' for _, us in runs)})"
        )
    print(f"{'route() alone':>18}: {route_only(args.peers):>9,.0f} calls/s")


if __name__ == "__main__":
    main()
