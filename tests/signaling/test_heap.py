"""The C heap (signaling.heap): what threads that come and go free is given back.

Each case runs in a child process: arenas and their memory are the process's own, and
pytest's must not be changed by a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from signaling import heap
from signaling.settings import Settings

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(heap._glibc() is None, reason="glibc's malloc only"),
]

ROOT = Path(__file__).resolve().parents[2]

# Rounds of decoder-like threads, all alive at once: each allocates pictures (100 kB,
# below glibc's mmap threshold, so they come from its arena), frees them but one in a
# hundred, which stays referenced and pins the arena's heap as a long-lived object does.
CHURN = """
import ctypes, json, re, sys, threading
from signaling import heap

def rss_mb():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmRSS:\\s+(\\d+)", status).group(1)) / 1024

def heaps():
    # The heaps of glibc's thread arenas (one or more each): mappings aligned on their
    # 64 MB maximum.
    starts = (int(line.split("-")[0], 16) for line in open("/proc/self/maps"))
    return sum(1 for start in starts if start % (64 << 20) == 0)

limit, rounds = int(sys.argv[1]), int(sys.argv[2])
limited = heap.limit_arenas(limit) if limit else None
start, before = rss_mb(), heaps()
kept = []
together = threading.Barrier(8)

def life():
    together.wait()
    pictures = [ctypes.create_string_buffer(100_000) for _ in range(150)]
    kept.extend(pictures[::100])
    together.wait()

for _ in range(rounds):
    threads = [threading.Thread(target=life) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
held, made = rss_mb(), heaps() - before
gave_back = heap.give_back()
print(json.dumps({"limited": limited, "heaps": made, "start": start, "held": held,
                  "trimmed": rss_mb(), "gave_back": gave_back}))
"""


def churn(arenas: int, rounds: int) -> dict[str, float]:
    """`arenas`: the limit set first (0: none)."""
    done = subprocess.run(
        [sys.executable, "-c", CHURN, str(arenas), str(rounds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def test_what_finished_threads_freed_is_given_back() -> None:
    # 8 threads x 15 MB a round, of which 0.2 MB stays referenced.
    seen = churn(arenas=0, rounds=5)
    kept_mb = 5 * 8 * 2 * 0.1
    assert seen["held"] - seen["start"] > 40  # freed, but kept by the arenas
    assert seen["gave_back"]
    assert seen["trimmed"] - seen["start"] < kept_mb + 10


def test_threads_share_two_arenas() -> None:
    # glibc's own rule: an arena per thread, up to eight per core.
    assert churn(arenas=0, rounds=1)["heaps"] >= 6
    two = churn(arenas=2, rounds=1)
    assert two["limited"]
    assert two["heaps"] <= 2  # the main arena (not a heap) and one more


def test_the_server_limits_arenas_and_trims_by_default() -> None:
    settings = Settings()
    assert settings.malloc_arena_max == 2
    assert settings.malloc_trim_interval_s > 0
