"""`WorkerGateway`: the MediaGateway (and the recording calls) over relay worker processes.

Signaling calls it as it calls one `Relay`; each call goes to the worker that holds
the call's lesson (media.workers.worker), as a request on that worker's socket, and
its answer comes back. A lesson is placed on the least-loaded running worker the
first time it is named (media.workers.placement) and stays there until it ends.

A worker that dies takes its lessons' media with it, and only theirs: the other
workers' lessons go on. Its lessons are placed again on a live worker at their next
call, and `on_moved` is told each of them: signaling then replays the stage and asks
every page of the lesson to offer again (`media_moved`), so the lesson's media comes
back on the live worker within a few seconds. With no live worker left, offers fail with
a MediaError a user can read. Then a new worker is started in the dead one's slot (the
same index, so the same ICE ports), unless that slot crash-loops (media.workers.restarts);
lessons that had nowhere to go are told `on_moved` once it is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

import media
from classroom.roles import Role
from media.gateway import LinkReport, MediaError, MediaUnavailable
from media.recorder.manifest import Manifest
from media.relay.reports import LinkReports
from media.settings import RelaySettings
from media.workers.channel import Channel, ChannelClosed, Message, receive_blocking
from media.workers.placement import WorkerLoad, least_loaded
from media.workers.restarts import RestartBudget, RestartPolicy, WorkerCounts
from media.workers.worker import settings_to_json

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 20.0
GONE = "the media of this lesson is unavailable: its relay worker stopped"


class WorkerFault(RuntimeError):
    """The worker's relay failed on a request (its traceback is in the worker's log)."""


def worker_settings(settings: RelaySettings, index: int) -> RelaySettings:
    """A worker's relay settings: the ICE ports, where set, are the operator's port
    plus the worker's index (a port is one socket, and one process holds it)."""
    changes: dict[str, Any] = {}
    if settings.ice_udp_port is not None:
        changes["ice_udp_port"] = settings.ice_udp_port + index
    if settings.ice_tcp_port is not None:
        changes["ice_tcp_port"] = settings.ice_tcp_port + index
    return dataclasses.replace(settings, **changes)


class _Worker:
    """The server's side of one worker process."""

    def __init__(self, index: int, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.index = index
        self.proc = proc
        self.sock = sock
        self.channel: Channel | None = None
        self.running = True
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0
        self.peers: set[tuple[str, str]] = set()
        self.lessons: set[str] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def load(self) -> WorkerLoad:
        return WorkerLoad(len(self.peers), len(self.lessons), self.running)


class _RecordingHandle:
    """The recorder's time line as `Recordings` reads it, kept on this side.

    The recorder runs in the worker; its time line (seconds recorded, pauses left
    out) is counted here as it is there, on the same monotonic clock (one clock for
    every process of the machine), so that each event's time is read without a
    round trip. The two start a request's latency apart: milliseconds."""

    def __init__(self, gateway: WorkerGateway, lesson_id: str) -> None:
        self._gateway = gateway
        self._lesson_id = lesson_id
        self._origin = time.monotonic()
        self._paused_total = 0.0
        self._paused_since: float | None = None

    def pause(self) -> None:
        if self._paused_since is None:
            self._paused_since = time.monotonic()
            self._gateway._tell(self._lesson_id, "pause_recording", {"lesson": self._lesson_id})

    def resume(self) -> None:
        if self._paused_since is not None:
            self._paused_total += time.monotonic() - self._paused_since
            self._paused_since = None
            self._gateway._tell(self._lesson_id, "resume_recording", {"lesson": self._lesson_id})

    def now(self) -> float:
        t = time.monotonic()
        paused = self._paused_total
        if self._paused_since is not None:
            paused += t - self._paused_since
        return max(0.0, t - self._origin - paused)


class WorkerGateway:
    """`MediaGateway` and `RecordingMedia` over `count` relay worker processes.

    The workers are started here, and each has built its relay (bound its ICE
    ports) before the constructor returns: a port already taken stops the start.
    `env`: extra environment for the workers (MALLOC_ARENA_MAX, say)."""

    def __init__(
        self,
        settings: RelaySettings,
        count: int,
        *,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        restarts: RestartPolicy | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("at least one relay worker")
        # What a dead worker's slot is started again with (`_restart`).
        self._settings = settings
        self._env = env
        self._ready_timeout_s = ready_timeout_s
        policy = restarts or RestartPolicy()
        self._budgets = {index: RestartBudget(policy) for index in range(count)}
        self._restarting: dict[int, asyncio.Task[None]] = {}
        self._held_back: set[int] = set()
        self._stopping = asyncio.Event()
        self._restarts = 0
        # Lessons lost while no worker lived: told `on_moved` when one is up again.
        self._homeless: set[str] = set()
        self._workers: list[_Worker] = []
        self._placed: dict[str, _Worker] = {}
        self._recording_on: dict[str, _Worker] = {}
        self._reports = LinkReports()
        self._readers: list[asyncio.Task[None]] = []
        self._connected: asyncio.Future[None] | None = None
        self._closed = False
        # Told each lesson whose worker died, once the lesson is free to be placed on a
        # live one (signaling replays its stage and asks its pages to offer again).
        self.on_moved: Callable[[str], Awaitable[None]] | None = None
        self._moving: set[asyncio.Task[None]] = set()
        try:
            # All start at once, then each is waited for: N imports of aiortc in parallel.
            for index in range(count):
                self._workers.append(self._spawn(index, settings, env))
            for worker in self._workers:
                self._greeted(worker, ready_timeout_s)
        except BaseException:
            self._kill_all()
            raise

    @staticmethod
    def _spawn(index: int, settings: RelaySettings, env: Mapping[str, str] | None) -> _Worker:
        ours, theirs = socket.socketpair()
        cmd = [
            sys.executable, "-m", "media.workers.worker", "--fd", str(theirs.fileno()),
            "--parent", str(os.getpid()), "--index", str(index),
            "--settings", settings_to_json(worker_settings(settings, index)),
        ]  # fmt: skip
        # The worker imports the same `media` as this process, whatever the directory
        # it was started from or the package installed.
        root = str(Path(media.__file__).resolve().parent.parent)
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        environ = {**os.environ, "PYTHONPATH": path, **(env or {})}
        proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], env=environ)
        theirs.close()
        return _Worker(index, proc, ours)

    @staticmethod
    def _greeted(worker: _Worker, timeout_s: float) -> None:
        """Wait for the worker's greeting: its relay is built, its ports bound."""
        worker.sock.settimeout(timeout_s)
        try:
            greeting = receive_blocking(worker.sock)
        except (ChannelClosed, TimeoutError, OSError) as exc:
            raise MediaError(f"relay worker {worker.index} did not start ({exc})") from None
        if greeting.get("event") != "ready":
            raise MediaError(f"relay worker {worker.index} did not start: {greeting.get('error')}")
        worker.sock.settimeout(None)

    def _kill_all(self) -> None:
        for worker in self._workers:
            _end(worker)

    # --- where lessons are -------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    def loads(self) -> dict[int, WorkerLoad]:
        return {w.index: w.load() for w in self._workers}

    def worker_of(self, lesson_id: str) -> int | None:
        """The index of the worker holding the lesson's media, if it is placed."""
        worker = self._placed.get(lesson_id)
        return None if worker is None else worker.index

    def _place(self, lesson_id: str) -> _Worker:
        worker = self._placed.get(lesson_id)
        if worker is None:
            chosen = least_loaded(self.loads())
            if chosen is None:
                raise MediaUnavailable("the media relay is unavailable: no relay worker is running")
            worker = self._workers[chosen]
            self._placed[lesson_id] = worker
            worker.lessons.add(lesson_id)
            logger.info("lesson %s placed on relay worker %d", lesson_id, worker.index)
        return worker

    # --- the channel -------------------------------------------------------------------

    async def _connect(self) -> None:
        """The workers' sockets on this event loop (the constructor ran before it)."""
        if self._connected is None:
            self._connected = asyncio.get_running_loop().create_future()
            for worker in self._workers:
                worker.channel = await Channel.over(worker.sock)
                self._readers.append(
                    asyncio.create_task(self._read(worker), name=f"relay-worker-{worker.index}")
                )
            self._connected.set_result(None)
        await self._connected

    def _send(self, worker: _Worker, op: str, args: Message) -> asyncio.Future[Any]:
        if not worker.running or worker.channel is None:
            raise MediaUnavailable(GONE)
        worker.next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.pending[worker.next_id] = future
        try:
            worker.channel.send({"id": worker.next_id, "op": op, "args": args})
        except ChannelClosed:
            worker.pending.pop(worker.next_id, None)
            raise MediaUnavailable(GONE) from None
        return future

    async def _ask(self, worker: _Worker, op: str, args: Message) -> Any:
        await self._connect()
        return await self._send(worker, op, args)

    def _tell(self, lesson_id: str, op: str, args: Message) -> None:
        """A request whose answer nobody waits for; a failure is logged."""
        worker = self._recording_on.get(lesson_id) or self._placed.get(lesson_id)
        if worker is None or not worker.running:
            return
        try:
            future = self._send(worker, op, args)
        except MediaError:
            return

        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                logger.warning("relay worker %d: %s failed: %s", worker.index, op, f.exception())

        future.add_done_callback(done)

    async def _read(self, worker: _Worker) -> None:
        assert worker.channel is not None
        try:
            while True:
                message = await worker.channel.receive()
                if "re" in message:
                    future = worker.pending.pop(message["re"], None)
                    if future is None or future.done():
                        continue
                    if message.get("fault"):
                        future.set_exception(WorkerFault(message["error"]))
                    elif "error" in message:
                        future.set_exception(MediaError(message["error"]))
                    else:
                        future.set_result(message.get("ok"))
                elif message.get("event") == "report":
                    report = message["report"]
                    report["previews"] = tuple(report.get("previews", ()))
                    self._reports.broadcast(LinkReport(**report))
                elif message.get("event") == "gone":
                    worker.peers.discard((message["lesson"], message["participant"]))
        except ChannelClosed:
            pass
        except Exception:
            logger.exception("relay worker %d: a frame that cannot be read", worker.index)
        await self._lost(worker)

    async def _lost(self, worker: _Worker) -> None:
        worker.running = False
        worker.peers.clear()
        for future in worker.pending.values():
            if not future.done():
                future.set_exception(MediaUnavailable(GONE))
        worker.pending.clear()
        if self._closed:
            return
        code = await asyncio.to_thread(_reap, worker.proc)
        lost = sorted(worker.lessons)
        logger.error(
            "relay worker %d (pid %d) stopped (exit %s): lessons %s move to the live workers",
            worker.index, worker.pid, code, lost or "(none)",
        )  # fmt: skip
        # Its lessons are placed again at their next call (their pages' new offers).
        for lesson_id in lost:
            if self._placed.get(lesson_id) is worker:
                del self._placed[lesson_id]
            if self._recording_on.get(lesson_id) is worker:
                del self._recording_on[lesson_id]
        worker.lessons.clear()
        if least_loaded(self.loads()) is None:
            self._homeless.update(lost)
        else:
            self._tell_moved(lost)
        # Only then a new worker in its slot: the lessons are not waiting for it.
        self._schedule_restart(worker.index)

    def _tell_moved(self, lessons: list[str]) -> None:
        if self.on_moved is None:
            return
        for lesson_id in lessons:
            task = asyncio.create_task(self._moved(self.on_moved, lesson_id))
            self._moving.add(task)
            task.add_done_callback(self._moving.discard)

    # --- a dead worker's slot ------------------------------------------------------------

    def counts(self) -> WorkerCounts:
        """What /metrics says of the workers: slots, how many live, restarts so far, and
        slots left empty for now because their worker keeps dying."""
        alive = sum(1 for w in self._workers if w.running)
        return WorkerCounts(len(self._workers), alive, self._restarts, len(self._held_back))

    def _schedule_restart(self, index: int) -> None:
        if self._closed or index in self._restarting:
            return
        budget = self._budgets[index]
        delay = budget.delay(time.monotonic())
        if delay > 0:
            logger.error(
                "relay worker %d keeps dying: started again %d times within %.0f s "
                "(a crash loop); its slot stays empty for %.0f s",
                index, budget.policy.per_window, budget.policy.window_s, delay,
            )  # fmt: skip
        self._restarting[index] = asyncio.create_task(
            self._restart(index, delay), name=f"relay-worker-{index}-restart"
        )

    async def _restart(self, index: int, delay: float) -> None:
        """Start a new worker in slot `index` after `delay` (0: at once)."""
        try:
            if delay > 0:
                self._held_back.add(index)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                self._held_back.discard(index)
            if self._closed:
                return
            self._budgets[index].started(time.monotonic())
            self._restarts += 1
            try:
                worker = await asyncio.to_thread(self._start, index)
            except (MediaError, OSError) as exc:
                logger.error("relay worker %d could not be started again: %s", index, exc)
                worker = None
            if worker is not None and self._closed:
                await asyncio.to_thread(_end, worker)
                return
        finally:
            del self._restarting[index]
        if worker is None:
            self._schedule_restart(index)  # counted: a start that fails is one of the loop
            return
        worker.channel = await Channel.over(worker.sock)
        self._workers[index] = worker
        self._readers = [task for task in self._readers if not task.done()]  # the dead ones'
        self._readers.append(
            asyncio.create_task(self._read(worker), name=f"relay-worker-{worker.index}")
        )
        logger.warning("relay worker %d started again (pid %d)", index, worker.pid)
        homeless, self._homeless = sorted(self._homeless), set()
        self._tell_moved(homeless)

    def _start(self, index: int) -> _Worker:
        """In a thread: a new worker for slot `index`, greeted (its ports bound)."""
        worker = self._spawn(index, self._settings, self._env)
        try:
            self._greeted(worker, self._ready_timeout_s)
        except BaseException:
            _end(worker)
            raise
        return worker

    @staticmethod
    async def _moved(on_moved: Callable[[str], Awaitable[None]], lesson_id: str) -> None:
        try:
            await on_moved(lesson_id)
        except Exception:
            logger.exception("lesson %s: moving its media to a live worker failed", lesson_id)

    # --- MediaGateway --------------------------------------------------------------------

    async def negotiate(
        self, lesson_id: str, participant_id: str, role: Role, offer_sdp: str, *, whip: bool = False
    ) -> str:
        if self._closed:
            raise MediaError("the media relay is shutting down")
        worker = self._place(lesson_id)
        peer = (lesson_id, participant_id)
        # A second offer replaces the first connection, as on one relay.
        worker.peers.discard(peer)
        args = {
            "lesson": lesson_id,
            "participant": participant_id,
            "role": role.value,
            "sdp": offer_sdp,
            "whip": whip,
        }
        answer = await self._ask(worker, "negotiate", args)
        if worker.running:
            worker.peers.add(peer)
        return str(answer)

    def has_peer(self, lesson_id: str, participant_id: str) -> bool:
        worker = self._placed.get(lesson_id)
        return worker is not None and (lesson_id, participant_id) in worker.peers

    async def set_stage(self, lesson_id: str, classroom_id: str | None) -> None:
        worker = self._place(lesson_id)
        if worker.running:
            await self._ask(worker, "set_stage", {"lesson": lesson_id, "classroom": classroom_id})

    async def cover_screen(self, lesson_id: str, covered: bool) -> None:
        worker = self._place(lesson_id)
        if worker.running:
            await self._ask(worker, "cover_screen", {"lesson": lesson_id, "covered": covered})

    async def disconnect(self, lesson_id: str, participant_id: str) -> None:
        worker = self._placed.get(lesson_id)
        if worker is None:
            return
        worker.peers.discard((lesson_id, participant_id))
        if worker.running:
            args = {"lesson": lesson_id, "participant": participant_id}
            await self._ask(worker, "disconnect", args)

    async def end_lesson(self, lesson_id: str) -> None:
        worker = self._placed.pop(lesson_id, None)
        if worker is None:
            return
        worker.lessons.discard(lesson_id)
        worker.peers = {peer for peer in worker.peers if peer[0] != lesson_id}
        if worker.running:
            await self._ask(worker, "end_lesson", {"lesson": lesson_id})

    async def link_reports(self) -> AsyncIterator[LinkReport]:
        await self._connect()
        async for report in self._reports.stream():
            yield report

    async def close(self) -> None:
        """Each worker closes its relay (finalizing its recordings) and exits; one
        that does not within CLOSE_TIMEOUT_S is killed."""
        if self._closed:
            return
        self._closed = True
        # A slot being started again ends its new worker; one held back starts none.
        self._stopping.set()
        await asyncio.gather(*self._restarting.values(), return_exceptions=True)
        for worker in self._workers:
            if worker.running and worker.channel is not None:
                with contextlib.suppress(ChannelClosed):
                    worker.channel.send({"op": "close"})
            elif worker.channel is None:
                worker.sock.close()  # never connected: the end of its socket stops it
        await asyncio.gather(
            *(asyncio.to_thread(_reap, w.proc, CLOSE_TIMEOUT_S) for w in self._workers)
        )
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for worker in self._workers:
            if worker.channel is not None:
                await worker.channel.close()

    # --- recording (signaling.recordings.RecordingMedia) ----------------------------------

    def start_recording(
        self, lesson_id: str, directory: Path, meta: dict[str, Any]
    ) -> _RecordingHandle:
        """Record the lesson in its worker; the folder is made here, at once, for the
        timeline that signaling writes beside the media."""
        worker = self._place(lesson_id)
        if not worker.running:
            raise MediaUnavailable(GONE)
        directory.mkdir(parents=True, exist_ok=True)
        self._recording_on[lesson_id] = worker
        self._tell(
            lesson_id,
            "start_recording",
            {"lesson": lesson_id, "directory": str(directory), "meta": meta},
        )
        return _RecordingHandle(self, lesson_id)

    async def stop_recording(self, lesson_id: str) -> Manifest | None:
        """Finish the lesson's recording in its worker; its manifest, or None."""
        worker = self._recording_on.pop(lesson_id, None)
        if worker is None or not worker.running:
            return None
        try:
            manifest = await self._ask(worker, "stop_recording", {"lesson": lesson_id})
        except MediaError as exc:
            logger.warning("recording of %s not finished: %s", lesson_id, exc)
            return None
        return cast(Manifest | None, manifest)


def _end(worker: _Worker) -> None:
    """Kill a worker that never served (its start failed, or the gateway closed)."""
    if worker.proc.poll() is None:
        worker.proc.kill()
    worker.proc.wait()
    worker.sock.close()


def _reap(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> int | None:
    """Wait for a worker's exit (no zombie left); kill one that does not exit."""
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
