"""The process's C heap: glibc's malloc told to keep few arenas and to give back what
is freed.

Why: the relay's pictures are decoded and encoded in threads (aiortc's decoder
thread per incoming track, the encoders' pool), and glibc gives each new thread an
arena of its own, up to eight per core. A classroom that reconnects gets new decoder
threads, hence maybe a new arena; memory freed in an arena is kept by the process
for reuse there, in pieces (fragmentation). The soak (scripts/soak.py, 15
classrooms, 30 % reconnecting each minute) saw RSS +35 % in 4.5 minutes, 170 MB of
it in arenas that grew from 5 to 9, while the Python heap and the objects alive
stayed flat. Two arenas and a trim now and then keep it level.

glibc only: elsewhere (musl, macOS) the calls are absent and nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from functools import cache

log = logging.getLogger(__name__)

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
M_ARENA_MAX = -8


@cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    # gnu_get_libc_version: glibc's own; musl has mallopt but no arenas to limit.
    wanted = ("gnu_get_libc_version", "mallopt", "malloc_trim")
    return libc if all(hasattr(libc, name) for name in wanted) else None


def limit_arenas(count: int) -> bool:
    """At most `count` malloc arenas; whether glibc took it. Call it before threads
    start: a thread that already has an arena keeps it."""
    libc = _glibc()
    return bool(libc is not None and count > 0 and libc.mallopt(M_ARENA_MAX, count) == 1)


def give_back() -> bool:
    """Return the free memory of every arena to the system (malloc_trim(0): the free
    pages inside the heaps too, not only at their top); whether any was."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0) == 1)


async def give_back_every(interval_s: float) -> None:
    """`give_back()` every `interval_s`, until cancelled. It runs in the event loop's
    thread: it takes each arena's lock in turn, a few milliseconds at most."""
    while True:
        await asyncio.sleep(interval_s)
        started = time.perf_counter()
        give_back()
        took_ms = (time.perf_counter() - started) * 1000
        if took_ms > 20:
            log.info("malloc_trim took %.0f ms", took_ms)
