"""What a frame's send costs the relay: one `sendto` per packet against one segmented
`sendmsg` (media.adapter.gso, UDP segmentation offload).

A sender sends frames shaped like the relay's camera frames (`--packets` full-size
packets and a shorter last one, as media.wire.vp8 cuts them) on loopback at
`--rate` frames a second, to `--receivers` sockets in turn, which a process of their
own drains and counts. The sender's own CPU time (user and system: on loopback the
kernel's delivery to the receiving socket runs in the sender's system call too) over
the frames it sent gives the cost of one frame each way. The two ways alternate,
`--runs` times each; the receivers must count every datagram of both.

    .venv/bin/python -m scripts.microbench_gso --frames 5000 --runs 3

The last line printed is a JSON object: microseconds of sender CPU per frame each
way (the median of the runs), their ratio, and what the receivers counted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.connection
import os
import resource
import select
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media.adapter.gso import Offload, send_segmented

FULL_BYTES = 1300 + 12 + 10  # a VP8 payload, its RTP header, the SRTP tag
LAST_BYTES = 600
MAX_FRAMES = 100_000
MAX_RUNS = 10


def drain(count: int, conn: multiprocessing.connection.Connection) -> None:
    """Receive on `count` sockets until told to stop; answer with what arrived."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setblocking(False)
        socks.append(sock)
    conn.send([s.getsockname() for s in socks])
    received = 0
    while not conn.poll():
        ready, _, _ = select.select(socks, [], [], 0.05)
        received += sum(emptied(sock) for sock in ready)
    conn.recv()
    received += sum(emptied(sock) for sock in socks)  # what is still queued
    conn.send(received)


def emptied(sock: socket.socket) -> int:
    """Read what a non-blocking socket holds; how many datagrams that was."""
    count = 0
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return count
        count += 1


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def send_frames(
    sock: socket.socket,
    targets: list[Any],
    frames: int,
    rate: float,
    packets: int,
    segmented: bool,
) -> float:
    """Send `frames` frames of `packets` full-size packets and a shorter one, paced;
    the sender's CPU seconds per frame."""
    frame = [bytes([i]) * FULL_BYTES for i in range(packets)] + [b"\xff" * LAST_BYTES]
    offload = Offload(enabled=True)

    def one(datagram: bytes, addr: Any) -> None:
        sock.sendto(datagram, addr)

    start_cpu = cpu_s()
    start = time.monotonic()
    sent = 0
    while sent < frames:
        due = min(frames, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            addr = targets[sent % len(targets)]
            if segmented:
                send_segmented(sock, frame, addr, one, offload)
            else:
                for datagram in frame:
                    sock.sendto(datagram, addr)
            sent += 1
        time.sleep(0.001)
    if segmented and not offload.enabled:
        raise SystemExit("this kernel refused UDP segmentation offload")
    return (cpu_s() - start_cpu) / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--packets", type=int, default=4, help="full-size packets a frame")
    parser.add_argument("--rate", type=float, default=1000.0, help="frames a second")
    parser.add_argument("--receivers", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not 1 <= args.frames <= MAX_FRAMES or not 1 <= args.runs <= MAX_RUNS:
        parser.error(f"--frames within 1..{MAX_FRAMES}, --runs within 1..{MAX_RUNS}")
    if not 1 <= args.packets <= 40 or not 1 <= args.receivers <= 256:
        parser.error("--packets within 1..40, --receivers within 1..256")
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    receiver = ctx.Process(target=drain, args=(args.receivers, theirs), daemon=True)
    receiver.start()
    targets = ours.recv()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    per_frame: dict[str, list[float]] = {"sendto": [], "segmented": []}
    for _ in range(args.runs):
        for way in per_frame:
            cost = send_frames(
                sock, targets, args.frames, args.rate, args.packets, way == "segmented"
            )
            per_frame[way].append(cost)
    time.sleep(0.3)
    ours.send("stop")
    received = ours.recv()
    receiver.join(5)
    sent = 2 * args.runs * args.frames * (args.packets + 1)
    sendto_us = statistics.median(per_frame["sendto"]) * 1e6
    segmented_us = statistics.median(per_frame["segmented"]) * 1e6
    print(
        json.dumps(
            {
                "packets_per_frame": args.packets + 1,
                "frames_per_run": args.frames,
                "runs": args.runs,
                "sendto_us_per_frame": round(sendto_us, 2),
                "segmented_us_per_frame": round(segmented_us, 2),
                "ratio": round(sendto_us / segmented_us, 2),
                "each_run_us": {
                    way: [round(c * 1e6, 2) for c in costs] for way, costs in per_frame.items()
                },
                "datagrams_sent": sent,
                "datagrams_received": received,
                "loadavg": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
