"""Whether junk from a few clients stalls everyone else: another classroom's ping.

    python -m scripts.bench_fairness --seconds 6 --attackers 4

The real `classroom serve` is started by this script on 127.0.0.1 (and stopped by its
PID). Lesson A has a teacher and four classrooms, each pinging 8 times a second, one
ping at a time: the witnesses. For `--seconds` they ping alone (`quiet`), then for as
long again while `--attackers` connections send junk as fast as the server reads it
(`junk`; from a process of their own, so that they cannot starve the witnesses'
client): frames of 60 kB that are not JSON, and 5,000-deep JSON arrays, in turn. Half
the attackers have joined lesson B as its classrooms first (junk from a participant),
half never join (junk from anyone). An attacker the server closes reconnects at once,
as a determined one would. Each phase reports the witnesses' ping round trips (p50,
p99, max, in ms) and the attackers' frames sent, closes and reconnects. Last
(`reconnect_flood`), one classroom token of lesson C reconnects in a loop for as long,
sending 40 chats per connection, and C's teacher counts the chats that reach it: the
documented limit is 40 at once, then 10 a second per participant.

The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
MAX_SECONDS = 60.0
MAX_ATTACKERS = 16
WITNESS_PINGS_PER_S = 8.0
JUNK_BYTES = 60_000
JUNK_DEPTH = 5_000


def junk_frames() -> list[str]:
    """The two kinds of junk an attacker alternates."""
    not_json = ("junk! " * (JUNK_BYTES // 6 + 1))[:JUNK_BYTES]
    deep = '{"type": "chat", "text": ' + "[" * JUNK_DEPTH + "]" * JUNK_DEPTH + "}"
    return [not_json, deep]


@dataclass
class Attack:
    frames: int = 0
    closes: int = 0
    refused: int = 0
    close_reasons: dict[str, int] = field(default_factory=dict)


async def _drain(ws: Any) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def attacker(ws_url: str, token: str | None, stop: asyncio.Event, tally: Attack) -> None:
    """Send junk until `stop`; reconnect (and rejoin) whenever the server closes."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    frames = junk_frames()
    n = 0
    while not stop.is_set():
        try:
            async with connect(ws_url, max_size=2**20, open_timeout=5) as ws:
                reader = asyncio.create_task(_drain(ws))
                try:
                    if token is not None:
                        await ws.send(json.dumps({"type": "join", "token": token}))
                    while not stop.is_set():
                        await ws.send(frames[n % len(frames)])
                        n += 1
                        tally.frames += 1
                        await asyncio.sleep(0)  # let the reader drain the answers
                except ConnectionClosed as exc:
                    tally.closes += 1
                    rcvd = exc.rcvd
                    key = f"{rcvd.code} {rcvd.reason}" if rcvd else "no close frame"
                    tally.close_reasons[key] = tally.close_reasons.get(key, 0) + 1
                finally:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
        except (InvalidStatus, OSError, TimeoutError):
            # Refused at the handshake (a limit on connections): try again shortly.
            tally.refused += 1
            await asyncio.sleep(0.05)


def attack(ws_url: str, tokens: list[str | None], seconds: float) -> dict[str, Any]:
    """In a process of its own: the attackers for `seconds`; what they did, and when.

    At a lower priority: on a machine of two cores the attackers' own CPU (connecting,
    masking, compressing) would otherwise be what slows the server and the witnesses;
    an attacker's CPU is on its own machine."""
    os.nice(10)

    async def run() -> dict[str, Any]:
        stop = asyncio.Event()
        tally = Attack()
        start = time.monotonic()
        tasks = [asyncio.create_task(attacker(ws_url, t, stop, tally)) for t in tokens]
        await asyncio.sleep(seconds)
        stop.set()
        end = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        return {
            "start": start,
            "end": end,
            "junk_frames": tally.frames,
            "attacker_closes": tally.closes,
            "attacker_refused": tally.refused,
            "close_reasons": tally.close_reasons,
        }

    return asyncio.run(run())


def reconnect_flood(ws_url: str, token: str, seconds: float) -> dict[str, Any]:
    """In a process of its own: one classroom token reconnecting in a loop, 40 chats per
    connection (the issue's row), for `seconds`."""
    os.nice(10)

    async def run() -> dict[str, Any]:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        connections = sent = refused = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            try:
                # Gone at once after its chats, as a looping client would be.
                async with connect(ws_url, open_timeout=5, close_timeout=0.05) as ws:
                    connections += 1
                    await ws.send(json.dumps({"type": "join", "token": token}))
                    for i in range(40):
                        await ws.send(json.dumps({"type": "chat", "text": f"flood {i}"}))
                        sent += 1
            except (ConnectionClosed, InvalidStatus, OSError, TimeoutError):
                refused += 1
                await asyncio.sleep(0.01)
        return {"start": start, "end": time.monotonic(), "connections": connections,
                "chats_sent": sent, "refused": refused}  # fmt: skip

    return asyncio.run(run())


async def listen_for_chats(ws_url: str, token: str, stop: asyncio.Event, at: list[float]) -> None:
    """A participant of the flooded lesson: when each chat reached it."""
    from websockets.asyncio.client import connect

    async with connect(ws_url, max_size=2**22) as ws:
        await ws.send(json.dumps({"type": "join", "token": token}))

        async def read() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "event" and msg["event"]["kind"] == "chat_posted":
                    at.append(time.monotonic())

        reader = asyncio.create_task(read())
        await stop.wait()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def flood_phase(ws_url: str, listener: str, flooder: str, seconds: float) -> dict[str, Any]:
    stop = asyncio.Event()
    at: list[float] = []
    listening = asyncio.create_task(listen_for_chats(ws_url, listener, stop, at))
    await asyncio.sleep(0.5)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        flood = await loop.run_in_executor(pool, reconnect_flood, ws_url, flooder, seconds)
    await asyncio.sleep(0.5)  # what was on its way arrives
    stop.set()
    await listening
    start, end = flood.pop("start"), flood.pop("end")
    delivered = [t for t in at if start <= t <= end + 0.5]
    # The busiest second a participant saw, and the mean over the flood.
    per_second = Counter(int(t - start) for t in delivered)
    return {
        **flood,
        "chats_delivered": len(delivered),
        "chats_per_s": round(len(delivered) / (end - start), 1),
        "max_chats_in_a_second": max(per_second.values(), default=0),
    }


async def witness(
    ws_url: str, token: str, stop: asyncio.Event, rtts: list[tuple[float, float]]
) -> None:
    from websockets.asyncio.client import connect

    async with connect(ws_url, max_size=2**22) as ws:
        await ws.send(json.dumps({"type": "join", "token": token}))
        pending: dict[str, float] = {}
        got_pong = asyncio.Event()

        async def read() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "pong" and msg.get("ref") in pending:
                    sent = pending.pop(msg["ref"])
                    rtts.append((time.monotonic(), (time.monotonic() - sent) * 1000))
                    got_pong.set()

        reader = asyncio.create_task(read())
        try:
            i = 0
            while not stop.is_set():
                ref = f"p{i}"
                i += 1
                got_pong.clear()
                pending[ref] = time.monotonic()
                await ws.send(json.dumps({"type": "ping", "ref": ref}))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(got_pong.wait(), 5.0)
                pending.pop(ref, None)
                await asyncio.sleep(1 / WITNESS_PINGS_PER_S)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


def _figures(rtts: list[float]) -> dict[str, Any]:
    if not rtts:
        return {"pings": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(rtts)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "pings": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(ordered[-1], 2),
    }


async def phase(
    ws_url: str, witnesses: list[str], attackers: list[str | None], seconds: float
) -> dict[str, Any]:
    stop = asyncio.Event()
    rtts: list[tuple[float, float]] = []
    tasks = [asyncio.create_task(witness(ws_url, t, stop, rtts)) for t in witnesses]
    await asyncio.sleep(0.5)  # the witnesses' joins and welcomes are not measured
    start = time.monotonic()
    attacked: dict[str, Any] = {}
    if attackers:
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            attacked = await loop.run_in_executor(pool, attack, ws_url, attackers, seconds)
        start, end = attacked.pop("start"), attacked.pop("end")
    else:
        await asyncio.sleep(seconds)
        end = time.monotonic()
    stop.set()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    failures = [repr(r) for r in done if isinstance(r, BaseException)]
    # The pings answered while the junk flowed (or within the quiet phase).
    out: dict[str, Any] = _figures([ms for at, ms in rtts if start <= at <= end])
    out.update(attacked)
    if failures:
        out["client_failures"] = failures[:5]
    return out


def _post(base: str, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    import httpx

    r = httpx.post(base + path, json=body, headers={"Authorization": f"Bearer {key}"})
    r.raise_for_status()
    answer: dict[str, Any] = r.json()
    return answer


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from scripts.bench_catchup import cpu_s
    from scripts.bench_weaklink import _free_port, wait_healthy

    folder = Path(tempfile.mkdtemp(prefix="bench-fairness-"))
    admin_key = "bench-" + os.urandom(8).hex()
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
            rooms = [f"Village {i}" for i in range(1, 5)]
            a = _post(base, "/api/lessons", {"title": "A", "classrooms": rooms}, admin_key)
            b_rooms = [f"Attacker {i}" for i in range(1, args.attackers + 1)]
            b = _post(base, "/api/lessons", {"title": "B", "classrooms": b_rooms}, admin_key)
            witnesses = [a["teacher"]["token"]] + [c["token"] for c in a["classrooms"]]
            attackers: list[str | None] = [
                c["token"] if i % 2 == 0 else None for i, c in enumerate(b["classrooms"])
            ]
            cpu = cpu_s(server.pid)
            quiet = await phase(ws_url, witnesses, [], args.seconds)
            quiet["server_cpu_s"] = round(cpu_s(server.pid) - cpu, 2)
            cpu = cpu_s(server.pid)
            junk = await phase(ws_url, witnesses, attackers, args.seconds)
            junk["server_cpu_s"] = round(cpu_s(server.pid) - cpu, 2)
            c = _post(base, "/api/lessons", {"title": "C", "classrooms": ["Loop"]}, admin_key)
            flood = await flood_phase(
                ws_url, c["teacher"]["token"], c["classrooms"][0]["token"], args.seconds
            )
            alive = server.poll() is None
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
    server_log = (folder / "server.log").read_text(errors="replace")
    tracebacks = server_log.count("Traceback")
    shutil.rmtree(folder, ignore_errors=True)
    first = server_log.find("Traceback")
    return {
        "first_traceback": server_log[max(0, first - 300) : first + 3000] if tracebacks else None,
        "seconds": args.seconds,
        "attackers": args.attackers,
        "quiet": quiet,
        "junk": junk,
        "reconnect_flood": flood,
        "server_alive": alive,
        "server_tracebacks": tracebacks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--attackers", type=int, default=4)
    args = parser.parse_args()
    if not 0.5 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be within 0.5..{MAX_SECONDS}")
    if not 1 <= args.attackers <= MAX_ATTACKERS:
        parser.error(f"--attackers must be within 1..{MAX_ATTACKERS}")
    print(json.dumps(asyncio.run(measure(args))))


if __name__ == "__main__":
    main()
