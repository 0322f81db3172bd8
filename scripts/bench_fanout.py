"""Fan-out benchmark: one synthetic teacher, N synthetic classrooms, the relay alone in a process.

    python -m scripts.bench_fanout --classrooms 16 --seconds 10 --relay ours
    python -m scripts.bench_fanout --classrooms 8 --seconds 10 --relay naive
    python -m scripts.bench_fanout --classrooms 64 --seconds 20 --compare-naive 8

`ours` is media.relay.relay.Relay (encode once per layer, same packets to every sender);
`naive` is aiortc's MediaRelay with one encoder per classroom, the baseline
(scripts/naive_relay.py, the same one bench_weaklink serves).
The relay process's CPU (user+system, all threads) is read from /proc/<pid>/stat
over the measured window; `server_loop_cores` is its event loop's thread alone,
the one that bounds how many classrooms a process can take. Classrooms run in a
few worker processes; they count the frames aiortc's jitter buffer completes and
only a sample of them decodes (decoding 64 VP8 streams would measure the load
generator, not the relay).
Every socket is on 127.0.0.1. The last line printed is a JSON object.

Every classroom receives the teacher's full camera layer, as the naive relay sends
everyone its one encoding: 64 aiortc clients on a small machine starve for CPU and
report links that are not there, and an adaptive relay would then send less and
look cheaper. `--adaptive` lets each classroom's feedback choose its layers.

`--compare-naive N` then measures the naive relay with N classrooms in the same
invocation and adds `cpu_ratio_vs_naive` (naive CPU per classroom over ours):
the machine's load moves both figures, their ratio much less.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc.mediastreams import MediaStreamTrack

from classroom.roles import Role
from media.gateway import MediaError
from media.slots import Slot
from scripts.stack_sampler import StackSampler

LOOPBACK = ("127.0.0.1",)
LESSON = "bench"
MAX_CLASSROOMS = 256
MAX_SECONDS = 300
CONNECT_TIMEOUT_S = 60.0
# BENCH_PROFILE=<file>: the relay process samples its stacks over the measured window
# and writes where its CPU went there (scripts/stack_sampler.py).
PROFILE_ENV = "BENCH_PROFILE"


# --- the relay process --------------------------------------------------------------


def relay_process(
    kind: str, conn: multiprocessing.connection.Connection, adaptive: bool = False
) -> None:
    asyncio.run(_serve(kind, conn, adaptive))


async def _serve(
    kind: str, conn: multiprocessing.connection.Connection, adaptive: bool = False
) -> None:
    from media.relay.relay import Relay
    from media.settings import RelaySettings
    from scripts.naive_relay import NaiveRelay

    gateway: Any = (
        Relay(RelaySettings(host_addresses=LOOPBACK, adaptive=adaptive))
        if kind == "ours"
        else NaiveRelay(LOOPBACK)
    )
    gc.freeze()  # as `classroom serve` does, for both relays

    classrooms: list[str] = []
    server = await negotiation_server(gateway, classrooms)
    conn.send(server.sockets[0].getsockname()[1])
    loop = asyncio.get_running_loop()
    profile_to = os.environ.get(PROFILE_ENV)
    sampler = StackSampler() if profile_to else None
    loop_cpu_at = time.thread_time()
    while (message := await loop.run_in_executor(None, conn.recv)) != "stop":
        # "start" and "measured" bound the measured window.
        if message == "start":
            # This runs on the event loop's thread: its own CPU, apart from the
            # encoders' and decoders' threads.
            loop_cpu_at = time.thread_time()
            if sampler is not None:
                sampler.start()
        elif message == "measured":
            loop_cpu_s = time.thread_time() - loop_cpu_at
            if sampler is not None and profile_to:
                sampler.stop()
                Path(profile_to).write_text(sampler.report())
            conn.send((camera_layers(gateway, classrooms), loop_cpu_s))
    server.close()
    await gateway.close()


async def negotiation_server(gateway: Any, classrooms: list[str]) -> asyncio.Server:
    """Offers in, answers out, one JSON line each way, on a port of 127.0.0.1: how the
    synthetic participants reach a relay (`negotiate`). Classrooms are listed in
    `classrooms`; a request with `"feed": true` is an edge relay's pull, one with
    `"want"` the lines of it the edge's classrooms follow (scripts/bench_edge.py,
    media.relay.feed)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        request = json.loads(line)
        if request["role"] == Role.CLASSROOM.value:
            classrooms.append(request["participant"])
        try:
            if "want" in request:
                gateway.want_feed(LESSON, request["participant"], request["want"])
                answer = ""
            elif request.get("feed"):
                answer = await gateway.negotiate_feed(
                    LESSON, request["participant"], request["sdp"]
                )
            else:
                answer = await gateway.negotiate(
                    LESSON, request["participant"], Role(request["role"]), request["sdp"]
                )
            response = {"sdp": answer}
        except MediaError as exc:
            response = {"error": str(exc)}
        writer.write(json.dumps(response).encode() + b"\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)


def camera_layers(gateway: Any, classrooms: list[str]) -> dict[str, int] | None:
    """How many classrooms get each layer of the teacher's camera now (ours only).

    The relay adapts each classroom's layers to its REMB, and a load generator
    short of CPU reports less: runs compare only at a similar mix.
    """
    if not hasattr(gateway, "outgoing_track"):
        return None
    layers: dict[str, int] = {}
    for cid in classrooms:
        try:
            track = gateway.outgoing_track(LESSON, cid, Slot.TEACHER_CAMERA)
        except MediaError:  # disconnected
            track = None
        name = "gone" if track is None else track.layer_name
        layers[name] = layers.get(name, 0) + 1
    return layers


async def negotiate(
    port: int, participant: str, role: Role, sdp: str, *, feed: bool = False
) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    request = {"participant": participant, "role": role.value, "sdp": sdp, "feed": feed}
    writer.write(json.dumps(request).encode())
    writer.write(b"\n")
    await writer.drain()
    response = json.loads(await reader.readline())
    writer.close()
    if "error" in response:
        raise RuntimeError(response["error"])
    return str(response["sdp"])


# --- synthetic participants -----------------------------------------------------------


class Quiet(MediaStreamTrack):
    """A sending slot that never produces (the classrooms' own camera and mic)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never = asyncio.Event()

    async def recv(self) -> Any:
        await self._never.wait()


def counting_decoders(sample: int) -> None:
    """The first `sample` video decoders of the process decode; the others count."""
    import av
    from aiortc.codecs import get_decoder

    from media.adapter.hooks import replace_decoders

    made = {"video": 0}

    class Counting:
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def decode(self, encoded_frame: Any) -> list[Any]:
            if self.kind == "video":
                frame = av.VideoFrame(2, 2, "yuv420p")
            else:
                frame = av.AudioFrame(format="s16", layout="mono", samples=1)
            frame.pts = encoded_frame.timestamp
            return [frame]

    def factory(codec: Any) -> Any:
        kind = codec.mimeType.split("/")[0].lower()
        if kind == "video":
            made["video"] += 1
            if made["video"] <= sample:
                return get_decoder(codec)
        return Counting(kind)

    replace_decoders(factory)


def worker_process(port: int, ids: list[str], conn: multiprocessing.connection.Connection) -> None:
    counting_decoders(sample=1)
    asyncio.run(_classrooms(port, ids, conn))


async def _classrooms(
    port: int, ids: list[str], conn: multiprocessing.connection.Connection
) -> None:
    from media.synthetic import SyntheticParticipant

    loop = asyncio.get_running_loop()
    rooms: dict[str, SyntheticParticipant] = {}
    started: dict[str, float] = {}
    limit = asyncio.Semaphore(4)

    async def join(cid: str) -> None:
        async with limit:
            room = SyntheticParticipant(
                Role.CLASSROOM,
                send_video=lambda: Quiet("video"),
                send_audio=lambda: Quiet("audio"),
                decode=False,
            )
            rooms[cid] = room
            started[cid] = time.monotonic()
            await room.accept(await negotiate(port, cid, Role.CLASSROOM, await room.offer()))

    await asyncio.gather(*(join(cid) for cid in ids))
    with_first: dict[str, float] = {}
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while time.monotonic() < deadline and len(with_first) < len(ids):
        await asyncio.sleep(0.05)
        for cid, room in rooms.items():
            first = room.received[Slot.TEACHER_CAMERA].first_frame_at
            if first is not None:
                with_first[cid] = first - started[cid]
    conn.send("ready")

    def snapshot() -> dict[str, tuple[int, int, int]]:
        return {
            cid: (
                room.received[Slot.TEACHER_CAMERA].frames,
                room.received[Slot.TEACHER_AUDIO].frames,
                len(room.received[Slot.TEACHER_CAMERA].sizes),
            )
            for cid, room in rooms.items()
        }

    await loop.run_in_executor(None, conn.recv)  # "start"
    before = snapshot()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    after = snapshot()
    conn.send(
        {
            cid: {
                "video": after[cid][0] - before[cid][0],
                "audio": after[cid][1] - before[cid][1],
                "first_frame_s": with_first.get(cid),
            }
            for cid in ids
        }
    )
    await loop.run_in_executor(None, conn.recv)  # "close"
    await asyncio.gather(*(room.close() for room in rooms.values()))


# --- the conductor ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of proc(5), counted from 1.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Teacher:
    participant: Any
    frames_at_start: int = 0


async def conduct(args: argparse.Namespace, kind: str, classrooms: int) -> dict[str, Any]:
    from media.synthetic import MovingPicture, SyntheticParticipant, Tone

    ctx = multiprocessing.get_context("spawn")
    relay_conn, relay_child = ctx.Pipe()
    relay = ctx.Process(target=relay_process, args=(kind, relay_child, args.adaptive), daemon=True)
    relay.start()
    loop = asyncio.get_running_loop()
    port = await loop.run_in_executor(None, relay_conn.recv)

    camera = MovingPicture(640, 360, 15)
    # The teacher's first video slot is the camera; the screen slot stays quiet
    # (the naive baseline relays camera and audio only).
    videos: list[MediaStreamTrack] = [Quiet("video"), camera]
    teacher = SyntheticParticipant(
        Role.TEACHER, send_video=videos.pop, send_audio=Tone, decode=False
    )
    await teacher.accept(await negotiate(port, "teacher", Role.TEACHER, await teacher.offer()))

    ids = [f"room{i:03d}" for i in range(classrooms)]
    n_workers = max(1, min(args.workers, len(ids)))
    workers = []
    for w in range(n_workers):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=worker_process, args=(port, ids[w::n_workers], child), daemon=True
        )
        proc.start()
        workers.append((proc, parent))
    try:
        for _, pipe in workers:
            await loop.run_in_executor(None, pipe.recv)  # "ready"
        await asyncio.sleep(1.0)  # let the join storm's keyframes settle

        sent_before = camera.frames_sent  # frames the teacher's camera produced
        cpu_before, t_before = cpu_seconds(relay.pid), time.monotonic()
        clients_before = sum(cpu_seconds(proc.pid) for proc, _ in workers)
        relay_conn.send("start")
        # For attaching a profiler (perf, py-spy) to the relay over the window.
        print(f"measuring {args.seconds:g} s, relay pid {relay.pid}", file=sys.stderr, flush=True)
        for _, pipe in workers:
            pipe.send("start")
        await asyncio.sleep(args.seconds)
        for _, pipe in workers:
            pipe.send("stop")
        cpu_after, t_after = cpu_seconds(relay.pid), time.monotonic()
        relay_conn.send("measured")
        layers, loop_cpu_s = await loop.run_in_executor(None, relay_conn.recv)
        clients_after = sum(cpu_seconds(proc.pid) for proc, _ in workers)
        sent_after = camera.frames_sent
        results: dict[str, Any] = {}
        for _, pipe in workers:
            results.update(await loop.run_in_executor(None, pipe.recv))
        for _, pipe in workers:
            pipe.send("close")
    finally:
        for proc, _ in workers:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()
        await teacher.close()
        relay_conn.send("stop")
        relay.join(timeout=15)
        if relay.is_alive():
            relay.kill()

    window = t_after - t_before
    video_fps = [r["video"] / window for r in results.values()]
    audio_pps = [r["audio"] / window for r in results.values()]
    firsts = [r["first_frame_s"] for r in results.values()]
    cores = (cpu_after - cpu_before) / window
    return {
        "relay": kind,
        "classrooms": classrooms,
        "seconds": round(window, 2),
        "server_cpu_cores": round(cores, 4),
        "cpu_per_classroom": round(cores / classrooms, 5),
        # The event loop's thread alone. Every classroom's sending runs on it, the
        # encoders on other threads: it is what runs out first, at one core.
        "server_loop_cores": round(loop_cpu_s / window, 4),
        "source_fps": round((sent_after - sent_before) / window, 2),
        "delivered_fps_min": round(min(video_fps), 2),
        "delivered_fps_mean": round(sum(video_fps) / len(video_fps), 2),
        "audio_packets_per_s_min": round(min(audio_pps), 2),
        "time_to_first_frame_max_s": (
            None if None in firsts else round(max(f for f in firsts if f is not None), 3)
        ),
        "classrooms_without_video": sum(1 for f in firsts if f is None),
        "camera_layers_at_end": layers,
        # The load generator shares the machine: when it saturates the cores,
        # delivered_fps measures the clients, not the relay.
        "client_cpu_cores": round((clients_after - clients_before) / window, 3),
        "machine_cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classrooms", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--relay", choices=("ours", "naive"), default="ours")
    parser.add_argument("--workers", type=int, default=4, help="classroom processes")
    parser.add_argument(
        "--adaptive",
        action="store_true",
        help="let each classroom's RTCP feedback choose its layers (default: all get the top)",
    )
    parser.add_argument(
        "--compare-naive",
        type=int,
        nargs="?",
        const=8,
        metavar="N",
        help="then run the naive relay with N classrooms (default 8) and add the CPU ratio",
    )
    args = parser.parse_args()
    for name, value in (("--classrooms", args.classrooms), ("--compare-naive", args.compare_naive)):
        if value is not None and not 1 <= value <= MAX_CLASSROOMS:
            parser.error(f"{name} must be within 1..{MAX_CLASSROOMS}")
    if not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be within 1..{MAX_SECONDS}")

    def run(kind: str, classrooms: int) -> dict[str, Any]:
        measured = conduct(args, kind, classrooms)
        return asyncio.run(asyncio.wait_for(measured, timeout=args.seconds + 240))

    result = run(args.relay, args.classrooms)
    if args.compare_naive is not None:
        # One after the other in one invocation, so both see the same machine load.
        naive = run("naive", args.compare_naive)
        result["naive_classrooms"] = naive["classrooms"]
        result["naive_cpu_per_classroom"] = naive["cpu_per_classroom"]
        result["naive_delivered_fps_mean"] = naive["delivered_fps_mean"]
        result["cpu_ratio_vs_naive"] = round(
            naive["cpu_per_classroom"] / result["cpu_per_classroom"], 2
        )
    result["adaptive"] = args.adaptive
    print(json.dumps(result))


if __name__ == "__main__":
    main()
