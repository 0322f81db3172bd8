"""How fast a classroom page comes back by itself after its link is cut, or the server restarts.

    python -m scripts.bench_outage [--cuts 10,60] [--restarts term,kill]

The link emulator (scripts.linkemu, profile `clear`) joins two network namespaces:
the server, a synthetic teacher (an aiortc peer publishing camera, slides and a
tone, reconnecting by itself) and a second classroom (protocol only, to hold a place
in the hand queue) live in one; a classroom page in headless Chromium in the other.
The page raises a hand, the second classroom raises one after it. Then, one after
the other:

- a cut of N seconds (every packet dropped both ways: linkemu's SIGUSR2, SIGHUP
  restores it); `recovery_s` is from the restore to the first teacher camera frame
  the page decodes afterwards, read from its own getStats() every 100 ms;
- a server restart (SIGTERM, or SIGKILL), the same port and data folder;
  `recovery_s` is from the moment the new server answers /healthz.

For each: whether the page noticed (its connection badge left "open"), whether the
teacher saw the classroom leave and come back (participant_left / participant_joined),
and whether the page's hand is still up with its place in the queue kept. Nobody
clicks anything. The last line printed is a JSON object. Needs root, iproute2 and
Debian's chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench_weaklink import (
    CHROMIUM_ARGS,
    CLASSROOM_SLOTS,
    _chromium_in,
    _free_port,
    _http,
    wait_healthy,
)
from scripts.linkemu import SERVER_ADDR, measure_across

# Every 100 ms, the page clock's times (ms from navigation) at which the teacher
# camera's framesDecoded grew, per peer connection (a rebuilt one counts from 0).
FRAMES_JS = """
(() => {
  const slot = %d;
  window.__cameraFrames = [];
  let pc = null, last = 0;
  setInterval(async () => {
    const c = window.__classroom;
    if (!c || !c.pc) return;
    if (c.pc !== pc) { pc = c.pc; last = 0; }
    const mid = pc.getTransceivers()[slot]?.mid;
    if (mid == null) return;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.mid === mid && (s.framesDecoded || 0) > last) {
        last = s.framesDecoded;
        window.__cameraFrames.push(performance.now());
      }
    });
  }, 100);
})();
"""
STATE_JS = """
() => {
  const el = document.querySelector('[data-testid=connection]');
  const c = window.__classroom;
  const hand = document.querySelector('[data-testid=hand-status]');
  return {
    signal: el ? el.dataset.signal : null,
    media: el ? el.dataset.media : null,
    hands: c && c.view ? c.view.hands.map((h) => h.classroom_id) : [],
    hand_shown: !!(hand && !hand.hidden && hand.dataset.student),
    now: performance.now(),
  };
}
"""
STUDENT = "李华"
# A scenario that has not recovered by then is reported as not recovered.
RECOVERY_LIMIT_S = 40.0
RETRY_S = 0.3


@dataclass
class Server:
    """`classroom serve` of this checkout in a process of its own, stopped and started
    again on one port and folder: here in this namespace; bench_failover's nodes on
    loopback, with Redis in `env`."""

    folder: Path
    admin_key: str
    host: str = SERVER_ADDR
    env: dict[str, str] = field(default_factory=dict)
    log_name: str = "server.log"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = self.port or _free_port(self.host)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> float:
        """Start; the monotonic time at which /healthz first answered."""
        env = {
            **os.environ,
            "CLASSROOM_ADMIN_KEY": self.admin_key,
            "CLASSROOM_ICE_HOST_ADDRESSES": self.host,
            **self.env,
        }
        command = [sys.executable, "-m", "signaling", "serve", "--host", self.host]
        command += ["--port", str(self.port), "--data-dir", str(self.folder)]
        log_path = self.folder / self.log_name
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_healthy(self.base, self.proc, log_path)
        return time.monotonic()

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(how)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Participant:
    """A protocol client that rejoins by itself (with `since`), as a page does; the
    teacher also publishes, a fresh aiortc peer per connection."""

    ws_url: str
    token: str
    publish: bool = False
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    joined: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        seq: int | None = None
        while True:
            peer = None
            try:
                async with connect(self.ws_url, max_size=2**22, open_timeout=5) as ws:
                    join: dict[str, Any] = {"type": "join", "token": self.token, "protocol": 1}
                    if seq is not None:
                        join["since"] = seq
                    await ws.send(json.dumps(join))
                    sender = asyncio.create_task(self._send(ws))
                    try:
                        async for raw in ws:
                            msg = json.loads(raw)
                            if msg["type"] == "welcome":
                                seq = msg["lesson"].get("seq", seq)
                                self.joined.set()
                                if self.publish:
                                    peer = self._peer()
                                    offer = await peer.offer()
                                    await ws.send(json.dumps({"type": "offer", "sdp": offer}))
                            elif msg["type"] == "answer" and peer is not None:
                                await peer.accept(msg["sdp"])
                            elif msg["type"] == "event":
                                seq = max(seq or 0, msg["event"].get("seq") or 0)
                                self.events.append((time.monotonic(), msg["event"]))
                    finally:
                        sender.cancel()
            except Exception:
                pass  # a refused, dropped or timed-out connection: try again
            finally:
                self.joined.clear()
                if peer is not None:
                    await peer.close()
            await asyncio.sleep(RETRY_S)

    async def _send(self, ws: Any) -> None:
        while True:
            await ws.send(json.dumps(await self.outbox.get()))

    @staticmethod
    def _peer() -> Any:
        from classroom.roles import Role
        from media.synthetic import MovingPicture, SlideDeck, SyntheticParticipant

        videos = iter([MovingPicture(640, 360, 15), SlideDeck(1280, 720, 5)])
        return SyntheticParticipant(
            Role.TEACHER, send_video=lambda: next(videos), host_addresses=(SERVER_ADDR,)
        )

    def seen(self, kind: str, participant: str, after: float) -> float | None:
        """When an event of `kind` about `participant` arrived after `after`."""
        for t, event in self.events:
            about = (event.get("kind"), event.get("participant_id"))
            if t >= after and about == (kind, participant):
                return t
        return None


async def _state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(STATE_JS)
    return state


async def _frames_after(page: Any, page_ms: float) -> list[float]:
    frames: list[float] = await page.evaluate("window.__cameraFrames")
    return [t for t in frames if t > page_ms]


async def _wait_flowing(page: Any, since_ms: float, limit_s: float) -> float | None:
    """Page-clock seconds from `since_ms` to the first camera frame after it that is
    followed by more (the picture moves again), or None within `limit_s`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        frames = await _frames_after(page, since_ms)
        if len(frames) >= 3:
            return round((frames[0] - since_ms) / 1000, 2)
        await asyncio.sleep(0.1)
    return None


async def cut(
    page: Any, emulator_pid: int, seconds: float, teacher: Participant, classroom_id: str
) -> dict[str, Any]:
    before = await _state(page)
    t_cut = time.monotonic()
    os.kill(emulator_pid, signal.SIGUSR2)
    noticed: float | None = None
    while time.monotonic() - t_cut < seconds:
        if noticed is None and (await _state(page))["signal"] != "open":
            noticed = round(time.monotonic() - t_cut, 2)
        await asyncio.sleep(0.2)
    os.kill(emulator_pid, signal.SIGHUP)
    t_restore = time.monotonic()
    restore_ms = (await _state(page))["now"]
    recovery = await _wait_flowing(page, restore_ms, RECOVERY_LIMIT_S)
    await asyncio.sleep(1.0)
    after = await _state(page)
    left = teacher.seen("participant_left", classroom_id, t_cut)
    back = teacher.seen("participant_joined", classroom_id, t_cut)
    return {
        "recovery_s": recovery,
        "page_noticed_s": noticed,
        "teacher_saw_offline_s": None if left is None else round(left - t_cut, 2),
        "teacher_saw_online_s": None if back is None else round(back - t_restore, 2),
        "rejoined": after["signal"] == "open" and after["media"] == "connected",
        "hand_kept": after["hand_shown"],
        "queue_kept": after["hands"] == before["hands"],
        "hands": after["hands"],
    }


async def restart(
    page: Any, server: Server, how: signal.Signals, teacher: Participant, classroom_id: str
) -> dict[str, Any]:
    before = await _state(page)
    t_stop = time.monotonic()
    server.stop(how)
    t_up = server.start()
    up_ms = (await _state(page))["now"]
    recovery = await _wait_flowing(page, up_ms, RECOVERY_LIMIT_S)
    await asyncio.sleep(1.0)
    after = await _state(page)
    back = teacher.seen("participant_joined", classroom_id, t_stop)
    return {
        "recovery_s": recovery,
        "down_s": round(t_up - t_stop, 2),
        "teacher_saw_online_s": None if back is None else round(back - t_up, 2),
        "rejoined": after["signal"] == "open" and after["media"] == "connected",
        "hand_kept": after["hand_shown"],
        "queue_kept": after["hands"] == before["hands"],
        "hands": after["hands"],
    }


async def measure(args: argparse.Namespace, client_ns: str, emulator_pid: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    folder = Path(tempfile.mkdtemp(prefix="outage-"))
    server = Server(folder, secrets.token_urlsafe(16))
    server.start()
    result: dict[str, Any] = {"artifacts": str(folder)}
    tasks: list[asyncio.Task[None]] = []
    try:
        lesson = _http(
            "POST",
            server.base + "/api/lessons",
            {"title": "断线重连", "classrooms": ["石桥小学", "河口小学"]},
            server.admin_key,
        )
        ws_url = server.base.replace("http://", "ws://") + "/ws"
        room, other = lesson["classrooms"]
        teacher = Participant(ws_url, lesson["teacher"]["token"], publish=True)
        second = Participant(ws_url, other["token"])
        tasks = [asyncio.create_task(p.run()) for p in (teacher, second)]
        await asyncio.wait_for(teacher.joined.wait(), 30)
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                str(folder / "profile"),
                executable_path=_chromium_in(client_ns, folder),
                headless=True,
                args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={server.base}"],
                viewport={"width": 1366, "height": 768},
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                await page.add_init_script(FRAMES_JS % CLASSROOM_SLOTS.index("teacher_camera"))
                await page.goto(f"{server.base}/classroom#token={room['token']}", timeout=60_000)
                if await _wait_flowing(page, 0, 60) is None:
                    raise RuntimeError("the classroom page never showed the teacher's camera")
                # Its hand first, the second classroom's after it: a place in the queue.
                await page.click("[data-testid=raise-hand]")
                await page.fill("[data-testid=student-name]", STUDENT)
                await page.click("[data-testid=raise-confirm]")
                await page.wait_for_selector("[data-testid=hand-status][data-student]")
                await second.joined.wait()
                await second.outbox.put({"type": "raise_hand", "student": "王芳"})
                await page.wait_for_function("() => window.__classroom.view.hands.length === 2")
                for seconds in args.cuts:
                    key = f"cut_{seconds:g}s"
                    result[key] = await cut(page, emulator_pid, seconds, teacher, room["id"])
                    await asyncio.sleep(2)
                for name in args.restarts:
                    how = signal.SIGKILL if name == "kill" else signal.SIGTERM
                    key = f"restart_{name}"
                    result[key] = await restart(page, server, how, teacher, room["id"])
                    await asyncio.sleep(2)
                await page.screenshot(path=str(folder / "classroom.png"))
            finally:
                await context.close()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.stop()
    return result


def _seconds_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    for name in names:
        if name not in ("term", "kill"):
            raise argparse.ArgumentTypeError(f"{name!r}: term or kill")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=_seconds_list, default=[10.0, 60.0])
    parser.add_argument("--restarts", type=_names, default=["term", "kill"])
    args = parser.parse_args()
    if any(not 0 < s <= 300 for s in args.cuts):
        raise SystemExit("a cut lasts between 0 and 300 s")
    inner = os.environ.get("OUTAGE_INNER")
    if inner:
        client_ns, emulator_pid = inner.split(",")
        result = asyncio.run(measure(args, client_ns, int(emulator_pid)))
        print(json.dumps(result), flush=True)
        return
    inner = ["scripts.bench_outage", "--cuts", ",".join(f"{s:g}" for s in args.cuts)]
    inner += ["--restarts", ",".join(args.restarts)]
    budget = sum(args.cuts) + 60 * (len(args.cuts) + len(args.restarts)) + 120
    result = measure_across("clear", f"o{os.getpid()}", "OUTAGE_INNER", inner, budget)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
