"""How long a classroom page is without the teacher's camera when the lesson's node (or relay
worker) is killed.

    python -m scripts.bench_failover [--runs 3] [--ws-on survivor,dead]

A `redis-server` and two `classroom serve` nodes on loopback, sharing one data folder.
Each run starts a fresh node A and creates a lesson on it (A holds the lesson and runs
its media); node B lives through all runs. A synthetic teacher (an aiortc peer, camera
and slides) publishes; a classroom page in headless Chromium (the real page, Debian's
chromium) shows the teacher's camera and raises a hand; a second classroom (protocol
only) raises one after it. Then A is killed (SIGKILL), and B adopts the lesson.

`video_back_s` is from the kill to the first teacher camera frame the page decodes
afterwards on a new peer connection (the old one only drains what it had buffered)
that is followed by more, read from its own getStats() every 100 ms (page clock).
Where the participants' WebSockets are, per scenario:

- `survivor`: on B (the page loaded from B): they stay connected, and offer again when B
  says `media_moved`;
- `dead`: on A, through one address in front of both nodes (scripts.front, a load
  balancer's stand-in): their WebSockets close with A, and they reconnect by themselves,
  reaching B, which refuses them (`lesson_unavailable`) until it has adopted the lesson;
- `worker`: no Redis and no second node: one server with two relay workers
  (`CLASSROOM_WORKERS=2`), and the worker that holds the lesson's media is killed
  instead; the server moves the lesson to the other worker and says `media_moved`.

Also per run: when the teacher was told `media_moved` (survivor), whether the page's hand
and its place in the queue are kept. Nobody clicks anything after the hand. The last line
printed is a JSON object. Needs redis-server, Debian's chromium and playwright.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench_outage import RECOVERY_LIMIT_S, STATE_JS, STUDENT, Server
from scripts.bench_weaklink import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CLASSROOM_SLOTS,
    _free_port,
    _http,
)
from scripts.front import Front

HOST = "127.0.0.1"
RETRY_S = 0.3
# Every 100 ms, the page clock's times at which the teacher camera's framesDecoded grew,
# with the number of the peer connection that decoded them: after the kill, only a new
# one's count (the old one's decoder drains what it had buffered, from the dead node).
FRAMES_JS = """
(() => {
  const slot = %d;
  window.__cameraFrames = [];
  window.__pcNumber = 0;
  let pc = null, last = 0;
  setInterval(async () => {
    const c = window.__classroom;
    if (!c || !c.pc) return;
    if (c.pc !== pc) { pc = c.pc; last = 0; window.__pcNumber += 1; }
    const number = window.__pcNumber;
    const mid = pc.getTransceivers()[slot]?.mid;
    if (mid == null) return;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.mid === mid && (s.framesDecoded || 0) > last) {
        last = s.framesDecoded;
        window.__cameraFrames.push([performance.now(), number]);
      }
    });
  }, 100);
})();
"""


def node_process(folder: Path, admin_key: str, redis_url: str, name: str) -> Server:
    """A node of the cluster: `classroom serve` on loopback, sharing `redis_url`."""
    env = {"CLASSROOM_REDIS_URL": redis_url}
    return Server(folder, admin_key, HOST, env, f"{name}.log")


@dataclass
class Participant:
    """A protocol client that rejoins by itself; the teacher publishes a fresh aiortc
    peer after each welcome and each `media_moved`."""

    ws_url: str
    token: str
    publish: bool = True
    raise_hand: str | None = None
    moved_at: list[float] = field(default_factory=list)
    joined: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        seq: int | None = None
        while True:
            peers: list[Any] = []
            try:
                async with connect(self.ws_url, max_size=2**22, open_timeout=5) as ws:
                    join: dict[str, Any] = {"type": "join", "token": self.token, "protocol": 1}
                    if seq is not None:
                        join["since"] = seq
                    await ws.send(json.dumps(join))
                    async for raw in ws:
                        msg = json.loads(raw)
                        if msg["type"] == "media_moved":
                            self.moved_at.append(time.monotonic())
                        if msg["type"] == "welcome":
                            seq = msg["lesson"].get("seq", seq)
                            self.joined.set()
                            if self.raise_hand is not None:
                                hand = {"type": "raise_hand", "student": self.raise_hand}
                                await ws.send(json.dumps(hand))
                                self.raise_hand = None
                        if msg["type"] in ("welcome", "media_moved") and self.publish:
                            peers.append(self._peer())
                            offer = await peers[-1].offer()
                            await ws.send(json.dumps({"type": "offer", "sdp": offer}))
                        elif msg["type"] == "answer" and peers:
                            await peers[-1].accept(msg["sdp"])
                        elif msg["type"] == "event":
                            seq = max(seq or 0, msg["event"].get("seq") or 0)
            except Exception:
                pass  # a refused, dropped or timed-out connection: try again
            finally:
                self.joined.clear()
                for peer in peers:
                    await peer.close()
            await asyncio.sleep(RETRY_S)

    @staticmethod
    def _peer() -> Any:
        from classroom.roles import Role
        from media.synthetic import MovingPicture, SlideDeck, SyntheticParticipant

        videos = iter([MovingPicture(640, 360, 15), SlideDeck(1280, 720, 5)])
        return SyntheticParticipant(
            Role.TEACHER, send_video=lambda: next(videos), host_addresses=(HOST,)
        )


async def _state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(STATE_JS)
    return state


async def _wait_flowing(page: Any, since_ms: float, after_pc: int, limit_s: float) -> float | None:
    """Page-clock seconds from `since_ms` to the first camera frame that a peer connection
    newer than `after_pc` decoded, followed by two more; None if not within `limit_s`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        frames: list[list[float]] = await page.evaluate("window.__cameraFrames")
        new = [t for t, number in frames if number > after_pc and t > since_ms]
        if len(new) >= 3:
            return round((new[0] - since_ms) / 1000, 2)
        await asyncio.sleep(0.1)
    return None


async def _segments(b: Server, lesson_id: str, admin_key: str) -> list[str]:
    """The states of the lesson's recordings, once the dead node's is repaired (10 s at
    most: the repair remuxes its files in the background)."""
    deadline = time.monotonic() + 10
    while True:
        found = _http("GET", f"{b.base}/api/lessons/{lesson_id}/recordings", None, admin_key)
        states = [r["state"] for r in found["recordings"]]
        if states[:1] != ["recording"] or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.5)


async def one_run(
    context: Any, folder: Path, admin_key: str, redis_url: str, b: Server, ws_on: str, n: int
) -> dict[str, Any]:
    """`survivor` or `dead`: the lesson on a fresh node A, A killed, B adopts it."""
    a = node_process(folder, admin_key, redis_url, f"a{n}")
    a.start()
    front = Front(HOST, _free_port(HOST), [(HOST, a.port), (HOST, b.port)])
    await front.start()
    base = f"http://{HOST}:{front.port}" if ws_on == "dead" else b.base
    try:
        return await _through_a_kill(
            context, a.base, base, b, admin_key, ws_on, lambda: a.stop(signal.SIGKILL)
        )
    finally:
        await front.close()
        a.stop(signal.SIGKILL)


async def worker_run(context: Any, folder: Path, admin_key: str, n: int) -> dict[str, Any]:
    """`worker`: one server with two relay workers (no Redis); the lesson's worker is
    killed by its PID and the server moves the lesson to the other one."""
    server = Server(folder / f"w{n}", admin_key, HOST, {"CLASSROOM_WORKERS": "2"})
    server.folder.mkdir(parents=True)
    server.start()
    assert server.proc is not None
    server_pid = server.proc.pid

    def kill() -> None:
        log = (server.folder / server.log_name).read_text(errors="replace")
        placed = re.findall(r"placed on relay worker (\d+)", log)
        os.kill(relay_workers(server_pid)[int(placed[0])], signal.SIGKILL)

    try:
        return await _through_a_kill(
            context, server.base, server.base, server, admin_key, "worker", kill
        )
    finally:
        server.stop()


def relay_workers(server_pid: int) -> dict[int, int]:
    """A server's relay workers (`--workers`): index -> PID, from /proc (their parent and
    their command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == server_pid and "media.workers.worker" in argv:
            found[int(argv[argv.index("--index") + 1])] = int(entry)
    return found


async def _through_a_kill(
    context: Any,
    create_on: str,
    base: str,
    after: Server,
    admin_key: str,
    ws_on: str,
    kill: Callable[[], None],
) -> dict[str, Any]:
    """A lesson made on `create_on`, its page and participants on `base`, then `kill`:
    what the page shows after it, and the recordings `after` lists."""
    tasks: list[asyncio.Task[None]] = []
    page = await context.new_page()
    try:
        lesson = _http(
            "POST",
            create_on + "/api/lessons",
            {"title": "节点故障", "classrooms": ["石桥小学", "河口小学"]},
            admin_key,
        )
        ws_url = base.replace("http://", "ws://") + "/ws"
        room, other = lesson["classrooms"]
        teacher = Participant(ws_url, lesson["teacher"]["token"])
        second = Participant(ws_url, other["token"], publish=False)
        tasks = [asyncio.create_task(teacher.run())]
        await asyncio.wait_for(teacher.joined.wait(), 30)
        await page.add_init_script(FRAMES_JS % CLASSROOM_SLOTS.index("teacher_camera"))
        await page.goto(f"{base}/classroom#token={room['token']}", timeout=60_000)
        if await _wait_flowing(page, 0, 0, 60) is None:
            raise RuntimeError("the classroom page never showed the teacher's camera")
        await page.click("[data-testid=raise-hand]")
        await page.fill("[data-testid=student-name]", STUDENT)
        await page.click("[data-testid=raise-confirm]")
        await page.wait_for_selector("[data-testid=hand-status][data-student]")
        second.raise_hand = "王芳"
        tasks.append(asyncio.create_task(second.run()))
        await page.wait_for_function("() => window.__classroom.view.hands.length === 2")
        await asyncio.sleep(2)  # the recording has begun, the layers settled
        before = await _state(page)

        kill_ms, pc_number = await page.evaluate("[performance.now(), window.__pcNumber]")
        t_kill = time.monotonic()
        kill()
        video_back = await _wait_flowing(page, kill_ms, pc_number, RECOVERY_LIMIT_S)
        await asyncio.sleep(1.0)
        state = await _state(page)
        moved = [t - t_kill for t in teacher.moved_at if t > t_kill]
        segments = await _segments(after, lesson["id"], admin_key)
        _http("POST", f"{after.base}/api/lessons/{lesson['id']}/end", None, admin_key)
        return {
            "ws_on": ws_on,
            "video_back_s": video_back,
            "teacher_told_media_moved_s": round(moved[0], 2) if moved else None,
            "rejoined": state["signal"] == "open" and state["media"] == "connected",
            "hand_kept": state["hand_shown"],
            "queue_kept": state["hands"] == before["hands"],
            "recording_segments": segments,
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await page.close()


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from scripts.redis_server import RedisServer

    folder = Path(tempfile.mkdtemp(prefix="failover-"))
    admin_key = secrets.token_urlsafe(16)
    redis = RedisServer()
    b = node_process(folder, admin_key, redis.url, "b")
    runs: list[dict[str, Any]] = []
    try:
        # A first node makes the database and the keys; B is started after it.
        first = node_process(folder, admin_key, redis.url, "first")
        first.start()
        b.start()
        first.stop()
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                str(folder / "profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1366, "height": 768},
            )
            try:
                for n in range(args.runs):
                    for ws_on in args.ws_on:
                        if ws_on == "worker":
                            run = await worker_run(context, folder, admin_key, n)
                        else:
                            run = await one_run(context, folder, admin_key, redis.url, b, ws_on, n)
                        runs.append(run)
                        print(json.dumps(run, ensure_ascii=False), flush=True)
            finally:
                await context.close()
    finally:
        b.stop()
        redis.stop()
    summary: dict[str, Any] = {"runs": runs, "artifacts": str(folder)}
    for ws_on in args.ws_on:
        times = [r["video_back_s"] for r in runs if r["ws_on"] == ws_on]
        done = [t for t in times if t is not None]
        summary[f"video_back_s_{ws_on}"] = {
            "median": statistics.median(done) if done else None,
            "max": max(done) if done else None,
            "not_back": len(times) - len(done),
        }
    summary["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
        summary.pop("artifacts")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--ws-on",
        type=lambda text: [x for x in text.split(",") if x],
        default=["survivor", "dead", "worker"],
        help="where the participants' WebSockets are: survivor, dead (comma-separated); "
        "worker: one server with two relay workers, the lesson's worker killed",
    )
    parser.add_argument("--keep", action="store_true", help="keep the folder (logs, recordings)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args)), ensure_ascii=False))


if __name__ == "__main__":
    main()
