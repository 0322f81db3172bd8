"""Soak: a long lesson on the real server, watched for leaks and for classrooms left behind.

    python -m scripts.soak [--classrooms 50] [--minutes 30] [--warmup-minutes 5]
                           [--reconnect-share 0.1] [--trace-memory]

`classroom serve` runs in its own process on 127.0.0.1. A synthetic teacher (an aiortc
peer publishing a moving camera, slides and a tone over the real WebSocket protocol)
teaches N synthetic classrooms (aiortc peers in a few worker processes, iceServers=[],
loopback only; they count the teacher camera frames their jitter buffer completes
instead of decoding them). Every minute 10 % of the classrooms (`--reconnect-share`;
more finds a per-session leak sooner, 0 separates growth with time) drop their connection
and peer and come back (`since` their last event); hands go up and down, chat goes on,
the teacher dismisses a hand now and then.

Every 10 s the server process's RSS, open files and threads are read from /proc, and
its asyncio task count from /metrics. A session (one connection of one participant)
fails when it is not welcomed, not answered or hears no teacher audio within 30 s,
when the server closes it, when its peer connection fails, or when the teacher's
sound stops for 20 s; it then starts again. The last line printed is a JSON
object: `rss_growth_pct` from the end of the warm-up to the end, files/tasks/threads
at the start (end of warm-up) and end, the classrooms' fps (each one's teacher camera
frames over the run after the warm-up: the lowest and the median; and the lowest
minute of a classroom that did not reconnect in it), and the failed sessions with
their reasons. The fps is what the relay chose to send: it adapts each classroom's
layers to what it measures of its link, down to sound only.

Where a classroom's frames went is read from the server's log (`delivery`): each session's
end says the frames the relay sent and dropped per video slot and its seconds per layer,
each layer change what the estimate rested on and which signal made the last congestion
call, and the relay's ingest watch the holes in what it received of the teacher. A
classroom at 9 fps of a 15 fps camera was either on the 7.5 fps reserve layer, or sent
few frames (the relay had few: `ingest_holes`), or lost them on the way (sent against
received).

The synthetic teacher's peer runs in this process: `teacher_loop_late_ms_max` is how late
its event loop ran at worst after the warm-up, and `teacher_ice.log` in the artifacts
holds its ICE messages. The relay closes a peer whose consent checks go unanswered six
times in a row (each waits 3.5 s, media.adapter.hooks): the two tell a teacher that
stopped answering from checks that never reached it.

`--trace-memory` runs the server under tracemalloc and writes the top growth between
the end of the warm-up and the end (`memory_growth`): where RSS went, if it grows.
`memory_growth_by_line` adds the objects alive by type, end minus warm-up:
tracemalloc's diff counts replacements (a classroom's new peer for its old one) as
growth, this count does not. RSS that grows while neither does is the C heap's
(signaling.heap).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MAX_CLASSROOMS = 100
MAX_MINUTES = 240
SAMPLE_S = 10.0
SESSION_STEP_TIMEOUT_S = 30.0
AUDIO_STALL_S = 20.0
RECONNECT_SHARE = 0.10
CLASSROOMS_PER_WORKER = 13


def _http(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return raw if "metrics" in url else json.loads(raw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a participant's sessions ---------------------------------------------------------


@dataclass
class Sessions:
    """One participant over the soak: its connections, one after the other."""

    ws_url: str
    token: str
    name: str
    teacher: bool = False
    seq: int | None = None
    started: int = 0
    failures: list[str] = field(default_factory=list)
    frames_done: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    peer: Any = None
    ws: Any = None
    hands: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    _waiting: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    def frames(self) -> int:
        """Teacher camera frames: received by a classroom, sent by the teacher."""
        live = self.frames_of(self.peer, self.teacher) if self.peer is not None else 0
        return self.frames_done + live

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def reconnect(self) -> None:
        """Drop the connection and the peer (as a page that reloads), then come back."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.start()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.send(json.dumps(message))

    async def _run(self) -> None:
        while True:
            failure = await self._session()
            if failure is not None:
                self.failures.append(failure)
            await asyncio.sleep(1.0)

    async def _session(self) -> str | None:
        """One connection until the server ends it: a failure's reason, or None."""
        from websockets.asyncio.client import connect

        from media.slots import Slot

        self.started += 1
        step = "connect"
        loop = asyncio.get_running_loop()
        self._waiting = {"welcome": loop.create_future(), "answer": loop.create_future()}
        reader: asyncio.Task[None] | None = None
        try:
            async with connect(self.ws_url, max_size=2**22, open_timeout=10) as ws:
                self.ws = ws
                join: dict[str, Any] = {"type": "join", "token": self.token, "protocol": 1}
                if self.seq is not None:
                    join["since"] = self.seq
                await ws.send(json.dumps(join))
                # One reader for the whole connection; the steps wait on what it saw.
                reader = asyncio.create_task(self._read(ws))
                step = "welcome"
                await self._step(self._waiting["welcome"], reader)
                self.peer = self._peer()
                await ws.send(json.dumps({"type": "offer", "sdp": await self.peer.offer()}))
                step = "answer"
                answer = await self._step(self._waiting["answer"], reader)
                await self.peer.accept(answer["sdp"])
                if not self.teacher:
                    # The teacher's sound: the relay may hold the camera back on purpose.
                    step = "teacher audio"
                    first = asyncio.ensure_future(
                        self.peer.wait_frames(Slot.TEACHER_AUDIO, 1, SESSION_STEP_TIMEOUT_S)
                    )
                    try:
                        await self._step(first, reader)
                    finally:
                        first.cancel()
                step = "session"
                watch = asyncio.ensure_future(self._watch_audio())
                try:
                    await asyncio.wait({reader, watch}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    watch.cancel()
                if watch.done() and not watch.cancelled():
                    return watch.result()
                return f"closed by the server ({ws.close_code} {ws.close_reason})"
        except TimeoutError:
            return f"no {step} within {SESSION_STEP_TIMEOUT_S:g} s"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return f"{step}: {type(exc).__name__}: {exc}"[:200]
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            self.ws = None
            peer, self.peer = self.peer, None
            if peer is not None:
                self.frames_done += self.frames_of(peer, self.teacher)
                with contextlib.suppress(Exception):
                    await asyncio.shield(peer.close())

    @staticmethod
    async def _step(awaited: asyncio.Future[Any], reader: asyncio.Task[None]) -> Any:
        """What `awaited` gives, unless the connection ends or time runs out first."""
        done, _ = await asyncio.wait(
            {awaited, reader}, timeout=SESSION_STEP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if awaited in done:
            return awaited.result()
        if reader in done:
            reader.result()
            raise ConnectionError("closed by the server")
        raise TimeoutError

    async def _watch_audio(self) -> str:
        """Returns once the teacher's sound stopped coming (the relay gave the peer up,
        or it starves): the session then failed, though its WebSocket is open. Sound,
        not the camera: the relay may switch a classroom's camera off on purpose."""
        from media.slots import Slot

        last, since = -1, time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            if self.peer is not None and self.peer.pc.connectionState in ("failed", "closed"):
                # As a page does (lesson_page.js): a failed peer connection is offered anew.
                return f"peer connection {self.peer.pc.connectionState}"
            if self.teacher:
                continue
            heard = self.peer.received[Slot.TEACHER_AUDIO].frames if self.peer else 0
            if heard != last:
                last, since = heard, time.monotonic()
            elif time.monotonic() - since > AUDIO_STALL_S:
                return f"no teacher audio for {AUDIO_STALL_S:g} s"

    @staticmethod
    def frames_of(peer: Any, teacher: bool) -> int:
        from media.slots import Slot

        if teacher:
            return int(peer.sent_tracks[Slot.CAMERA].frames_sent)
        return int(peer.received[Slot.TEACHER_CAMERA].frames)

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            self._note(json.loads(raw))

    def _note(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["type"] == "welcome":
            self.seq = msg["lesson"].get("seq", self.seq)
            self.hands = [h["classroom_id"] for h in msg["lesson"].get("hands", [])]
        elif msg["type"] == "event":
            event = msg["event"]
            self.seq = max(self.seq or 0, event.get("seq") or 0)
            if event.get("kind") == "hand_raised":
                self.hands.append(event["classroom_id"])
            elif event.get("kind") in ("hand_lowered", "hand_dismissed", "floor_granted"):
                with contextlib.suppress(ValueError):
                    self.hands.remove(event["classroom_id"])
        elif msg["type"] == "error":
            self.errors[msg.get("code", "?")] += 1
        waiting = self._waiting.get(msg["type"])
        if waiting is not None and not waiting.done():
            waiting.set_result(msg)
        return msg

    def _peer(self) -> Any:
        from classroom.roles import Role
        from media.synthetic import MovingPicture, SlideDeck, SyntheticParticipant

        if self.teacher:
            videos = iter([MovingPicture(640, 360, 15), SlideDeck(1280, 720, 5)])
            return SyntheticParticipant(Role.TEACHER, send_video=lambda: next(videos))
        from scripts.bench_fanout import Quiet

        return SyntheticParticipant(
            Role.CLASSROOM,
            send_video=lambda: Quiet("video"),
            send_audio=lambda: Quiet("audio"),
            decode=False,
        )


async def classroom_life(room: Sessions, rng: random.Random) -> None:
    """Hands up and down, a chat line now and then."""
    raised = False
    while True:
        await asyncio.sleep(rng.uniform(20, 60))
        if raised:
            await room.send({"type": "lower_hand"})
        else:
            await room.send({"type": "raise_hand", "student": f"学生{rng.randint(1, 40)}"})
        raised = not raised
        if rng.random() < 0.5:
            await room.send({"type": "chat", "text": f"{room.name}: 老师，第{rng.randint(1, 9)}题"})


# --- classroom workers ------------------------------------------------------------------


def worker_process(
    ws_url: str,
    rooms: list[tuple[str, str]],
    seed: int,
    conn: multiprocessing.connection.Connection,
) -> None:
    from scripts.bench_fanout import counting_decoders

    counting_decoders(sample=0)
    asyncio.run(_worker(ws_url, rooms, seed, conn))


async def _worker(
    ws_url: str,
    rooms: list[tuple[str, str]],
    seed: int,
    conn: multiprocessing.connection.Connection,
) -> None:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    sessions = {cid: Sessions(ws_url, token, cid) for cid, token in rooms}
    lives = []
    for room in sessions.values():
        room.start()
        lives.append(asyncio.create_task(classroom_life(room, random.Random(rng.random()))))
        await asyncio.sleep(0.2)  # not all at once: a school day starts over minutes
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command[0] == "stats":
            conn.send(
                {
                    cid: {
                        "frames": s.frames(),
                        "sessions": s.started,
                        "failures": s.failures,
                        "errors": dict(s.errors),
                    }
                    for cid, s in sessions.items()
                }
            )
        elif command[0] == "reconnect":
            await asyncio.gather(*(sessions[cid].reconnect() for cid in command[1]))
        else:
            break
    for task in lives:
        task.cancel()
    await asyncio.gather(*(s.stop() for s in sessions.values()))
    conn.send("stopped")


# --- the server and what it is made of --------------------------------------------------


TRACED_SERVER = """
import gc, signal, sys, tracemalloc
# Traced from the end of the warm-up only (the first SIGUSR2): tracing slows the
# server, and what it allocated before then is not growth.
from collections import Counter
snapshots = []
kinds = []
def dump(*_):
    if not tracemalloc.is_tracing():
        tracemalloc.start(10)
    # Garbage awaiting the collector is not growth: only what is still referenced.
    gc.collect()
    # Objects the collector tracks, by type: which of ours outlive their session.
    kinds.append(Counter(type(o).__qualname__ for o in gc.get_objects()))
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    snapshots.append(snap)
    if len(snapshots) >= 2:
        top = snapshots[-1].compare_to(snapshots[0], "traceback")[:15]
        lines = snapshots[-1].compare_to(snapshots[0], "lineno")[:25]
        more = kinds[-1].copy()
        more.subtract(kinds[0])
        with open(sys.argv[1], "w") as out:
            for stat in top:
                out.write(f"{stat.size_diff / 1e6:+.2f} MB {stat.count_diff:+d} blocks\\n")
                for line in stat.traceback.format()[-10:]:
                    out.write(line + "\\n")
                out.write("\\n")
        with open(sys.argv[1] + ".lines", "w") as out:
            for stat in lines:
                d = f"{stat.size_diff / 1e6:+.3f} MB {stat.count_diff:+d}"
                out.write(f"{d} {stat.traceback}\\n")
            out.write("\\nobjects by type, end minus warm-up:\\n")
            for name, n in more.most_common(40):
                out.write(f"{n:+d} {name}\\n")
signal.signal(signal.SIGUSR2, dump)
from signaling.cli import main
main(sys.argv[2:])
"""


def read_proc(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return {"rss_kb": rss, "threads": threads, "files": len(os.listdir(f"/proc/{pid}/fd"))}


def read_tasks(base: str) -> int | None:
    try:
        text = _http("GET", base + "/metrics").decode()
    except OSError:
        return None
    found = re.search(r"^classroom_asyncio_tasks (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else None


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    from scripts.fuzz_rtp import loop_lateness

    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    port = _free_port()
    admin_key = secrets.token_urlsafe(16)
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CLASSROOM_ADMIN_KEY": admin_key,
        "CLASSROOM_ICE_HOST_ADDRESSES": "127.0.0.1",
        "CLASSROOM_HOST": "127.0.0.1",
        "CLASSROOM_PORT": str(port),
        "CLASSROOM_DATA_DIR": str(folder),
    }
    growth_file = folder / "memory_growth.txt"
    command = [sys.executable, "-m", "signaling", "serve"]
    if args.trace_memory:
        command = [sys.executable, "-c", TRACED_SERVER, str(growth_file), "serve"]
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed below
    # The synthetic teacher's ICE (every STUN message, a few a second): when the relay
    # finds its consent expired, whether its checks reached the teacher and were
    # answered.
    ice_log = logging.FileHandler(folder / "teacher_ice.log")
    ice_log.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    ice_logger = logging.getLogger("aioice.ice")
    ice_logger.setLevel(logging.DEBUG)
    ice_logger.addHandler(ice_log)
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    ctx = multiprocessing.get_context("spawn")
    workers: list[tuple[Any, multiprocessing.connection.Connection]] = []
    teacher: Sessions | None = None
    loop = asyncio.get_running_loop()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _http("GET", base + "/healthz")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no server; see {folder / 'server.log'}") from None
                await asyncio.sleep(0.2)
        names = [f"村小{i:02d}" for i in range(args.classrooms)]
        lesson = _http(
            "POST", base + "/api/lessons", {"title": "Soak", "classrooms": names}, admin_key
        )
        ws_url = f"ws://127.0.0.1:{port}/ws"
        teacher = Sessions(ws_url, lesson["teacher"]["token"], "teacher", teacher=True)
        teacher.start()
        rooms = [(room["id"], room["token"]) for room in lesson["classrooms"]]
        ids = [cid for cid, _ in rooms]
        n_workers = max(1, -(-len(rooms) // CLASSROOMS_PER_WORKER))
        owner: dict[str, int] = {}
        for w in range(n_workers):
            mine = rooms[w::n_workers]
            owner.update({cid: w for cid, _ in mine})
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_process, args=(ws_url, mine, args.seed + w, child), daemon=True
            )
            proc.start()
            workers.append((proc, parent))

        async def stats() -> dict[str, Any]:
            merged: dict[str, Any] = {}
            for _, pipe in workers:
                pipe.send(("stats",))
            for _, pipe in workers:
                merged.update(await loop.run_in_executor(None, pipe.recv))
            return merged

        teacher_life = asyncio.create_task(teach(teacher, random.Random(args.seed)))
        late_s: list[float] = []
        stop_lateness = asyncio.Event()
        watch_lateness = asyncio.create_task(loop_lateness(late_s, stop_lateness, 0.05))
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        warmup_at = t0 + min(args.warmup_minutes * 60, args.minutes * 30)
        samples: list[dict[str, Any]] = []
        reconnected: dict[str, list[float]] = {cid: [] for cid in ids}
        next_reconnect = t0 + 60
        turn = 0
        warm: dict[str, Any] | None = None
        while time.monotonic() < end:
            await asyncio.sleep(SAMPLE_S)
            now = time.monotonic()
            # /metrics off the loop: the teacher's peer runs on it, and a late reader is
            # a slow client to the server.
            tasks = await loop.run_in_executor(None, read_tasks, base)
            sample = {"t": round(now - t0, 1), **read_proc(server.pid), "tasks": tasks}
            sample["frames"] = {cid: s["frames"] for cid, s in (await stats()).items()}
            sample["teacher_frames"] = teacher.frames()
            sample["teacher_loop_late_ms"] = round(1000 * max(late_s, default=0.0), 1)
            late_s.clear()
            samples.append(sample)
            if warm is None and now >= warmup_at:
                warm = sample
                if args.trace_memory:
                    server.send_signal(signal.SIGUSR2)
            rates = "-"
            if len(samples) > 1:
                before, dt = samples[-2], sample["t"] - samples[-2]["t"]
                fps = sorted(
                    (n - before["frames"].get(cid, n)) / dt for cid, n in sample["frames"].items()
                )
                sent = (sample["teacher_frames"] - before["teacher_frames"]) / dt
                rates = f"fps min {fps[0]:.1f} median {fps[len(fps) // 2]:.1f} sent {sent:.1f}"
            print(
                f"t={sample['t']:.0f}s rss={sample['rss_kb'] / 1024:.0f}MB "
                f"files={sample['files']} threads={sample['threads']} tasks={sample['tasks']} "
                f"teacher loop late {sample['teacher_loop_late_ms']:.0f} ms " + rates,
                file=sys.stderr,
                flush=True,
            )
            if args.reconnect_share > 0 and now >= next_reconnect and now < end - SAMPLE_S:
                next_reconnect += 60
                count = min(len(ids), max(1, round(args.reconnect_share * len(ids))))
                chosen = [ids[(turn + i) % len(ids)] for i in range(count)]
                turn += count
                for cid in chosen:
                    reconnected[cid].append(now - t0)
                for w, (_, pipe) in enumerate(workers):
                    mine = [cid for cid in chosen if owner[cid] == w]
                    if mine:
                        pipe.send(("reconnect", mine))
        if args.trace_memory:
            server.send_signal(signal.SIGUSR2)
            # A snapshot of a traced heap takes a while: wait for the diff.
            for _ in range(120):
                if growth_file.exists():
                    break
                await asyncio.sleep(1)
        final = await stats()
        teacher_life.cancel()
        stop_lateness.set()
        await watch_lateness
    finally:
        for _, pipe in workers:
            with contextlib.suppress(Exception):
                pipe.send(("stop",))
        for proc, _ in workers:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        if teacher is not None:
            await teacher.stop()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        ice_logger.removeHandler(ice_log)
        ice_log.close()
    return summarize(args, samples, warm or samples[0], final, teacher, reconnected, folder)


async def teach(teacher: Sessions, rng: random.Random) -> None:
    """A chat line every few seconds; a hand dismissed now and then."""
    n = 0
    while True:
        await asyncio.sleep(rng.uniform(3, 8))
        n += 1
        await teacher.send({"type": "chat", "text": f"第{n}个问题：谁来回答？"})
        if teacher.hands and rng.random() < 0.3:
            await teacher.send({"type": "dismiss_hand", "classroom_id": rng.choice(teacher.hands)})


def summarize(
    args: argparse.Namespace,
    samples: list[dict[str, Any]],
    warm: dict[str, Any],
    final: dict[str, Any],
    teacher: Sessions | None,
    reconnected: dict[str, list[float]],
    folder: Path,
) -> dict[str, Any]:
    last = samples[-1]
    # Each classroom over the whole run after the warm-up: frames over time.
    span = last["t"] - warm["t"] or 1.0
    fps_run = {cid: (last["frames"][cid] - warm["frames"][cid]) / span for cid in last["frames"]}
    # Minutes (6 samples) in which a classroom did not reconnect: its steady fps.
    steady: list[float] = []
    per_minute = int(60 / SAMPLE_S)
    for a, b in zip(samples, samples[per_minute:], strict=False):
        for cid in b["frames"]:
            if any(a["t"] - 5 <= t <= b["t"] for t in reconnected.get(cid, [])):
                continue
            if cid in a["frames"] and a["t"] >= warm["t"] - 60:
                steady.append((b["frames"][cid] - a["frames"][cid]) / (b["t"] - a["t"]))
    failures: list[str] = []
    sessions = 0
    errors: Counter[str] = Counter()
    for s in final.values():
        failures += s["failures"]
        sessions += s["sessions"]
        errors.update(s["errors"])
    if teacher is not None:
        failures += [f"teacher: {f}" for f in teacher.failures]
        sessions += teacher.started
        errors.update(teacher.errors)
    growth = folder / "memory_growth.txt"
    result = {
        "classrooms": args.classrooms,
        "minutes": round(last["t"] / 60, 1),
        "reconnect_share": args.reconnect_share,
        "warmup_minutes": round(warm["t"] / 60, 1),
        "rss_mb_start": round(warm["rss_kb"] / 1024, 1),
        "rss_mb_end": round(last["rss_kb"] / 1024, 1),
        "rss_growth_pct": round(100 * (last["rss_kb"] - warm["rss_kb"]) / warm["rss_kb"], 2),
        "rss_mb_max": round(max(s["rss_kb"] for s in samples) / 1024, 1),
        "files_start": warm["files"],
        "files_end": last["files"],
        "tasks_start": warm["tasks"],
        "tasks_end": last["tasks"],
        "threads_start": warm["threads"],
        "threads_end": last["threads"],
        "fps_lowest_classroom": round(min(fps_run.values()), 2),
        "fps_median_classroom": round(sorted(fps_run.values())[len(fps_run) // 2], 2),
        "fps_lowest_steady_minute": round(min(steady), 2) if steady else None,
        # What the synthetic teacher's camera produced over the same span (15 fps when
        # the load generator keeps up): no classroom can receive more.
        "teacher_camera_fps_sent": round(
            (last["teacher_frames"] - warm["teacher_frames"]) / span, 2
        ),
        # The load generator's own lateness, where the synthetic teacher's peer runs:
        # the worst of the run after the warm-up.
        "teacher_loop_late_ms_max": max(
            (s["teacher_loop_late_ms"] for s in samples if s["t"] >= warm["t"]), default=None
        ),
        "sessions": sessions,
        "failed_sessions": len(failures),
        "failures": Counter(failures).most_common(10),
        "errors": dict(errors),
        "samples": [
            {k: s[k] for k in ("t", "rss_kb", "files", "threads", "tasks")} for s in samples
        ],
        "artifacts": str(folder),
    }
    result.update(delivery(folder / "server.log", fps_run, final))
    if growth.exists():
        result["memory_growth"] = growth.read_text()[:6000]
    by_line = folder / "memory_growth.txt.lines"
    if by_line.exists():
        result["memory_growth_by_line"] = by_line.read_text()[:6000]
    return result


DECISION = re.compile(
    r"media\.relay\.sending: [^/\s]+/(?P<pid>[^:\s]+): (?P<reason>\w+) to (?P<alloc>\{[^}]*\})"
    r".*\[by (?P<by>[^,;\]]+)[^;\]]*; (?P<held>congested|last congestion): (?P<cause>[^;\]]*)"
    r"(?:.*relay (?P<relay>late|on time))?"
)
SESSION_END = re.compile(
    r"media\.relay\.relay: [^/\s]+/(?P<pid>[^:\s]+): session ends: .*?"
    r"teacher_camera frames sent (?P<sent>\d+) dropped (?P<dropped>\d+) \((?P<times>[^)]*)\)"
)
SOURCE_END = re.compile(r"media\.relay\.relay: [^/\s]+/teacher/(\w+) in: source ends: (.*)$")
HOLE = re.compile(r"media\.relay\.relay: (.*/(camera|screen|microphone) in: .*)$")
CAUSE_KINDS = ("REMB fell", "loss", "queue", "none")


def delivery(log: Path, fps_run: dict[str, float], final: dict[str, Any]) -> dict[str, Any]:
    """Where the classrooms' frames went, from the server's log: seconds per camera
    layer and frames sent per classroom (each session's last line), the layer changes
    of the teacher's camera by the signal that caused them (the relay's decision log,
    media.control.downlink.Downlink.explain), and holes in what the relay received
    (media.control.ingest)."""
    if not log.exists():
        return {}
    seconds: dict[str, Counter[str]] = {}
    sent: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    downs: dict[str, Counter[str]] = {}
    holes: list[str] = []
    sources: list[str] = []
    camera: dict[str, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        if (found := DECISION.search(line)) is not None:
            pid = found["pid"]
            layer = re.search(r"'teacher_camera': '(\w+)'", found["alloc"])
            now = layer[1] if layer else "gone"
            before = camera.get(pid)
            camera[pid] = now
            if before is None or before == now or found["reason"] == "reshape":
                continue
            kind = next((k for k in CAUSE_KINDS if found["cause"].startswith(k)), "other")
            key = f"{found['reason']} {before}->{now} by {found['by']}; {found['held']}: {kind}"
            if found["relay"] == "late":
                key += " (relay late)"
            causes[key] += 1
            if found["reason"] == "down":
                downs.setdefault(pid, Counter())[f"{found['held']}: {kind}"] += 1
        elif (found := SESSION_END.search(line)) is not None:
            pid = found["pid"]
            sent[pid] += int(found["sent"])
            dropped[pid] += int(found["dropped"])
            for name, secs in re.findall(r"(\w+) (\d+) s", found["times"]):
                seconds.setdefault(pid, Counter())[name] += int(secs)
        elif (found := SOURCE_END.search(line)) is not None:
            sources.append(f"{found[1]}: {found[2]}")
        elif (found := HOLE.search(line)) is not None and len(holes) < 40:
            holes.append(line[:23] + " " + found[1])
    total: Counter[str] = Counter()
    for per in seconds.values():
        total.update(per)
    whole = sum(total.values()) or 1
    slowest = sorted(fps_run, key=fps_run.__getitem__)[:5]
    return {
        "camera_time_share": {k: round(v / whole, 3) for k, v in total.most_common()},
        "camera_changes_by_cause": dict(causes.most_common(20)),
        "slowest_classrooms": {
            cid: {
                "fps": round(fps_run[cid], 2),
                "camera_frames_sent": sent[cid],
                "camera_frames_received": final.get(cid, {}).get("frames"),
                "camera_frames_dropped_at_relay": dropped[cid],
                "camera_seconds": dict(seconds.get(cid, Counter()).most_common()),
                "downs": dict(downs.get(cid, Counter()).most_common()),
            }
            for cid in slowest
        },
        "ingest_holes": holes,
        # The teacher's sources at the relay, per session: frames decoded, and per
        # layer encoded and skipped (the encoder had not taken the last one yet).
        "teacher_sources": sources[-4:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classrooms", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trace-memory", action="store_true")
    parser.add_argument(
        "--reconnect-share",
        type=float,
        default=RECONNECT_SHARE,
        help="share of the classrooms that reconnect each minute (0 for none)",
    )
    args = parser.parse_args()
    if not 1 <= args.classrooms <= MAX_CLASSROOMS:
        parser.error(f"--classrooms must be within 1..{MAX_CLASSROOMS}")
    if not 0.5 <= args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be within 0.5..{MAX_MINUTES}")
    if not 0 <= args.reconnect_share <= 1:
        parser.error("--reconnect-share must be within 0..1")
    result = asyncio.run(asyncio.wait_for(soak(args), timeout=args.minutes * 60 + 300))
    print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
