"""A relay worker process: one `Relay`, driven over the local socket (media.workers.channel).

Started by `WorkerGateway` as `python -m media.workers.worker --fd N --parent PID ...`
with its end of a socketpair; it greets with `{"event": "ready"}` once its relay is
built (its ICE ports bound), answers each request, and sends the relay's link
reports and the peers the relay dropped by itself (a failed ICE or DTLS) as events.

It never outlives the server: the kernel sends it SIGTERM when the server's process
ends, however it ends (PR_SET_PDEATHSIG), and the end of its socket stops it too.
On either it closes its relay, which finalizes the recordings, and exits. SIGINT is
ignored: a Ctrl-C in the terminal reaches the whole process group, and the server
stops its workers itself, after its lessons.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from classroom.roles import Role
from media.gateway import MediaError
from media.recorder.recorder import Recorder
from media.relay.relay import Relay
from media.settings import RelaySettings
from media.workers.channel import Channel, ChannelClosed, Message
from media.workers.follower import FollowedLessons

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# How often the relay's own drops of peers are looked for (Relay.has_peer).
GONE_POLL_S = 1.0
# A stop that takes longer than this (a wedged encoder thread) is cut short.
CLOSE_TIMEOUT_S = 15.0


def settings_to_json(settings: RelaySettings) -> str:
    return json.dumps(dataclasses.asdict(settings))


def settings_from_json(text: str) -> RelaySettings:
    fields = {f.name: f for f in dataclasses.fields(RelaySettings)}
    given: dict[str, Any] = json.loads(text)
    # JSON has no tuples: the address and server lists come back as lists.
    known: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if k in fields
    }
    return RelaySettings(**known)


def die_with_parent(parent: int) -> None:
    """SIGTERM when the parent ends (Linux); then, if it already ended, stop now."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit("relay worker: the server is gone")


class Worker:
    """Answers the server's requests with one relay."""

    def __init__(self, relay: Relay, channel: Channel, settings: RelaySettings) -> None:
        self.relay = relay
        self.channel = channel
        # The lessons whose home is another worker and some classrooms are here.
        self.followed = FollowedLessons(relay, settings, self._event)
        self._recorders: dict[str, Recorder] = {}
        self._peers: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()

    async def serve(self) -> None:
        forwarding = [
            asyncio.create_task(self._forward_reports(), name="worker-reports"),
            asyncio.create_task(self._watch_peers(), name="worker-peers"),
        ]
        reading = asyncio.create_task(self._read(), name="worker-requests")
        stopped = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({reading, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [reading, stopped, *forwarding, *self._tasks]:
                task.cancel()
            try:
                await asyncio.wait_for(self.followed.close(), CLOSE_TIMEOUT_S)
                await asyncio.wait_for(self.relay.close(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                logger.error("the relay did not close within %.0f s", CLOSE_TIMEOUT_S)
            await self.channel.close()

    async def _read(self) -> None:
        with contextlib.suppress(ChannelClosed):
            while True:
                request = await self.channel.receive()
                if request.get("op") == "close":
                    self.stopping.set()
                    return
                # Each request runs as its own task, as the server's calls do on one
                # relay: a negotiation waiting on ICE gathering holds nobody else up.
                # Tasks start in the order the requests came (a disconnect after its
                # negotiate), and the synchronous ones finish before the next is read.
                task = asyncio.create_task(self._answer(request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: Message) -> None:
        rid = request.get("id")
        try:
            result = await self._handlers()[request["op"]](**request.get("args", {}))
            reply: Message = {"re": rid, "ok": result}
        except MediaError as exc:
            reply = {"re": rid, "error": str(exc) or "the relay refused the request"}
        except Exception as exc:
            logger.exception("request %s failed", request.get("op"))
            # A fault of the relay, not of the request: the server says so as the
            # relay in its own process would (signaling.ws: media_unavailable).
            reply = {"re": rid, "error": f"the relay failed: {type(exc).__name__}", "fault": True}
        with contextlib.suppress(ChannelClosed):
            self.channel.send(reply)

    def _handlers(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        return {
            "negotiate": self.negotiate,
            "set_stage": self.set_stage,
            "cover_screen": self.cover_screen,
            "disconnect": self.disconnect,
            "end_lesson": self.end_lesson,
            "start_recording": self.start_recording,
            "pause_recording": self.pause_recording,
            "resume_recording": self.resume_recording,
            "stop_recording": self.stop_recording,
            # A lesson spread over workers (media.workers.follower): at its home,
            "feed": self.feed,
            "want_feed": self.want_feed,
            "drop_feed": self.drop_feed,
            "uplink": self.uplink,
            # and at a follower.
            "pull_offer": self.pull_offer,
            "pull_accept": self.pull_accept,
            "uplink_offer": self.uplink_offer,
            "uplink_accept": self.uplink_accept,
        }

    # --- the requests -----------------------------------------------------------------

    async def negotiate(
        self, lesson: str, participant: str, role: str, sdp: str, whip: bool
    ) -> str:
        self._peers.discard((lesson, participant))
        answer = await self.relay.negotiate(lesson, participant, Role(role), sdp, whip=whip)
        self._peers.add((lesson, participant))
        return answer

    async def set_stage(self, lesson: str, classroom: str | None) -> None:
        await self.relay.set_stage(lesson, classroom)
        self.followed.stage_changed(lesson)

    async def cover_screen(self, lesson: str, covered: bool) -> None:
        await self.relay.cover_screen(lesson, covered)

    async def disconnect(self, lesson: str, participant: str) -> None:
        self._peers.discard((lesson, participant))
        await self.followed.drop_uplink(lesson, participant)
        await self.relay.disconnect(lesson, participant)

    async def end_lesson(self, lesson: str) -> None:
        self._peers = {peer for peer in self._peers if peer[0] != lesson}
        await self.relay.end_lesson(lesson)
        await self.followed.forget(lesson)

    async def feed(self, lesson: str, follower: str, sdp: str) -> str:
        """At the home worker: answer a follower's pull of the lesson."""
        return await self.relay.negotiate_feed(lesson, follower, sdp)

    async def want_feed(self, lesson: str, follower: str, lines: list[int]) -> None:
        self.relay.want_feed(lesson, follower, lines)

    async def drop_feed(self, lesson: str, follower: str) -> None:
        await self.relay.drop_feed(lesson, follower)

    async def uplink(self, lesson: str, participant: str, sdp: str) -> str:
        """At the home worker: answer the uplink of a classroom a follower serves."""
        return await self.relay.negotiate_uplink(lesson, participant, sdp)

    async def pull_offer(self, lesson: str) -> str:
        """At a follower: a pull of the lesson from its home, offered."""
        return await self.followed.pull_offer(lesson)

    async def pull_accept(self, lesson: str, sdp: str) -> None:
        await self.followed.pull_accept(lesson, sdp)

    async def uplink_offer(self, lesson: str, participant: str) -> str | None:
        """At a follower: a classroom's uplink to the home, offered."""
        return await self.followed.uplink_offer(lesson, participant)

    async def uplink_accept(self, lesson: str, participant: str, sdp: str) -> bool:
        return await self.followed.uplink_accept(lesson, participant, sdp)

    async def start_recording(self, lesson: str, directory: str, meta: dict[str, Any]) -> None:
        self._recorders[lesson] = self.relay.start_recording(lesson, Path(directory), meta)

    async def pause_recording(self, lesson: str) -> None:
        if (recorder := self._recorders.get(lesson)) is not None:
            recorder.pause()

    async def resume_recording(self, lesson: str) -> None:
        if (recorder := self._recorders.get(lesson)) is not None:
            recorder.resume()

    async def stop_recording(self, lesson: str) -> Any:
        self._recorders.pop(lesson, None)
        return self.relay.stop_recording(lesson)

    # --- events -------------------------------------------------------------------------

    def _event(self, message: Message) -> None:
        with contextlib.suppress(ChannelClosed):
            self.channel.send(message)

    async def _forward_reports(self) -> None:
        async for report in self.relay.link_reports():
            with contextlib.suppress(ChannelClosed):
                self.channel.send({"event": "report", "report": dataclasses.asdict(report)})

    async def _watch_peers(self) -> None:
        """Peers the relay closed by itself: the server's `has_peer` says so too."""
        while True:
            await asyncio.sleep(GONE_POLL_S)
            for lesson, participant in list(self._peers):
                if not self.relay.has_peer(lesson, participant):
                    self._peers.discard((lesson, participant))
                    with contextlib.suppress(ChannelClosed):
                        self.channel.send(
                            {"event": "gone", "lesson": lesson, "participant": participant}
                        )


async def run(sock: socket.socket, settings: RelaySettings, index: int) -> None:
    channel = await Channel.over(sock)
    try:
        relay = Relay(settings)
    except OSError as exc:  # an ICE port taken
        channel.send({"event": "failed", "error": str(exc)})
        await channel.close()
        raise SystemExit(1) from None
    channel.send({"event": "ready", "pid": os.getpid()})
    worker = Worker(relay, channel, settings)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stopping.set)
    logger.info("relay worker %d ready (pid %d)", index, os.getpid())
    await worker.serve()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="media.workers.worker", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="this end of the socketpair")
    parser.add_argument("--parent", type=int, required=True, help="the server's PID")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--settings", required=True, help="RelaySettings as JSON")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s worker{args.index} %(name)s: %(message)s",
    )
    for name in filter(None, os.environ.get("CLASSROOM_DEBUG", "").split(",")):
        logging.getLogger(name.strip()).setLevel(logging.DEBUG)
    sock = socket.socket(fileno=args.fd)
    import gc

    gc.freeze()  # as `classroom serve` does: modules out of the collector's sight
    asyncio.run(run(sock, settings_from_json(args.settings), args.index))


if __name__ == "__main__":
    main()
