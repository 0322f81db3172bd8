"""Fan-out benchmark: one synthetic teacher, N synthetic classrooms, the relay alone in a process.

    python -m scripts.bench_fanout --classrooms 16 --seconds 10 --relay ours
    python -m scripts.bench_fanout --classrooms 8 --seconds 10 --relay naive
    python -m scripts.bench_fanout --classrooms 64 --seconds 20 --compare-naive 8
    python -m scripts.bench_fanout --workers 2 --light --classrooms 32 --seconds 20
    python -m scripts.bench_fanout --workers 2 --span --light --classrooms 16 --seconds 10

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

`--workers N` serves the relay as `classroom serve --workers N` does, in N relay worker
processes (media.workers.gateway.WorkerGateway, the same code), with one lesson per
worker (`--lessons`), each its own teacher, the classrooms dealt out over the lessons.
Each worker's CPU and its event loop's (the worker's main thread, from
/proc/<pid>/task/<pid>/stat) are read over the window: `per_worker` gives each one's
CPU per classroom and `loop_ceiling_classrooms`, the classrooms at which its loop
would fill a core at the measured rate. With N > 1 the same run then measures one
worker with its share of the classrooms (classrooms / N, one lesson) and adds
`cpu_per_classroom_ratio_vs_one_worker`: what spreading costs per classroom.
`ceiling_classrooms_estimate` extrapolates the run to the classrooms at which the workers'
loops or the machine's cores would be full (`ceiling`), the teachers' and encoders' cost
held per lesson; `teachers_cpu_cores` is the synthetic teachers' (this process's).

`--span` (with `--workers N`) puts one lesson over the workers (media.workers.follower):
the gateway's capacity is set so that its home worker takes the teacher and its share of
the classrooms (classrooms / N) and the others follow it, each pulling the lesson's
layers from the home and sending its classrooms' cameras up (here they send nothing:
an uplink is its ICE and DTLS). `per_worker` then counts each worker's own classrooms,
and `span` compares the home worker with the run of one worker with the same share:
`home_added_cores_per_follower` and the same in that run's classrooms
(`home_added_per_follower_in_classrooms`; a pull sends what one classroom receives).

`--light` makes most classrooms lighter to simulate, so that a small machine drives more of
them: ICE and DTLS-SRTP as before (every packet decrypted), then the RTP packets are
only counted (a video frame at each marker bit), not put through aiortc's jitter buffer
and decoder; one classroom in LIGHT_DECODE_EVERY is a full aiortc receiver that decodes
every frame, so one frame in that many is decoded, a check that the video is real.

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
# and writes where its CPU went there (scripts/stack_sampler.py), and its folded
# stacks beside it (<file>.folded).
PROFILE_ENV = "BENCH_PROFILE"
MAX_WORKERS = 16
# --light: one classroom in this many receives through aiortc's whole path and decodes.
LIGHT_DECODE_EVERY = 50


# --- the relay process --------------------------------------------------------------


def relay_process(
    kind: str,
    conn: multiprocessing.connection.Connection,
    adaptive: bool = False,
    workers: int = 0,
    max_peers: int | None = None,
) -> None:
    asyncio.run(_serve(kind, conn, adaptive, workers, max_peers))


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """A thread's CPU (user+system): a worker's main thread is its event loop's."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers_cpu(gateway: Any) -> dict[int, tuple[float, float]]:
    """Each relay worker's CPU and its event loop's, in seconds so far."""
    return {
        i: (cpu_seconds(pid), thread_cpu_seconds(pid, pid)) for i, pid in enumerate(gateway.pids)
    }


async def _serve(
    kind: str,
    conn: multiprocessing.connection.Connection,
    adaptive: bool = False,
    workers: int = 0,
    max_peers: int | None = None,
) -> None:
    from media.relay.relay import Relay
    from media.settings import RelaySettings
    from media.workers.gateway import WorkerGateway
    from scripts.naive_relay import NaiveRelay

    settings = RelaySettings(host_addresses=LOOPBACK, adaptive=adaptive)
    gateway: Any
    if kind == "naive":
        gateway = NaiveRelay(LOOPBACK)
    elif workers:
        gateway = WorkerGateway(settings, workers, max_peers=max_peers)
    else:
        gateway = Relay(settings)
    gc.freeze()  # as `classroom serve` does, for both relays

    classrooms: list[str] = []
    server = await negotiation_server(gateway, classrooms)
    conn.send(server.sockets[0].getsockname()[1])
    loop = asyncio.get_running_loop()
    profile_to = os.environ.get(PROFILE_ENV)
    sampler = StackSampler() if profile_to else None
    loop_cpu_at = time.thread_time()
    workers_at: dict[int, tuple[float, float]] = {}
    while (message := await loop.run_in_executor(None, conn.recv)) != "stop":
        # "start" and "measured" bound the measured window.
        if message == "start":
            # This runs on the event loop's thread: its own CPU, apart from the
            # encoders' and decoders' threads.
            loop_cpu_at = time.thread_time()
            if workers:
                workers_at = workers_cpu(gateway)
            if sampler is not None:
                sampler.start()
        elif message == "measured":
            loop_cpu_s = time.thread_time() - loop_cpu_at
            per_worker: dict[int, dict[str, Any]] = {}
            if workers:
                for i, (cpu, loop_cpu) in workers_cpu(gateway).items():
                    per_worker[i] = {
                        "cpu_s": cpu - workers_at[i][0],
                        "loop_cpu_s": loop_cpu - workers_at[i][1],
                        "served": [],
                    }
                for lesson in {r.split("/")[0] for r in classrooms}:
                    index = gateway.worker_of(lesson)
                    if index is not None:
                        per_worker[index].setdefault("lessons", []).append(lesson)
                    for follower in gateway.followers(lesson):
                        per_worker[follower].setdefault("follows", []).append(lesson)
                # Where each classroom is served (a lesson may span workers).
                for cid in classrooms:
                    index = gateway.serving(cid.split("/")[0], cid)
                    if index is not None:
                        per_worker[index]["served"].append(cid)
            if sampler is not None and profile_to:
                sampler.stop()
                Path(profile_to).write_text(sampler.report())
                Path(profile_to + ".folded").write_text(sampler.folded())
            conn.send((camera_layers(gateway, classrooms), loop_cpu_s, per_worker))
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
        lesson = request.get("lesson", LESSON)
        if request["role"] == Role.CLASSROOM.value:
            classrooms.append(request["participant"])
        try:
            if "want" in request:
                gateway.want_feed(lesson, request["participant"], request["want"])
                answer = ""
            elif request.get("feed"):
                answer = await gateway.negotiate_feed(
                    lesson, request["participant"], request["sdp"]
                )
            else:
                answer = await gateway.negotiate(
                    lesson, request["participant"], Role(request["role"]), request["sdp"]
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
            track = gateway.outgoing_track(cid.split("/")[0], cid, Slot.TEACHER_CAMERA)
        except MediaError:  # disconnected
            track = None
        name = "gone" if track is None else track.layer_name
        layers[name] = layers.get(name, 0) + 1
    return layers


async def negotiate(
    port: int, participant: str, role: Role, sdp: str, *, feed: bool = False
) -> str:
    """`participant`: "<lesson>/<name>", its lesson first; a bare name is in `LESSON`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    lesson = participant.split("/")[0] if "/" in participant else LESSON
    request = {
        "lesson": lesson, "participant": participant, "role": role.value, "sdp": sdp, "feed": feed
    }  # fmt: skip
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


def light_receivers() -> dict[Any, Any]:
    """Receivers entered in the returned table (receiver -> its Reception) only count
    what arrives: each RTP packet has been through ICE, DTLS-SRTP (decrypted) and
    parsing; a video frame is counted at its marker bit, an audio packet is a frame.
    No jitter buffer, no decoder, no RTCP statistics: a classroom then costs its
    process a small part of what a whole aiortc receiver does."""
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    light: dict[Any, Any] = {}
    whole = RTCRtpReceiver._handle_rtp_packet

    async def handle(self: Any, packet: Any, arrival_time_ms: int) -> None:
        reception = light.get(self)
        if reception is None:
            await whole(self, packet, arrival_time_ms)
            return
        codec = self._RTCRtpReceiver__codecs.get(packet.payload_type)
        if codec is None or codec.mimeType.lower() in ("video/rtx", "video/red", "video/ulpfec"):
            return  # resends, FEC and probes' padding carry no new frame
        if reception.kind == "video" and not packet.marker:
            return
        reception.frames += 1
        if reception.first_frame_at is None:
            reception.first_frame_at = time.monotonic()
        reception.event.set()

    RTCRtpReceiver._handle_rtp_packet = handle  # type: ignore[method-assign]
    return light


def worker_process(
    port: int, ids: list[str], conn: multiprocessing.connection.Connection, light: bool = False
) -> None:
    counting_decoders(sample=len(ids) if light else 1)
    asyncio.run(_classrooms(port, ids, conn, light))


async def _classrooms(
    port: int, ids: list[str], conn: multiprocessing.connection.Connection, light: bool = False
) -> None:
    from media.synthetic import SyntheticParticipant

    loop = asyncio.get_running_loop()
    rooms: dict[str, SyntheticParticipant] = {}
    started: dict[str, float] = {}
    limit = asyncio.Semaphore(4)
    lightened = light_receivers() if light else {}

    async def join(cid: str) -> None:
        async with limit:
            room = SyntheticParticipant(
                Role.CLASSROOM,
                send_video=lambda: Quiet("video"),
                send_audio=lambda: Quiet("audio"),
                decode=False,
            )
            # One in LIGHT_DECODE_EVERY (by number, whatever process it is in) is whole.
            if light and int(cid.rsplit("room", 1)[1]) % LIGHT_DECODE_EVERY != 0:
                for slot, reception in room.received.items():
                    lightened[room.transceivers[slot].receiver] = reception
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


async def conduct(
    args: argparse.Namespace,
    kind: str,
    classrooms: int,
    workers: int = 0,
    lessons: int = 1,
    max_peers: int | None = None,
) -> dict[str, Any]:
    """One measured run: `workers` relay worker processes (0: the relay in one process,
    as `classroom serve` without --workers), `lessons` lessons each with its teacher;
    `max_peers`: the workers' capacity (a lesson past it spans workers)."""
    from media.synthetic import MovingPicture, SyntheticParticipant, Tone

    ctx = multiprocessing.get_context("spawn")
    relay_conn, relay_child = ctx.Pipe()
    relay = ctx.Process(
        target=relay_process,
        args=(kind, relay_child, args.adaptive, workers, max_peers),
        daemon=True,
    )
    relay.start()
    loop = asyncio.get_running_loop()
    port = await loop.run_in_executor(None, relay_conn.recv)

    names = [LESSON] if lessons == 1 else [f"{LESSON}{n}" for n in range(lessons)]
    cameras: list[MovingPicture] = []
    teachers = []
    for name in names:
        camera = MovingPicture(640, 360, 15)
        cameras.append(camera)
        # The teacher's first video slot is the camera; the screen slot stays quiet
        # (the naive baseline relays camera and audio only).
        videos: list[MediaStreamTrack] = [Quiet("video"), camera]
        teacher = SyntheticParticipant(
            Role.TEACHER, send_video=videos.pop, send_audio=Tone, decode=False
        )
        teachers.append(teacher)
        sdp = await negotiate(port, f"{name}/teacher", Role.TEACHER, await teacher.offer())
        await teacher.accept(sdp)

    # Classrooms dealt out over the lessons, one by one.
    ids = [f"{names[i % lessons]}/room{i:03d}" for i in range(classrooms)]
    n_procs = max(1, min(args.client_procs, len(ids)))
    procs = []
    for w in range(n_procs):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=worker_process, args=(port, ids[w::n_procs], child, args.light), daemon=True
        )
        proc.start()
        procs.append((proc, parent))
    try:
        for _, pipe in procs:
            await loop.run_in_executor(None, pipe.recv)  # "ready"
        await asyncio.sleep(1.0)  # let the join storm's keyframes settle

        sent_before = sum(c.frames_sent for c in cameras)  # frames the teachers' cameras made
        cpu_before, t_before = cpu_seconds(relay.pid), time.monotonic()
        clients_before = sum(cpu_seconds(proc.pid) for proc, _ in procs)
        teachers_before = time.process_time()  # this process: the teachers' encoders
        relay_conn.send("start")
        # For attaching a profiler (perf, py-spy) to the relay over the window.
        print(f"measuring {args.seconds:g} s, relay pid {relay.pid}", file=sys.stderr, flush=True)
        for _, pipe in procs:
            pipe.send("start")
        await asyncio.sleep(args.seconds)
        for _, pipe in procs:
            pipe.send("stop")
        cpu_after, t_after = cpu_seconds(relay.pid), time.monotonic()
        relay_conn.send("measured")
        layers, loop_cpu_s, per_worker = await loop.run_in_executor(None, relay_conn.recv)
        clients_after = sum(cpu_seconds(proc.pid) for proc, _ in procs)
        teachers_cores = (time.process_time() - teachers_before) / (time.monotonic() - t_before)
        sent_after = sum(c.frames_sent for c in cameras)
        results: dict[str, Any] = {}
        for _, pipe in procs:
            results.update(await loop.run_in_executor(None, pipe.recv))
        for _, pipe in procs:
            pipe.send("close")
    finally:
        for proc, _ in procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()
        for teacher in teachers:
            await teacher.close()
        relay_conn.send("stop")
        relay.join(timeout=30)
        if relay.is_alive():
            relay.kill()

    window = t_after - t_before
    video_fps = [r["video"] / window for r in results.values()]
    audio_pps = [r["audio"] / window for r in results.values()]
    firsts = [r["first_frame_s"] for r in results.values()]
    # The relay's process, plus its workers' (each a child of it, not counted in it).
    cores = (cpu_after - cpu_before + sum(w["cpu_s"] for w in per_worker.values())) / window
    result: dict[str, Any] = {
        "relay": kind,
        "workers": workers,
        "lessons": lessons,
        "classrooms": classrooms,
        "light": args.light,
        "seconds": round(window, 2),
        "server_cpu_cores": round(cores, 4),
        "cpu_per_classroom": round(cores / classrooms, 5),
        # The event loop's thread alone. Every classroom's sending runs on it, the
        # encoders on other threads: it is what runs out first, at one core. With
        # workers, the busiest worker's.
        "server_loop_cores": round(
            max([loop_cpu_s] + [w["loop_cpu_s"] for w in per_worker.values()]) / window, 4
        ),
        "source_fps": round((sent_after - sent_before) / window / lessons, 2),
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
    if per_worker:
        described = describe_workers(per_worker, results, window)
        result["per_worker"] = described
        result["teachers_cpu_cores"] = round(teachers_cores, 3)
        result["ceiling_classrooms_estimate"] = ceiling(result, described, teachers_cores)
    return result


def ceiling(result: dict[str, Any], workers: list[dict[str, Any]], teachers: float) -> int | None:
    """The classrooms this machine would drive, extrapolated from the run: the fewer of
    (a) the workers' event loops each filling one core, and (b) the machine's cores
    filled. For (b), what a worker spends outside its event loop (the teacher's
    decoder and the layers' encoders, in threads) and the teachers' own encoding are
    held fixed, per lesson; its loop (packetizing, SRTP, sending) and the classrooms'
    processes grow with the classrooms. An estimate to compare runs by, not a
    measurement: check it with a run at that many classrooms."""
    loops = [w["loop_ceiling_classrooms"] for w in workers]
    if None in loops:
        return None
    loop_cores = sum(w["loop_cores"] for w in workers)
    fixed = teachers + sum(w["cpu_cores"] - w["loop_cores"] for w in workers)
    per_classroom = (loop_cores + result["client_cpu_cores"]) / result["classrooms"]
    free = (result["machine_cpus"] or 1) - fixed
    machine = int(free / per_classroom) if per_classroom > 0 and free > 0 else 0
    return min(sum(loops), machine)


def describe_workers(
    per_worker: dict[int, dict[str, Any]],
    results: dict[str, Any],
    window: float,
) -> list[dict[str, Any]]:
    """Each worker's classrooms, CPU per classroom, and the classrooms at which its
    event loop would fill one core at the rate measured (its ceiling, if the machine
    has a core for it)."""
    described = []
    for index, measured in sorted(per_worker.items()):
        lessons = set(measured.get("lessons", []))
        mine = measured["served"]
        loop_cores = measured["loop_cpu_s"] / window
        fps = [results[cid]["video"] / window for cid in mine]
        described.append(
            {
                "worker": index,
                "classrooms": len(mine),
                "home_of": len(lessons),
                "follows": len(measured.get("follows", [])),
                "cpu_cores": round(measured["cpu_s"] / window, 4),
                "loop_cores": round(loop_cores, 4),
                "cpu_per_classroom": round(measured["cpu_s"] / window / max(1, len(mine)), 5),
                "loop_per_classroom": round(loop_cores / max(1, len(mine)), 5),
                "loop_ceiling_classrooms": (
                    int(len(mine) / loop_cores) if mine and loop_cores > 0 else None
                ),
                "delivered_fps_min": round(min(fps), 2) if fps else None,
            }
        )
    return described


def span_cost(
    workers: list[dict[str, Any]], alone: dict[str, Any], fps_ratio: float
) -> dict[str, Any]:
    """What a lesson's followers cost its home worker: the home (the teacher and its
    share of the classrooms, plus a pull per follower and an uplink per follower's
    classroom) against one worker with the same teacher and share alone. The alone
    run's figures are scaled by `fps_ratio` (the span run's teacher frame rate over
    its): on a busy machine the synthetic teacher's camera makes fewer frames in one
    run than the other, and decoding, encoding and sending all go with the frames."""
    home = next(w for w in workers if w["home_of"])
    followers = sum(1 for w in workers if w["follows"])
    uplinks = sum(w["classrooms"] for w in workers if w["follows"])
    added = home["cpu_cores"] - alone["cpu_cores"] * fps_ratio
    added_loop = home["loop_cores"] - alone["loop_cores"] * fps_ratio
    per_classroom = alone["cpu_per_classroom"] * fps_ratio
    loop_per_classroom = alone["loop_per_classroom"] * fps_ratio
    return {
        "home_worker": home["worker"],
        "home_classrooms": home["classrooms"],
        "followers": followers,
        "follower_classrooms": uplinks,
        "source_fps_ratio_vs_one_worker": round(fps_ratio, 3),
        "home_added_cores_per_follower": round(added / max(1, followers), 4),
        "home_added_loop_cores_per_follower": round(added_loop / max(1, followers), 4),
        "home_added_per_follower_in_classrooms": (
            round(added / max(1, followers) / per_classroom, 2) if per_classroom > 0 else None
        ),
        # The event loop's share alone, in the loop's cost of one classroom of that run:
        # the pull is one more receiver of the layers, sent on the loop as a classroom is.
        "home_added_loop_per_follower_in_classrooms": (
            round(added_loop / max(1, followers) / loop_per_classroom, 2)
            if loop_per_classroom > 0
            else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classrooms", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--relay", choices=("ours", "naive"), default="ours")
    parser.add_argument(
        "--client-procs", type=int, default=4, help="processes the classrooms run in"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="serve the relay in this many relay worker processes (as `classroom serve "
        "--workers`), one lesson per worker; 0 (default): the relay in one process",
    )
    parser.add_argument(
        "--lessons", type=int, help="lessons, each with its own teacher (default: one per worker)"
    )
    parser.add_argument(
        "--span",
        action="store_true",
        help="with --workers N: one lesson over all N workers (its home takes classrooms / N)",
    )
    parser.add_argument(
        "--light",
        action="store_true",
        help=f"classrooms that count packets; one in {LIGHT_DECODE_EVERY} decodes",
    )
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
    if not 0 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be within 0..{MAX_WORKERS}")
    if args.workers and args.relay != "ours":
        parser.error("--workers serves our relay only")
    if args.light and args.adaptive:
        # Light classrooms send no receiver reports, REMB or transport feedback.
        parser.error("--light classrooms give no feedback for --adaptive to adapt to")
    if args.span and (args.workers < 2 or args.lessons not in (None, 1)):
        parser.error("--span puts one lesson over --workers 2 or more")
    lessons = 1 if args.span else args.lessons or max(1, args.workers)
    if not 1 <= lessons <= args.classrooms:
        parser.error("--lessons must be within 1..classrooms")
    # The home takes its teacher and its share of the classrooms; the rest follow.
    max_peers = 1 + args.classrooms // args.workers if args.span else None

    def run(
        kind: str, classrooms: int, workers: int = 0, lessons: int = 1, cap: int | None = None
    ) -> dict[str, Any]:
        measured = conduct(args, kind, classrooms, workers, lessons, cap)
        return asyncio.run(asyncio.wait_for(measured, timeout=args.seconds + 240))

    result = run(args.relay, args.classrooms, args.workers, lessons, max_peers)
    if args.workers > 1:
        # In the same invocation: one worker with its share of the classrooms and lessons.
        share = max(1, args.classrooms // args.workers)
        one = run("ours", share, 1, max(1, lessons // args.workers))
        result["one_worker"] = {
            key: one[key]
            for key in (
                "classrooms",
                "lessons",
                "cpu_per_classroom",
                "server_loop_cores",
                "source_fps",
                "delivered_fps_min",
                "delivered_fps_mean",
                "client_cpu_cores",
                "per_worker",
            )
        }
        result["cpu_per_classroom_ratio_vs_one_worker"] = round(
            result["cpu_per_classroom"] / one["cpu_per_classroom"], 3
        )
        if args.span:
            result["span"] = span_cost(
                result["per_worker"],
                one["per_worker"][0],
                result["source_fps"] / one["source_fps"] if one["source_fps"] else 1.0,
            )
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
