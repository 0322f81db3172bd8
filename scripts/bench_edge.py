"""Edge benchmark: the origin's CPU with 0, 1 and 4 county edges of N classrooms each.

    python -m scripts.bench_edge --edges 0 1 4 --classrooms-per-edge 16 --seconds 10 --repeat 3

The origin is media.relay.relay.Relay alone in a process, a synthetic teacher
publishing to it (scripts/bench_fanout.py's pieces: its relay process, its light
counting classrooms, its CPU reading from /proc/<pid>/stat). Each edge is a process
of its own: a Relay fed by one pull of the lesson from the origin
(media.relay.upstream, every layer on one peer connection) that serves its
classrooms, which run in one more process per edge. Every classroom receives the
teacher's top camera layer (no adaptation, as bench_fanout's default), and each
edge asks the origin for the layers its classrooms follow, as `classroom edge` does.

The claim measured: what the origin spends does not grow with the villages behind
an edge, and grows by one connection's packetizing per edge
(`origin_cpu_ratio_4_to_1`, the target being at most 1.2). With no edge the
origin's layers have no subscriber and pause: that row is its decoding alone.
Every socket is on 127.0.0.1. The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import multiprocessing.connection
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc.mediastreams import MediaStreamTrack

from classroom.roles import Role
from scripts.bench_fanout import (
    LESSON,
    LOOPBACK,
    Quiet,
    cpu_seconds,
    negotiate,
    negotiation_server,
    relay_process,
    worker_process,
)

MAX_EDGES = 8
MAX_CLASSROOMS_PER_EDGE = 64
MAX_SECONDS = 120
MAX_REPEAT = 5


# --- an edge process ------------------------------------------------------------------


def edge_process(
    origin_port: int, edge_id: str, conn: multiprocessing.connection.Connection
) -> None:
    asyncio.run(_edge(origin_port, edge_id, conn))


async def _edge(
    origin_port: int, edge_id: str, conn: multiprocessing.connection.Connection
) -> None:
    from media.relay.relay import Relay
    from media.relay.upstream import Upstream
    from media.settings import RelaySettings

    settings = RelaySettings(host_addresses=LOOPBACK, adaptive=False)
    relay = Relay(settings)
    upstream = Upstream(LESSON, settings, time.monotonic)
    offer = await upstream.offer()
    await upstream.accept(await negotiate(origin_port, edge_id, Role.OBSERVER, offer, feed=True))
    sending: set[asyncio.Task[None]] = set()

    async def want(lines: tuple[int, ...]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", origin_port)
        request = {"participant": edge_id, "role": "observer", "want": list(lines)}
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        await reader.readline()
        writer.close()

    def wanted(lines: tuple[int, ...]) -> None:
        task = asyncio.create_task(want(lines))
        sending.add(task)
        task.add_done_callback(sending.discard)

    upstream.on_wanted = wanted
    relay.set_upstream(LESSON, upstream.sources)
    gc.freeze()
    server = await negotiation_server(relay, [])
    conn.send(server.sockets[0].getsockname()[1])
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    server.close()
    await upstream.close()
    await relay.close()


# --- the conductor ---------------------------------------------------------------------


async def conduct(args: argparse.Namespace, edges: int) -> dict[str, Any]:
    from media.synthetic import MovingPicture, SyntheticParticipant, Tone

    ctx = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    origin_conn, origin_child = ctx.Pipe()
    origin = ctx.Process(target=relay_process, args=("ours", origin_child), daemon=True)
    origin.start()
    origin_port = await loop.run_in_executor(None, origin_conn.recv)

    camera = MovingPicture(640, 360, 15)
    videos: list[MediaStreamTrack] = [Quiet("video"), camera]
    teacher = SyntheticParticipant(
        Role.TEACHER, send_video=videos.pop, send_audio=Tone, decode=False
    )
    offer = await teacher.offer()
    await teacher.accept(await negotiate(origin_port, "teacher", Role.TEACHER, offer))

    edge_procs: list[tuple[Any, Any]] = []
    workers: list[tuple[Any, Any]] = []
    try:
        for e in range(edges):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=edge_process, args=(origin_port, f"edge{e}", child), daemon=True
            )
            proc.start()
            edge_procs.append((proc, parent))
        for e, (_, pipe) in enumerate(edge_procs):
            edge_port = await loop.run_in_executor(None, pipe.recv)
            ids = [f"edge{e}-room{i:02d}" for i in range(args.classrooms_per_edge)]
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_process, args=(edge_port, ids, child), daemon=True)
            proc.start()
            workers.append((proc, parent))
        for _, pipe in workers:
            await loop.run_in_executor(None, pipe.recv)  # "ready"
        await asyncio.sleep(1.0)  # the join storm's keyframes settle

        sent_before = camera.frames_sent
        cpu_before, t_before = cpu_seconds(origin.pid), time.monotonic()
        edges_before = sum(cpu_seconds(p.pid) for p, _ in edge_procs)
        load_before = os.getloadavg()[0]
        origin_conn.send("start")
        for _, pipe in workers:
            pipe.send("start")
        await asyncio.sleep(args.seconds)
        for _, pipe in workers:
            pipe.send("stop")
        cpu_after, t_after = cpu_seconds(origin.pid), time.monotonic()
        edges_after = sum(cpu_seconds(p.pid) for p, _ in edge_procs)
        origin_conn.send("measured")
        _layers, loop_cpu_s = await loop.run_in_executor(None, origin_conn.recv)
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
        for proc, pipe in edge_procs:
            if proc.is_alive():
                pipe.send("stop")
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()
        await teacher.close()
        origin_conn.send("stop")
        origin.join(timeout=15)
        if origin.is_alive():
            origin.kill()

    window = t_after - t_before
    video_fps = [r["video"] / window for r in results.values()]
    firsts = [r["first_frame_s"] for r in results.values()]
    return {
        "edges": edges,
        "classrooms": len(results),
        "seconds": round(window, 2),
        "origin_cpu_cores": round((cpu_after - cpu_before) / window, 4),
        "origin_loop_cores": round(loop_cpu_s / window, 4),
        "edges_cpu_cores": round((edges_after - edges_before) / window, 4),
        "source_fps": round((sent_after - sent_before) / window, 2),
        "delivered_fps_mean": round(sum(video_fps) / len(video_fps), 2) if video_fps else None,
        "delivered_fps_min": round(min(video_fps), 2) if video_fps else None,
        "classrooms_without_video": sum(1 for f in firsts if f is None),
        "load_average_1m": round((load_before + os.getloadavg()[0]) / 2, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edges", type=int, nargs="+", default=[0, 1, 4])
    parser.add_argument("--classrooms-per-edge", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each edge count")
    args = parser.parse_args()
    if not all(0 <= e <= MAX_EDGES for e in args.edges):
        parser.error(f"--edges must be within 0..{MAX_EDGES}")
    if not 1 <= args.classrooms_per_edge <= MAX_CLASSROOMS_PER_EDGE:
        parser.error(f"--classrooms-per-edge must be within 1..{MAX_CLASSROOMS_PER_EDGE}")
    if not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be within 1..{MAX_SECONDS}")
    if not 1 <= args.repeat <= MAX_REPEAT:
        parser.error(f"--repeat must be within 1..{MAX_REPEAT}")

    runs = []
    for _ in range(args.repeat):
        for edges in args.edges:
            # Interleaved in one invocation, so that all see the same machine load.
            measured = conduct(args, edges)
            run = asyncio.run(asyncio.wait_for(measured, timeout=args.seconds + 240))
            print(run, file=sys.stderr, flush=True)
            runs.append(run)
    # The origin's CPU moves from run to run with its encoders' work (keyframes asked
    # for, the picture's motion): the median of each count is compared.
    by_edges: dict[int, list[float]] = {}
    for run in runs:
        by_edges.setdefault(run["edges"], []).append(run["origin_cpu_cores"])
    medians = {edges: statistics.median(cores) for edges, cores in by_edges.items()}
    result: dict[str, Any] = {
        "classrooms_per_edge": args.classrooms_per_edge,
        "runs": runs,
        "origin_cpu_cores_median": {str(e): round(c, 4) for e, c in sorted(medians.items())},
        "machine_cpus": os.cpu_count(),
    }
    if medians.get(1) and 4 in medians:
        result["origin_cpu_ratio_4_to_1"] = round(medians[4] / medians[1], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
