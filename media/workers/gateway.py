"""`WorkerGateway`: the MediaGateway (and the recording calls) over relay worker processes.

Signaling calls it as it calls one `Relay`; each call goes to the worker that holds
the call's lesson (media.workers.worker), as a request on that worker's socket, and
its answer comes back. A lesson is placed on the least-loaded running worker the
first time it is named (media.workers.placement) and stays there until it ends.
With `max_peers`, a lesson whose worker (its home) is full spans others: its next
classrooms are served by a worker that pulls the lesson from the home and sends
their cameras up to it (media.workers.follower).

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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, cast

import media
from classroom.roles import Role
from media.gateway import LinkReport, MediaError, MediaUnavailable
from media.recorder.manifest import Manifest
from media.relay.reports import LinkReports
from media.settings import RelaySettings
from media.workers.channel import Channel, ChannelClosed, Message, receive_blocking
from media.workers.follower import feed_name
from media.workers.placement import WorkerLoad, least_loaded, serving_worker
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
        # Offers sent to it and not yet answered: they count in its load, so that many
        # classrooms offering at once do not all go where there was room for a few.
        self.offering: set[tuple[str, str]] = set()
        self.lessons: set[str] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def load(self) -> WorkerLoad:
        return WorkerLoad(len(self.peers | self.offering), len(self.lessons), self.running)


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
    `env`: extra environment for the workers (MALLOC_ARENA_MAX, say).
    `max_peers`: the peers a worker takes before a lesson's next classrooms are
    served by another worker that follows the lesson (media.workers.follower);
    None: a lesson stays on one worker however big."""

    def __init__(
        self,
        settings: RelaySettings,
        count: int,
        *,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        restarts: RestartPolicy | None = None,
        max_peers: int | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("at least one relay worker")
        if max_peers is not None and max_peers < 1:
            raise ValueError("a worker takes at least one peer")
        self._max_peers = max_peers
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
        # A lesson over several workers: the workers that pull it from its home, and
        # the classrooms one of them serves (the others are served at the home).
        self._followers: dict[str, set[_Worker]] = {}
        self._away: dict[tuple[str, str], _Worker] = {}
        self._following: dict[tuple[str, int], asyncio.Lock] = {}
        self._uplinking: set[asyncio.Task[None]] = set()
        # The stage and the screen's cover as last set, for a follower that starts late.
        self._stage: dict[str, str | None] = {}
        self._covered: dict[str, bool] = {}
        # Told the classrooms of a lesson that a dead follower served: they offer again
        # (`media_moved`, to them only), and are placed again.
        self.on_peers_moved: Callable[[str, frozenset[str]], Awaitable[None]] | None = None
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
        self._tell_worker(worker, op, args)

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
                elif message.get("event") == "want":
                    self._want(worker, message["lesson"], message["lines"])
                elif message.get("event") == "pull_lost":
                    self._later(self._pull_again(worker, message["lesson"]))
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
        self._spans_lost(worker)
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
        home = self._place(lesson_id)
        peer = (lesson_id, participant_id)
        worker = self._serving(lesson_id, participant_id, role, home, whip)
        # A second offer replaces the first connection, as on one relay.
        worker.peers.discard(peer)
        args = {
            "lesson": lesson_id,
            "participant": participant_id,
            "role": role.value,
            "sdp": offer_sdp,
            "whip": whip,
        }
        worker.offering.add(peer)
        try:
            if worker is not home:
                await self._follow(lesson_id, home, worker)
            answer = await self._ask(worker, "negotiate", args)
        finally:
            worker.offering.discard(peer)
        if worker.running:
            worker.peers.add(peer)
        if worker is not home:
            self._away[peer] = worker
            self._later(self._send_up(lesson_id, participant_id, worker))
        return str(answer)

    def has_peer(self, lesson_id: str, participant_id: str) -> bool:
        peer = (lesson_id, participant_id)
        worker = self._away.get(peer) or self._placed.get(lesson_id)
        return worker is not None and peer in worker.peers

    async def set_stage(self, lesson_id: str, classroom_id: str | None) -> None:
        # The home first: a follower's classroom on stage is heard there from the
        # moment its microphone goes up.
        self._stage[lesson_id] = classroom_id
        await self._to_spanned(lesson_id, "set_stage", {"classroom": classroom_id})

    async def cover_screen(self, lesson_id: str, covered: bool) -> None:
        self._covered[lesson_id] = covered
        await self._to_spanned(lesson_id, "cover_screen", {"covered": covered})

    async def disconnect(self, lesson_id: str, participant_id: str) -> None:
        home = self._placed.get(lesson_id)
        if home is None:
            return
        peer = (lesson_id, participant_id)
        args = {"lesson": lesson_id, "participant": participant_id}
        away = self._away.pop(peer, None)
        if away is not None:
            away.peers.discard(peer)
            if away.running:
                with contextlib.suppress(MediaUnavailable):
                    await self._ask(away, "disconnect", args)
            # Its uplink, at the home.
            if home.running:
                await self._ask(home, "disconnect", args)
            await self._release_if_unused(lesson_id, away)
            return
        home.peers.discard(peer)
        if home.running:
            await self._ask(home, "disconnect", args)

    async def end_lesson(self, lesson_id: str) -> None:
        for follower in self._followers.pop(lesson_id, set()):
            await self._unfollow(lesson_id, follower)
        self._away = {peer: w for peer, w in self._away.items() if peer[0] != lesson_id}
        self._stage.pop(lesson_id, None)
        self._covered.pop(lesson_id, None)
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

    # --- a lesson over several workers (media.workers.follower) ---------------------------

    def followers(self, lesson_id: str) -> list[int]:
        """The workers that pull the lesson from its home (tests, metrics)."""
        return sorted(w.index for w in self._followers.get(lesson_id, ()))

    def serving(self, lesson_id: str, participant_id: str) -> int | None:
        """The worker that serves a participant's connection, if it has one."""
        peer = (lesson_id, participant_id)
        worker = self._away.get(peer) or self._placed.get(lesson_id)
        return None if worker is None or peer not in worker.peers else worker.index

    async def _to_spanned(self, lesson_id: str, op: str, args: Message) -> None:
        """A request to every worker the lesson is on, its home first. A follower that
        dies meanwhile is left out (its classrooms are placed again and told then)."""
        home = self._place(lesson_id)
        followers = sorted(self._followers.get(lesson_id, ()), key=lambda w: w.index)
        for worker in (home, *followers):
            if not worker.running:
                continue
            try:
                await self._ask(worker, op, {"lesson": lesson_id, **args})
            except MediaUnavailable:
                if worker is home:
                    raise

    def _serving(
        self, lesson_id: str, participant_id: str, role: Role, home: _Worker, whip: bool
    ) -> _Worker:
        """The worker that answers this offer: the teacher, observers and WHIP at the
        home; a classroom where it already is (a second offer), else at the home while
        it has room, else at a follower (placement.serving_worker)."""
        if self._max_peers is None or role is not Role.CLASSROOM or whip:
            return home
        peer = (lesson_id, participant_id)
        away = self._away.get(peer)
        if away is not None and away.running:
            return away
        if peer in home.peers:
            return home
        following = {w.index for w in self._followers.get(lesson_id, ())}
        chosen = serving_worker(self.loads(), home.index, following, self._max_peers)
        return self._workers[chosen]

    async def _follow(self, lesson_id: str, home: _Worker, follower: _Worker) -> None:
        """`follower` pulls the lesson from `home` (once; again if the pull was lost)."""
        async with self._following.setdefault((lesson_id, follower.index), asyncio.Lock()):
            if follower in self._followers.get(lesson_id, ()):
                return
            offer = await self._ask(follower, "pull_offer", {"lesson": lesson_id})
            args = {"lesson": lesson_id, "follower": feed_name(follower.index), "sdp": offer}
            answer = await self._ask(home, "feed", args)
            await self._ask(follower, "pull_accept", {"lesson": lesson_id, "sdp": answer})
            # Who has the floor (a follower's classroom sends its microphone up only
            # then), and whether the slides are covered.
            stage = self._stage.get(lesson_id)
            if stage is not None:
                await self._ask(follower, "set_stage", {"lesson": lesson_id, "classroom": stage})
            if self._covered.get(lesson_id):
                await self._ask(follower, "cover_screen", {"lesson": lesson_id, "covered": True})
            if self._placed.get(lesson_id) is not home:
                # The lesson ended, or its home died, meanwhile: nothing to follow.
                with contextlib.suppress(MediaError, WorkerFault):
                    await self._ask(follower, "end_lesson", {"lesson": lesson_id})
                raise MediaUnavailable(GONE)
            self._followers.setdefault(lesson_id, set()).add(follower)
            logger.info(
                "lesson %s spans relay worker %d (home %d)", lesson_id, follower.index, home.index
            )

    async def _send_up(self, lesson_id: str, participant_id: str, follower: _Worker) -> None:
        """A follower's classroom's camera and microphone, up to the home worker
        (media.relay.uplink): its tile in the teacher's mosaic, and the stage."""
        peer = (lesson_id, participant_id)
        args: Message = {"lesson": lesson_id, "participant": participant_id}
        try:
            offer = await self._ask(follower, "uplink_offer", args)
            home = self._placed.get(lesson_id)
            if offer is None or home is None or self._away.get(peer) is not follower:
                return
            answer = await self._ask(home, "uplink", {**args, "sdp": offer})
            sent = await self._ask(follower, "uplink_accept", {**args, "sdp": answer})
            if not sent or self._away.get(peer) is not follower:
                # The classroom left (or moved) meanwhile: no tile of it stays at home.
                await self._ask(home, "disconnect", args)
        except (MediaError, WorkerFault) as exc:
            logger.warning("%s/%s not sent up to its home worker: %s", *peer, exc)

    def _want(self, follower: _Worker, lesson_id: str, lines: list[int]) -> None:
        """The layers a follower's classrooms follow: only those leave the home."""
        home = self._placed.get(lesson_id)
        pulling = self._following.get((lesson_id, follower.index))
        following = follower in self._followers.get(lesson_id, ())
        if self._closed or home is None or not (following or (pulling and pulling.locked())):
            return
        args = {"lesson": lesson_id, "follower": feed_name(follower.index), "lines": lines}
        self._tell_worker(home, "want_feed", args)

    async def _pull_again(self, follower: _Worker, lesson_id: str) -> None:
        home = self._placed.get(lesson_id)
        if home is None or follower not in self._followers.get(lesson_id, ()):
            return
        self._followers[lesson_id].discard(follower)
        if any(p[0] == lesson_id for p, w in self._away.items() if w is follower):
            try:
                await self._follow(lesson_id, home, follower)
            except (MediaError, WorkerFault) as exc:
                logger.warning("lesson %s: worker %d cannot pull it again: %s",
                               lesson_id, follower.index, exc)  # fmt: skip

    async def _release_if_unused(self, lesson_id: str, follower: _Worker) -> None:
        """A follower none of whose classrooms is left gives its pull back."""
        if any(p[0] == lesson_id for p, w in self._away.items() if w is follower):
            return
        followers = self._followers.get(lesson_id, set())
        if follower in followers:
            followers.discard(follower)
            await self._unfollow(lesson_id, follower)

    async def _unfollow(self, lesson_id: str, follower: _Worker) -> None:
        follower.peers = {peer for peer in follower.peers if peer[0] != lesson_id}
        home = self._placed.get(lesson_id)
        with contextlib.suppress(MediaError, WorkerFault):
            if follower.running:
                await self._ask(follower, "end_lesson", {"lesson": lesson_id})
            if home is not None and home.running:
                args = {"lesson": lesson_id, "follower": feed_name(follower.index)}
                await self._ask(home, "drop_feed", args)

    def _spans_lost(self, worker: _Worker) -> None:
        """A dead worker's part in the lessons that span workers. Where it was the home,
        the followers drop their pull (the whole lesson moves, `on_moved`); where it was
        a follower, its classrooms offer again (`on_peers_moved`) and their uplinks and
        its pull end at the home."""
        for lesson_id, followers in list(self._followers.items()):
            if self._placed.get(lesson_id) is worker:
                del self._followers[lesson_id]
                # Signaling tells the new home the stage and the cover (`on_moved`).
                self._stage.pop(lesson_id, None)
                self._covered.pop(lesson_id, None)
                for follower in followers:
                    self._later(self._unfollow(lesson_id, follower))
                self._away = {p: w for p, w in self._away.items() if p[0] != lesson_id}
        lost: dict[str, set[str]] = {}
        for peer, away in list(self._away.items()):
            if away is worker:
                del self._away[peer]
                lost.setdefault(peer[0], set()).add(peer[1])
        for lesson_id, participants in lost.items():
            self._followers.get(lesson_id, set()).discard(worker)
            self._later(self._peers_moved(lesson_id, worker, frozenset(participants)))

    async def _peers_moved(
        self, lesson_id: str, dead: _Worker, participants: frozenset[str]
    ) -> None:
        home = self._placed.get(lesson_id)
        try:
            if home is not None and home.running:
                await self._ask(
                    home, "drop_feed", {"lesson": lesson_id, "follower": feed_name(dead.index)}
                )
                for participant_id in participants:
                    await self._ask(
                        home, "disconnect", {"lesson": lesson_id, "participant": participant_id}
                    )
            if self.on_peers_moved is not None:
                await self.on_peers_moved(lesson_id, participants)
        except Exception:
            logger.exception("lesson %s: moving a dead follower's classrooms failed", lesson_id)

    def _tell_worker(self, worker: _Worker, op: str, args: Message) -> None:
        """A request to one worker whose answer nobody waits for; a failure is logged."""
        try:
            future = self._send(worker, op, args)
        except MediaError:
            return

        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                logger.warning("relay worker %d: %s failed: %s", worker.index, op, f.exception())

        future.add_done_callback(done)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._uplinking.add(task)
        task.add_done_callback(self._uplinking.discard)

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
