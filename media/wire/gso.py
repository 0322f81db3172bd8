"""Which datagrams can leave in one UDP segmentation offload (GSO) send.

Linux (4.18 and later) takes a buffer and a segment size (the `UDP_SEGMENT` socket
option, given with `sendmsg`) and cuts the buffer into datagrams of that size, the
last one possibly shorter, all to one address: one system call for a frame's
packets instead of one each. A VP8 frame's packets are all full-size but the last
(media.wire.vp8.chunks), so a frame is usually one batch.

`batches` says which runs of datagrams qualify: equal sizes, then at most one
shorter datagram that ends the run, within the kernel's limits on segments and
bytes. Sans I/O; media.adapter.gso sends them.
"""

from __future__ import annotations

from collections.abc import Sequence

# The kernel's limits (include/linux/udp.h: UDP_MAX_SEGMENTS; a UDP payload's maximum).
MAX_SEGMENTS = 64
MAX_BYTES = 65507


def batches(
    sizes: Sequence[int], max_segments: int = MAX_SEGMENTS, max_bytes: int = MAX_BYTES
) -> list[tuple[int, int, int]]:
    """Runs of `sizes` that can each go in one send, in order: `(start, end, segment)`
    for `sizes[start:end]`, cut into datagrams of `segment` bytes.

    A run is datagrams of one size, and may end with one shorter datagram. A longer
    one, or the limits, start the next run. A run of one is a datagram on its own.
    """
    runs: list[tuple[int, int, int]] = []
    start = 0
    count = len(sizes)
    while start < count:
        segment = sizes[start]
        end = start + 1
        total = segment
        while end < count and end - start < max_segments:
            size = sizes[end]
            if size > segment or total + size > max_bytes:
                break
            total += size
            end += 1
            if size < segment:
                break  # a shorter datagram can only be the run's last
        runs.append((start, end, segment))
        start = end
    return runs
