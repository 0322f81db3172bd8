"""A weak rural link between two network namespaces, emulated in user space.

This machine's kernel has tbf and htb but no netem, so delay, jitter and bursty
loss cannot come from `tc`. Instead two namespaces are joined by a pair of TUN
devices whose packets pass through this process, which applies per direction:
a rate (serialization at the link's bit rate), a tail-drop queue limit, a one-way
delay with jitter (order kept), random loss and Gilbert-Elliott burst loss. The
conditions can change over time (a profile's phases), like a rural link whose
capacity drops when the village wakes up.

    python -m scripts.linkemu --profile step      # prints "ready {...}", runs until SIGTERM

SIGUSR2 cuts the link (every packet dropped both ways, what was in flight too, as
when a village's radio link goes down); SIGHUP restores it. SIGUSR1 restarts the
profile's clock.

The server side namespace gets 198.18.0.1 and the classroom side 198.18.0.2
(198.18.0.0/15 is reserved for benchmarking networks, RFC 2544). Everything is
removed on exit. Root is required.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import heapq
import json
import os
import random
import selectors
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

SERVER_ADDR = "198.18.0.1"
CLIENT_ADDR = "198.18.0.2"


@dataclass(frozen=True)
class LinkParams:
    """One direction of a link. Loss figures are probabilities per packet."""

    rate_bps: int
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    # Gilbert-Elliott: chance to enter the bad state from the good one, and to leave
    # it; every packet sent in the bad state is lost. Mean burst = 1 / burst_exit.
    burst_enter: float = 0.0
    burst_exit: float = 1.0
    # Tail drop once this much sending time is queued (a modem's buffer).
    queue_ms: float = 300.0


def bursty(rate_bps: int, delay_ms: float, loss: float, mean_burst: float) -> LinkParams:
    """Gilbert-Elliott parameters giving `loss` on average in bursts of `mean_burst`."""
    exit_ = 1.0 / mean_burst
    enter = loss * exit_ / (1.0 - loss)
    return LinkParams(rate_bps, delay_ms, burst_enter=enter, burst_exit=exit_)


@dataclass(frozen=True)
class Phase:
    at_s: float
    down: LinkParams  # server -> classroom
    up: LinkParams  # classroom -> server


@dataclass(frozen=True)
class Profile:
    name: str
    phases: tuple[Phase, ...]

    def at(self, t: float) -> Phase:
        current = self.phases[0]
        for phase in self.phases:
            if phase.at_s <= t:
                current = phase
        return current


def _both(at_s: float, params: LinkParams) -> Phase:
    return Phase(at_s, params, params)


# The rural links the product is built for (issue: weak-link delivery).
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("geo", (_both(0, LinkParams(256_000, 300, jitter_ms=10, loss=0.01)),)),
        Profile("3g", (_both(0, replace(bursty(512_000, 150, 0.03, 3), jitter_ms=20)),)),
        Profile("good", (_both(0, LinkParams(2_000_000, 50, jitter_ms=5, loss=0.005)),)),
        Profile("loss10", (_both(0, LinkParams(2_000_000, 50, loss=0.10)),)),
        Profile(
            "step",
            (
                _both(0, LinkParams(2_000_000, 50)),
                _both(20, LinkParams(300_000, 50)),
                _both(50, LinkParams(2_000_000, 50)),
            ),
        ),
        Profile("clear", (_both(0, LinkParams(100_000_000, 0, queue_ms=1000)),)),
    )
}


@dataclass
class DirectionStats:
    packets: int = 0
    delivered: int = 0
    lost_random: int = 0
    lost_burst: int = 0
    dropped_queue: int = 0
    # Dropped while the link was cut (Emulator.cut).
    lost_cut: int = 0
    bytes_delivered: int = 0


@dataclass
class Direction:
    """The scheduler of one direction: decides when (or whether) a packet arrives.

    Pure apart from its seeded random source; times are seconds on any clock.
    """

    params: LinkParams
    rng: random.Random
    stats: DirectionStats = field(default_factory=DirectionStats)
    _busy_until: float = 0.0
    _last_delivery: float = 0.0
    _bad: bool = False

    def admit(self, size: int, now: float) -> float | None:
        """The time this packet of `size` bytes reaches the far side, or None if lost."""
        p = self.params
        self.stats.packets += 1
        # The burst state moves once per packet (Gilbert-Elliott).
        if self._bad:
            self._bad = self.rng.random() >= p.burst_exit
        else:
            self._bad = self.rng.random() < p.burst_enter
        if self._bad:
            self.stats.lost_burst += 1
            return None
        if p.loss and self.rng.random() < p.loss:
            self.stats.lost_random += 1
            return None
        start = max(now, self._busy_until)
        if start - now > p.queue_ms / 1000:
            self.stats.dropped_queue += 1
            return None
        # Serialization: a link of rate R needs 8*size/R seconds per packet.
        self._busy_until = start + 8 * size / p.rate_bps
        jitter = self.rng.uniform(-p.jitter_ms, p.jitter_ms) / 1000 if p.jitter_ms else 0.0
        arrival = self._busy_until + max(0.0, p.delay_ms / 1000 + jitter)
        # Jitter never reorders: a packet cannot overtake the one before it.
        arrival = max(arrival, self._last_delivery)
        self._last_delivery = arrival
        self.stats.delivered += 1
        self.stats.bytes_delivered += size
        return arrival


# --- plumbing: TUN devices in namespaces ------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


@dataclass
class Namespaces:
    server: str
    client: str


@contextlib.contextmanager
def namespaces(tag: str) -> Iterator[tuple[Namespaces, int, int]]:
    """Two namespaces joined by TUN devices whose other ends are returned as fds."""
    ns = Namespaces(f"cls-srv-{tag}", f"cls-cli-{tag}")
    fds: list[int] = []
    made: list[str] = []
    try:
        for name, addr, peer, dev in (
            (ns.server, SERVER_ADDR, CLIENT_ADDR, f"tsrv{tag}"[:15]),
            (ns.client, CLIENT_ADDR, SERVER_ADDR, f"tcli{tag}"[:15]),
        ):
            _ip("netns", "add", name)
            made.append(name)
            fds.append(_open_tun(dev))
            # A TUN device keeps its file descriptor when it moves to another namespace.
            _ip("link", "set", dev, "netns", name)
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("-n", name, "addr", "add", addr, "peer", peer, "dev", dev)
            _ip("-n", name, "link", "set", dev, "up")
        yield ns, fds[0], fds[1]
    finally:
        for fd in fds:
            os.close(fd)
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Emulator:
    """Pumps packets between the two TUN fds through a profile's link model."""

    def __init__(self, profile: Profile, server_fd: int, client_fd: int, seed: int = 1) -> None:
        self.profile = profile
        self.fds = {"down": (server_fd, client_fd), "up": (client_fd, server_fd)}
        rng = random.Random(seed)
        phase = profile.at(0)
        self.dirs = {
            "down": Direction(phase.down, random.Random(rng.random())),
            "up": Direction(phase.up, random.Random(rng.random())),
        }
        self.t0 = time.monotonic()
        self._queue: list[tuple[float, int, str, bytes]] = []
        self._n = 0
        self.running = True
        self.cut = False

    def set_cut(self, cut: bool) -> None:
        """Cut the link (drop everything, in flight included) or restore it."""
        self.cut = cut
        if cut:
            for _, _, name, _ in self._queue:
                self.dirs[name].stats.lost_cut += 1
            self._queue.clear()

    def restart_clock(self) -> None:
        """Phases count from now (SIGUSR1): a benchmark aligns the profile with its run."""
        self.t0 = time.monotonic()

    def _update_phase(self, now: float) -> None:
        phase = self.profile.at(now - self.t0)
        self.dirs["down"].params = phase.down
        self.dirs["up"].params = phase.up

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.fds["down"][0], selectors.EVENT_READ, "down")
        sel.register(self.fds["up"][0], selectors.EVENT_READ, "up")
        while self.running:
            now = time.monotonic()
            timeout = 0.05
            if self._queue:
                timeout = min(timeout, max(0.0, self._queue[0][0] - now))
            for key, _ in sel.select(timeout):
                name = str(key.data)
                self._read(name, time.monotonic())
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, name, packet = heapq.heappop(self._queue)
                if self.cut:
                    self.dirs[name].stats.lost_cut += 1
                    continue
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self.fds[name][1], packet)

    def _read(self, name: str, now: float) -> None:
        self._update_phase(now)
        src = self.fds[name][0]
        for _ in range(64):
            try:
                packet = os.read(src, 65536)
            except BlockingIOError:
                return
            if self.cut:
                self.dirs[name].stats.lost_cut += 1
                continue
            arrival = self.dirs[name].admit(len(packet), now)
            if arrival is not None:
                self._n += 1
                heapq.heappush(self._queue, (arrival, self._n, name, packet))

    def stats(self) -> dict[str, object]:
        return {name: asdict(d.stats) for name, d in self.dirs.items()}


def measure_across(
    profile: str, tag: str, inner_env: str, inner: list[str], timeout_s: float, seed: int = 1
) -> dict[str, Any]:
    """A measurement across the emulated link, as the benchmarks take it: the emulator
    started on `profile`; `python -m <inner...>` run in the server's namespace with
    `inner_env` set to "<client namespace>,<emulator pid>" (so that it can start its
    client there and cut the link); the JSON object on its last line, with the link's
    own counts under "link". Its standard error is passed on. `seed`: the emulator's
    random source, so which packets it loses: the same seed, the same losses at the
    same packet counts, run after run."""
    seeded = ("--seed", str(seed))
    emulator = subprocess.Popen(
        [sys.executable, "-m", "scripts.linkemu", "--profile", profile, "--tag", tag, *seeded],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        line = emulator.stdout.readline()
        if not line.startswith("ready "):
            raise SystemExit(f"the link emulator did not start: {line!r}")
        link = json.loads(line[6:])
        env = {**os.environ, inner_env: f"{link['client_ns']},{emulator.pid}"}
        command = ["ip", "netns", "exec", link["server_ns"], sys.executable, "-m", *inner]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
        sys.stderr.write(done.stderr[-4000:])
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise SystemExit(f"the measurement failed (exit {done.returncode})")
        result: dict[str, Any] = json.loads(lines[-1])
    finally:
        emulator.send_signal(signal.SIGTERM)
        out, _ = emulator.communicate(timeout=15)
    stats = [s for s in out.splitlines() if s.startswith("stats ")]
    if stats:
        result["link"] = json.loads(stats[-1][6:])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), required=True)
    parser.add_argument("--tag", default=str(os.getpid() % 100000))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with namespaces(args.tag) as (ns, server_fd, client_fd):
        emu = Emulator(PROFILES[args.profile], server_fd, client_fd, args.seed)

        def stop(*_: object) -> None:
            emu.running = False

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, lambda *_: emu.restart_clock())
        signal.signal(signal.SIGUSR2, lambda *_: emu.set_cut(True))
        signal.signal(signal.SIGHUP, lambda *_: emu.set_cut(False))
        ready = {
            "server_ns": ns.server,
            "client_ns": ns.client,
            "server_addr": SERVER_ADDR,
            "client_addr": CLIENT_ADDR,
            "profile": args.profile,
        }
        print("ready " + json.dumps(ready), flush=True)
        emu.run()
        print("stats " + json.dumps(emu.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
