"""This server process as one node of several that share lessons through Redis.

What a node keeps in Redis, under `classroom:`:
- `node:<id>`: that the node is alive, with a TTL (`ttl_s`, CLASSROOM_NODE_TTL_S) it
  renews every beat (`beat_s`, CLASSROOM_NODE_BEAT_S);
- `lesson:<id>:node`: which node holds a lesson (its state, its roster, its media),
  with a TTL its node renews while the lesson runs;
- `lessons`: the set of lessons that run somewhere, which every node looks over every
  beat for one whose node is gone (`orphans`), to adopt it (`take_over`);
- a channel per node (`inbox:<id>`) on which other nodes ask it for what only the
  lesson's node can do (run a command, answer an SDP offer) and it answers them.

Requests go through Redis rather than HTTP between nodes: every node already has one
authenticated connection to Redis, and none has to know another's address, reach it
or trust it; and a PUBLISH says how many listened, so a request to a node that is
gone fails at once instead of after a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from classroom.errors import DomainError
from signaling.settings import BEATS_PER_TTL

log = logging.getLogger(__name__)

PREFIX = "classroom:"
# The defaults of CLASSROOM_NODE_BEAT_S and CLASSROOM_NODE_TTL_S (signaling.settings).
# A killed node is noticed between TTL - beat and TTL + beat after it stopped renewing
# (its key expires, then the next look of a survivor sees it), so that a lesson moves
# within about 2 s. What it costs: each node sends Redis, every beat, one pipeline (its
# key and a renewal per lesson it holds) and one look (SMEMBERS, MGET and an EXISTS per
# other node): about 8 commands a second per node plus 2 per lesson, nothing that grows
# with participants. The TTL holds several beats (BEATS_PER_TTL), so that one late or
# lost beat (a busy machine, a Redis reconnect) does not pass for a death.
HEARTBEAT_S = 0.5
NODE_TTL_S = 2.0
# The beat comes from a thread of its own, so that a busy event loop (an encoder
# starting, a burst of work on a loaded machine: 2 s stalls were seen) does not pass
# for a dead node; but a loop stuck this long is one, and the beat stops.
LOOP_STALL_S = 10.0
# Longer than a node's: a survivor reads whose lesson it was (the dead node's), and the
# key of a cluster that stopped whole outlives none of its nodes by much.
PLACEMENT_TTL_S = 15
ASK_TIMEOUT_S = 30.0
BROADCAST = PREFIX + "nodes"
RUNNING = PREFIX + "lessons"

# Renew a placement unless another node holds it: a node that stalled and was presumed
# dead must not take back a lesson adopted meanwhile; but one that Redis forgot (a Redis
# restarted without persistence) is written again, with the lesson among the running.
_RENEW = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[3])
  return 1
end
return 0
"""
# Adopt a lesson only if it is still placed where the adopter saw it (on the dead node,
# or nowhere: ARGV[1] empty): of several survivors that saw it orphaned, one wins.
_TAKE_OVER = """
local held = redis.call('GET', KEYS[1])
if (held == false and ARGV[1] == '') or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""

Args = dict[str, Any]
Handler = Callable[[Args], Awaitable[Args]]
Notice = Callable[[Args], None]
Listener = Callable[[str], None]
Lost = Callable[[str], None]


class NodeGone(DomainError):
    """The node that holds the lesson does not answer (stopped, killed, unreachable):
    the participant is told so, as of any command the lesson cannot take."""

    code = "lesson_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__("the server that holds this lesson does not answer; try again soon")
        self.detail = detail


class Refused(Exception):
    """The lesson's node refused the request; `code` and `message` are its own."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def inbox(node_id: str) -> str:
    return f"{PREFIX}inbox:{node_id}"


def placement_key(lesson_id: str) -> str:
    return f"{PREFIX}lesson:{lesson_id}:node"


def node_key(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


class Node:
    """One process's membership: liveness, the lessons placed here, requests and
    notices to other nodes, and the Redis channels the bus listens to (one PubSub
    connection for all of them)."""

    def __init__(
        self,
        redis: Redis,
        beat: SyncRedis,
        node_id: str | None = None,
        *,
        ttl_s: float = NODE_TTL_S,
        beat_s: float = HEARTBEAT_S,
    ) -> None:
        if beat_s * BEATS_PER_TTL > ttl_s:
            raise ValueError(f"a node's beat ({beat_s} s) must fit {BEATS_PER_TTL}x in its TTL")
        self.redis = redis
        self.ttl_s = ttl_s
        self.beat_s = beat_s
        # The heartbeat's own connection (a thread's: `_beat`).
        self._beat_redis = beat
        self._beating = threading.Event()
        self._beater: threading.Thread | None = None
        self._ticked = time.monotonic()
        self.id = node_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        # A number no other node has (INCR at start): observers' viewers are named
        # with it, so that two nodes never give one lesson's relay the same name.
        self.number = 0
        self._pubsub = redis.pubsub()
        self._handlers: dict[str, Handler] = {}
        self._notices: dict[str, Notice] = {}
        self._pending: dict[str, asyncio.Future[Args]] = {}
        self._listeners: dict[str, Listener] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._changes: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()
        self._owned: set[str] = set()
        # Called with a lesson whose placement another node holds now (this one stalled).
        self.lost: Lost = lambda lesson_id: None
        self._tasks: list[asyncio.Task[None]] = []
        self._work: set[asyncio.Task[Any]] = set()

    # -- life ----------------------------------------------------------------------

    async def start(self) -> None:
        self.number = int(await self.redis.incr(PREFIX + "node-numbers"))
        await self.redis.set(node_key(self.id), "1", px=self._ttl_ms)
        await self._pubsub.subscribe(inbox(self.id), BROADCAST)
        self._tasks = [
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._apply_changes()),
            asyncio.create_task(self._tick()),
        ]
        loop = asyncio.get_running_loop()
        self._beating.set()
        self._beater = threading.Thread(target=self._beat, args=(loop,), daemon=True)
        self._beater.start()
        log.info("node %s joined the cluster", self.id)

    async def close(self) -> None:
        self._beating.clear()
        if self._beater is not None:
            await asyncio.to_thread(self._beater.join)
        with contextlib.suppress(Exception):
            self._beat_redis.close()
        for task in [*self._tasks, *self._work]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._work, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(node_key(self.id))
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    @property
    def _ttl_ms(self) -> int:
        # Milliseconds (PX): a TTL under a second, or 1.5 s, is kept as given.
        return max(1, round(self.ttl_s * 1000))

    async def _tick(self) -> None:
        """The event loop's sign of life, which the beat checks."""
        while True:
            self._ticked = time.monotonic()
            await asyncio.sleep(self.beat_s)

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        """In a thread: renew the node's key and its lessons' placements, while the
        event loop lives; a placement another node took is given up, in the loop."""
        while self._beating.is_set():
            time.sleep(self.beat_s)
            if not self._beating.is_set():
                return
            if time.monotonic() - self._ticked > LOOP_STALL_S:
                log.error("node %s: its event loop is stuck; no more heartbeats", self.id)
                continue
            owned = list(self._owned)
            try:
                with self._beat_redis.pipeline(transaction=False) as pipe:
                    pipe.set(node_key(self.id), "1", px=self._ttl_ms)
                    for lesson_id in owned:
                        key = placement_key(lesson_id)
                        pipe.eval(_RENEW, 2, key, RUNNING, self.id, PLACEMENT_TTL_S, lesson_id)
                    renewed = pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("could not renew node %s in Redis: %s", self.id, exc)
                continue
            for lesson_id, done in zip(owned, renewed[1:], strict=True):
                if not done:
                    loop.call_soon_threadsafe(self._lose, lesson_id)

    def _lose(self, lesson_id: str) -> None:
        if lesson_id in self._owned:  # not released meanwhile
            log.error("lesson %s was adopted by another node; leaving it", lesson_id)
            self._owned.discard(lesson_id)
            self.lost(lesson_id)

    async def alive(self, node_id: str) -> bool:
        return bool(await self.redis.exists(node_key(node_id)))

    async def others_alive(self) -> bool:
        async for key in self.redis.scan_iter(match=node_key("*")):
            if key != node_key(self.id):
                return True
        return False

    # -- placement -------------------------------------------------------------------

    async def claim(self, lesson_id: str, *, new: bool = False) -> bool:
        """Place a lesson here: a new one always; a running one only if no node holds
        it (the first node to start resumes the lessons a stopped cluster left)."""
        placed = await self.redis.set(
            placement_key(lesson_id), self.id, ex=PLACEMENT_TTL_S, nx=not new
        )
        if placed:
            self._owned.add(lesson_id)
            await self.redis.sadd(RUNNING, lesson_id)
        return bool(placed)

    async def take_over(self, lesson_id: str, held_by: str | None) -> bool:
        """Adopt a lesson that `held_by` (a dead node, or None: nobody) holds; atomic,
        so of the survivors that saw it orphaned exactly one gets True."""
        key = placement_key(lesson_id)
        won = await self.redis.eval(_TAKE_OVER, 1, key, held_by or "", self.id, PLACEMENT_TTL_S)
        if won:
            self._owned.add(lesson_id)
        return bool(won)

    async def orphans(self) -> dict[str, str | None]:
        """The running lessons whose node is gone, with the node that held them (None:
        no node holds it). A lesson of this node is never one."""
        running = sorted(str(lesson_id) for lesson_id in await self.redis.smembers(RUNNING))
        if not running:
            return {}
        held = dict(
            zip(
                running,
                await self.redis.mget([placement_key(lesson_id) for lesson_id in running]),
                strict=True,
            )
        )
        others = sorted({str(n) for n in held.values() if n is not None and n != self.id})
        async with self.redis.pipeline(transaction=False) as pipe:
            for node_id in others:
                pipe.exists(node_key(node_id))
            alive = dict(zip(others, await pipe.execute(), strict=True))
        return {
            lesson_id: None if node_id is None else str(node_id)
            for lesson_id, node_id in held.items()
            if node_id is None or (node_id != self.id and not alive[str(node_id)])
        }

    async def release(self, lesson_id: str) -> None:
        self._owned.discard(lesson_id)
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(placement_key(lesson_id))

    async def retire(self, lesson_id: str) -> None:
        """The lesson ended: no node holds it, and none is to adopt it."""
        await self.release(lesson_id)
        await self.unlist(lesson_id)

    async def unlist(self, lesson_id: str) -> None:
        """Not a running lesson (it ended): no node is to adopt it."""
        with contextlib.suppress(RedisError, OSError):
            await self.redis.srem(RUNNING, lesson_id)

    def owns(self, lesson_id: str) -> bool:
        return lesson_id in self._owned

    async def owner(self, lesson_id: str) -> str | None:
        if lesson_id in self._owned:
            return self.id
        value = await self.redis.get(placement_key(lesson_id))
        return str(value) if value is not None else None

    # -- requests and notices ----------------------------------------------------------

    def on_request(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def on_notice(self, kind: str, notice: Notice) -> None:
        self._notices[kind] = notice

    async def ask(
        self, node_id: str, kind: str, args: Args, timeout_s: float = ASK_TIMEOUT_S
    ) -> Args:
        """Ask another node; its answer, or Refused (its error), or NodeGone."""
        ref = secrets.token_hex(8)
        future: asyncio.Future[Args] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        message = {"ask": kind, "ref": ref, "from": self.id, "args": args}
        try:
            if not await self.redis.publish(inbox(node_id), json.dumps(message)):
                raise NodeGone(f"node {node_id} does not listen")
            async with asyncio.timeout(timeout_s):
                answer = await future
        except TimeoutError:
            raise NodeGone(f"node {node_id} did not answer {kind}") from None
        except (RedisError, OSError) as exc:
            raise NodeGone(f"Redis did not take {kind} for node {node_id}: {exc}") from None
        finally:
            self._pending.pop(ref, None)
        if "error" in answer:
            raise Refused(answer["error"], answer.get("message", ""))
        result: Args = answer["result"]
        return result

    async def tell(self, node_id: str | None, kind: str, args: Args) -> None:
        """A notice to one node, or to all (None), with no answer."""
        channel = BROADCAST if node_id is None else inbox(node_id)
        message = {"tell": kind, "from": self.id, "args": args}
        try:
            await self.redis.publish(channel, json.dumps(message))
        except (RedisError, OSError) as exc:
            log.warning("could not tell %s to %s: %s", kind, node_id or "all nodes", exc)

    def spawn(self, work: Awaitable[Any]) -> None:
        """Work that runs on after its caller (a notice sent from a sync callback)."""
        task = asyncio.ensure_future(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _answer(self, message: Args) -> None:
        kind = message["ask"]
        reply: Args = {"reply": message["ref"]}
        try:
            reply["result"] = await self._handlers[kind](message["args"])
        except Refused as exc:
            reply |= {"error": exc.code, "message": exc.message}
        except Exception as exc:
            log.exception("request %s from %s failed", kind, message["from"])
            reply |= {"error": "internal", "message": f"the lesson's node failed: {exc}"}
        await self.redis.publish(inbox(message["from"]), json.dumps(reply))

    # -- channels --------------------------------------------------------------------

    def listen(self, channel: str, listener: Listener) -> None:
        self._listeners[channel] = listener
        self._confirmed[channel] = asyncio.Event()
        self._changes.put_nowait((True, channel))

    def unlisten(self, channel: str) -> None:
        self._listeners.pop(channel, None)
        self._confirmed.pop(channel, None)
        self._changes.put_nowait((False, channel))

    async def listening(self, channel: str) -> None:
        """Once Redis confirmed the subscription: what is published after is heard."""
        confirmed = self._confirmed.get(channel)
        if confirmed is not None:
            await confirmed.wait()

    async def _apply_changes(self) -> None:
        # One at a time, in order: a quick unlisten then listen ends listening.
        while True:
            on, channel = await self._changes.get()
            try:
                if on and channel in self._listeners:
                    await self._pubsub.subscribe(channel)
                elif not on and channel not in self._listeners:
                    await self._pubsub.unsubscribe(channel)
            except (RedisError, OSError) as exc:
                log.warning("could not (un)subscribe %s: %s", channel, exc)

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node %s lost its Redis subscriptions: %s", self.id, exc)
                await asyncio.sleep(1.0)
                continue
            if message is None:
                continue
            channel = str(message["channel"])
            if message["type"] == "subscribe":
                confirmed = self._confirmed.get(channel)
                if confirmed is not None:
                    confirmed.set()
            elif message["type"] == "message":
                self._arrived(channel, str(message["data"]))

    def _arrived(self, channel: str, data: str) -> None:
        listener = self._listeners.get(channel)
        if listener is not None:
            try:
                listener(data)
            except Exception:
                log.exception("a listener of %s failed", channel)
            return
        message: Args = json.loads(data)
        if message.get("from") == self.id and "reply" not in message:
            return  # our own broadcast
        if "reply" in message:
            future = self._pending.get(message["reply"])
            if future is not None and not future.done():
                future.set_result(message)
        elif "ask" in message and message["ask"] in self._handlers:
            self.spawn(self._answer(message))
        elif "tell" in message and message["tell"] in self._notices:
            try:
                self._notices[message["tell"]](message["args"])
            except Exception:
                log.exception("notice %s failed", message["tell"])
