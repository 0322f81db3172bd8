"""What a rejoin costs on a long lesson: bytes sent and the server's CPU.

    python -m scripts.bench_catchup --events 15000 --rejoins 15

First, in this process, the app (built by its factory on a data folder of its own) is
given a lesson whose log holds `--events` chat lines, and stopped: the lesson stays
in its SQLite store. Then the real `classroom serve` starts on that folder, on
127.0.0.1, and a classroom joins `--rejoins` times in a row with `since: 0` (a page
that lost everything, or a client reconnecting in a loop). Each time, what it is sent
up to its own arrival is counted; the server's CPU over all of them is read from
/proc. The server is started and stopped by this script, by its PID.

The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MAX_EVENTS = 50_000
MAX_REJOINS = 100
HOST = "127.0.0.1"


async def fill(data_dir: Path, admin_key: str, events: int) -> dict[str, Any]:
    """A lesson with `events` chat lines, made through the app itself; its links."""
    import httpx

    from classroom import Join, PostChat
    from media.relay.relay import Relay
    from media.settings import RelaySettings
    from signaling.app import create_app
    from signaling.settings import Settings

    settings = Settings(data_dir=data_dir, admin_key=admin_key, ice_host_addresses=[HOST])
    relay = Relay(RelaySettings(host_addresses=(HOST,)))
    app = create_app(settings, relay, recorder=relay)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            made = await http.post(
                "/api/lessons",
                json={"title": "长课", "classrooms": ["Village"]},
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            made.raise_for_status()
            lesson: dict[str, Any] = made.json()
        lessons = app.state.runtime.lessons
        await lessons.execute(lesson["id"], Join(), "teacher")
        for i in range(events):
            await lessons.execute(lesson["id"], PostChat(text=f"第 {i} 行"), "teacher")
    await relay.close()
    return lesson


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def rejoin(ws_url: str, token: str) -> tuple[int, int]:
    """One join with since 0: bytes and messages received up to the end of the catch-up
    (the welcome, then missed events up to the snapshot's seq)."""
    from websockets.asyncio.client import connect

    received = messages = 0
    upto = None
    async with connect(ws_url, max_size=2**24) as ws:
        await ws.send(json.dumps({"type": "join", "token": token, "protocol": 1, "since": 0}))
        async for raw in ws:
            received += len(raw)
            messages += 1
            msg = json.loads(raw)
            if msg["type"] == "welcome":
                upto = msg["lesson"]["seq"]
            elif (msg.get("event") or {}).get("seq") == upto:
                return received, messages
    raise RuntimeError("the server closed the connection before the catch-up ended")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from scripts.bench_weaklink import _free_port, wait_healthy

    folder = Path(tempfile.mkdtemp(prefix="bench-catchup-"))
    admin_key = "bench-" + os.urandom(8).hex()
    started = time.monotonic()
    lesson = await fill(folder / "data", admin_key, args.events)
    filled_s = time.monotonic() - started
    room = lesson["classrooms"][0]
    port = _free_port(HOST)
    env = {**os.environ, "CLASSROOM_ADMIN_KEY": admin_key, "CLASSROOM_ICE_HOST_ADDRESSES": HOST}
    command = [sys.executable, "-m", "signaling", "serve", "--host", HOST, "--port", str(port),
               "--data-dir", str(folder / "data")]  # fmt: skip
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://{HOST}:{port}"
            await asyncio.to_thread(wait_healthy, base, server, folder / "server.log")
            ws_url = base.replace("http", "ws") + "/ws"
            before = cpu_s(server.pid)
            t0 = time.monotonic()
            sizes = [await rejoin(ws_url, room["token"]) for _ in range(args.rejoins)]
            wall = time.monotonic() - t0
            cpu = cpu_s(server.pid) - before
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "events": args.events,
        "rejoins": args.rejoins,
        "fill_s": round(filled_s, 1),
        "bytes_per_rejoin": max(b for b, _ in sizes),
        "messages_per_rejoin": max(m for _, m in sizes),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_per_rejoin_ms": round(cpu / args.rejoins * 1000, 1),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=15_000)
    parser.add_argument("--rejoins", type=int, default=15)
    args = parser.parse_args()
    if not 1 <= args.events <= MAX_EVENTS:
        parser.error(f"--events must be within 1..{MAX_EVENTS}")
    if not 1 <= args.rejoins <= MAX_REJOINS:
        parser.error(f"--rejoins must be within 1..{MAX_REJOINS}")
    print(json.dumps(asyncio.run(measure(args))))


if __name__ == "__main__":
    main()
