"""The weak-link emulator: its model with a seeded random source, and a real run in namespaces."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from scripts.linkemu import PROFILES, Direction, Emulator, LinkParams, bursty


def send(d: Direction, n: int, size: int, every_s: float) -> list[float | None]:
    return [d.admit(size, i * every_s) for i in range(n)]


def test_rate_spaces_packets_by_their_serialization_time() -> None:
    d = Direction(LinkParams(rate_bps=1_000_000, queue_ms=10_000), random.Random(1))
    arrivals = send(d, 100, 1250, 0.0)  # a burst: 100 x 10 kbit at 1 Mbit/s
    assert arrivals[0] == pytest.approx(0.01)
    assert arrivals[-1] == pytest.approx(1.0)


def test_delay_and_jitter_keep_order() -> None:
    d = Direction(LinkParams(rate_bps=10**9, delay_ms=300, jitter_ms=50), random.Random(2))
    arrivals = [a for a in send(d, 500, 100, 0.001) if a is not None]
    assert all(b >= a for a, b in itertools.pairwise(arrivals))
    one_way = [a - i * 0.001 for i, a in enumerate(arrivals)]
    assert min(one_way) >= 0.25 and max(one_way) <= 0.36


def test_queue_limit_drops_the_tail() -> None:
    d = Direction(LinkParams(rate_bps=100_000, queue_ms=200), random.Random(3))
    arrivals = send(d, 100, 1250, 0.0)  # 100 ms of sending each
    assert sum(a is not None for a in arrivals) == 3  # 0, 100, 200 ms queued; the rest dropped
    assert d.stats.dropped_queue == 97


def test_random_loss_rate() -> None:
    d = Direction(LinkParams(rate_bps=10**9, loss=0.1), random.Random(4))
    send(d, 20_000, 100, 0.0001)
    assert d.stats.lost_random / d.stats.packets == pytest.approx(0.1, abs=0.01)


def test_burst_loss_comes_in_bursts() -> None:
    d = Direction(bursty(10**9, 0, loss=0.03, mean_burst=3), random.Random(5))
    lost = [a is None for a in send(d, 50_000, 100, 0.00001)]
    assert sum(lost) / len(lost) == pytest.approx(0.03, abs=0.006)
    runs, run = [], 0
    for x in lost:
        if x:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert sum(runs) / len(runs) == pytest.approx(3, abs=0.5)


def test_step_profile_changes_rate_over_time() -> None:
    step = PROFILES["step"]
    assert step.at(0).down.rate_bps == 2_000_000
    assert step.at(25).down.rate_bps == 300_000
    assert step.at(55).down.rate_bps == 2_000_000


def test_a_cut_drops_what_is_in_flight_and_what_comes_until_restored() -> None:
    r, w = os.pipe()
    try:
        os.set_blocking(r, False)
        emu = Emulator(PROFILES["good"], r, w)
        emu._queue = [(1.0, 1, "down", b"x"), (1.1, 2, "up", b"y")]
        emu.set_cut(True)
        assert emu._queue == []
        os.write(w, b"z")
        emu._read("down", 0.0)  # read from r: dropped, not queued
        assert emu._queue == []
        assert emu.dirs["down"].stats.lost_cut == 2 and emu.dirs["up"].stats.lost_cut == 1
        emu.set_cut(False)
        os.write(w, b"z")
        emu._read("down", 0.0)
        assert len(emu._queue) == 1
    finally:
        os.close(r)
        os.close(w)


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)


@pytest.fixture
def emulated(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    profile = request.param
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.linkemu", "--profile", profile, "--tag", f"t{os.getpid()}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready "), line
        yield json.loads(line[6:])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


UDP_PROBE = r"""
import json, socket, sys, time
role, addr, n, size, gap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if role == "recv":
    s.bind((addr, 9999)); s.settimeout(3); got = []
    print("listening", flush=True)
    try:
        while True:
            data, _ = s.recvfrom(65536); got.append((time.time(), float(data[:20])))
    except socket.timeout:
        pass
    print(json.dumps({"n": len(got), "span": got[-1][0] - got[0][0] if got else 0,
                      "delay": min(t - sent for t, sent in got) if got else None}))
else:
    for i in range(n):
        s.sendto(b"%20.6f" % time.time() + b"x" * (size - 20), (addr, 9999)); time.sleep(gap)
"""


@needs_root
@pytest.mark.netns
@pytest.mark.parametrize("emulated", ["geo"], indirect=True)
def test_real_packets_meet_the_profile(emulated: dict[str, str]) -> None:
    """UDP through the namespaces: 256 kbit/s, ~300 ms one way, ~1 % loss."""
    recv = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            emulated["client_ns"],
            sys.executable,
            "-c",
            UDP_PROBE,
            "recv",
            emulated["client_addr"],
            "0",
            "0",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert recv.stdout is not None and recv.stdout.readline().strip() == "listening"
    # 300 packets of 1000 bytes, offered at 800 kbit/s: the link carries 256 kbit/s.
    subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            emulated["server_ns"],
            sys.executable,
            "-c",
            UDP_PROBE,
            "send",
            emulated["client_addr"],
            "300",
            "1000",
            "0.01",
        ],
        check=True,
        timeout=30,
    )
    out = json.loads(recv.communicate(timeout=30)[0].strip().splitlines()[-1])
    rate = out["n"] * 1000 * 8 / out["span"]
    assert 200_000 < rate < 280_000
    assert 0.28 < out["delay"] < 0.5
    # The queue holds 300 ms: most of the excess is dropped, as a real modem would.
    assert out["n"] < 200
