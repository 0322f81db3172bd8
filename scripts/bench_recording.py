"""What a killed server leaves of a lesson's recording, read from the files on disk.

    python -m scripts.bench_recording --kill-at 15 60 [--runs 2] [--camera 1280x720@30]

For each run and each `--kill-at` second: the real `classroom serve` starts with a data
folder of its own, on 127.0.0.1; a lesson is made; a synthetic teacher (an aiortc peer)
publishes camera, microphone and slides over the real protocol, and the server records
from the teacher's first answered offer. Every 5 s the server's resident memory is read;
at the chosen second the server is SIGKILLed (by its PID, which this script started).
Then ffprobe reads what is on disk: for `camera.webm` and `slides.webm`, where on the
recording's time line the last video and audio packets fall, how much of the lesson is
lost, how many frames decode, and the frame rate the file declares (a player or a tool
that believes a declared 30 fps for a 15 fps file puts its end at half the lesson).

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
from fractions import Fraction
from pathlib import Path
from typing import Any

from scripts.bench_weaklink import _free_port, _http, wait_healthy

HOST = "127.0.0.1"
MAX_KILL_AT_S = 600.0
MAX_RUNS = 5


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def probe(path: Path) -> dict[str, Any]:
    """The last packet time per stream kind, decodable video frames, the declared rate."""
    streams = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=index,codec_type,avg_frame_rate",
             "-of", "json", str(path)],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
    )["streams"]  # fmt: skip
    kinds = {s["index"]: s["codec_type"] for s in streams}
    packets = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts_time",
             "-of", "json", str(path)],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
    ).get("packets", [])  # fmt: skip
    last: dict[str, float] = {}
    for packet in packets:
        if packet.get("pts_time") is not None:
            kind = kinds.get(packet["stream_index"], "?")
            last[kind] = max(last.get(kind, 0.0), float(packet["pts_time"]))
    frames = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-count_frames",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip()  # fmt: skip
    video = next((s for s in streams if s["codec_type"] == "video"), None)
    # "0/0" when the file declares none and ffprobe cannot infer one.
    num, _, den = (video["avg_frame_rate"] if video else "0/0").partition("/")
    declared = float(Fraction(int(num), int(den))) if int(den or 0) else 0.0
    return {
        "last_video_s": last.get("video"),
        "last_audio_s": last.get("audio"),
        "frames": int(frames.split(",")[0]) if frames else 0,
        "declared_fps": round(declared, 2),
    }


async def one_lesson(kill_at_s: float, camera: tuple[int, int, int]) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    from classroom.roles import Role
    from media.synthetic import MovingPicture, SlideDeck, SyntheticParticipant

    folder = Path(tempfile.mkdtemp(prefix="bench-recording-"))
    admin_key = "bench-" + os.urandom(8).hex()
    port = _free_port(HOST)
    env = {**os.environ, "CLASSROOM_ADMIN_KEY": admin_key, "CLASSROOM_ICE_HOST_ADDRESSES": HOST}
    command = [sys.executable, "-m", "signaling", "serve", "--host", HOST, "--port", str(port),
               "--data-dir", str(folder / "data")]  # fmt: skip
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://{HOST}:{port}"
    width, height, fps = camera
    videos = iter([MovingPicture(width, height, fps), SlideDeck(1280, 720, 5)])
    teacher = SyntheticParticipant(Role.TEACHER, send_video=lambda: next(videos))
    rss: list[tuple[float, float | None]] = []
    try:
        await asyncio.to_thread(wait_healthy, base, server, folder / "server.log")
        lesson = _http(
            "POST", base + "/api/lessons", {"title": "录制", "classrooms": ["A"]}, admin_key
        )
        async with connect(base.replace("http", "ws") + "/ws", max_size=2**22) as ws:
            await ws.send(json.dumps({"type": "join", "token": lesson["teacher"]["token"]}))
            await ws.send(json.dumps({"type": "offer", "sdp": await teacher.offer()}))
            started = recording = None
            async with asyncio.timeout(30):
                while started is None:
                    msg = json.loads(await ws.recv())
                    if msg["type"] == "answer":
                        await teacher.accept(msg["sdp"])
                    elif msg.get("event", {}).get("kind") == "recording_started":
                        started, recording = time.monotonic(), msg["event"]["recording_id"]

            async def drain() -> None:
                async for _ in ws:
                    pass

            reader = asyncio.create_task(drain())
            while (elapsed := time.monotonic() - started) < kill_at_s:
                await asyncio.sleep(min(5.0, kill_at_s - elapsed))
                rss.append((round(time.monotonic() - started, 1), rss_mb(server.pid)))
            os.kill(server.pid, signal.SIGKILL)
            killed_at = time.monotonic() - started
            server.wait(10)
            reader.cancel()
    finally:
        await teacher.close()
        if server.poll() is None:
            server.kill()
            server.wait(10)
        log.close()
    directory = folder / "data" / "recordings" / str(recording)
    manifest = json.loads((directory / "manifest.json").read_text())
    files: dict[str, Any] = {}
    for entry in manifest["files"]:
        if entry["name"] not in ("camera.webm", "slides.webm") or entry["offset"] is None:
            continue
        found = probe(directory / entry["name"])
        ends = [t for t in (found["last_video_s"], found["last_audio_s"]) if t is not None]
        plays_to = entry["offset"] + max(ends, default=0.0)
        by_rate = found["frames"] / found["declared_fps"] if found["declared_fps"] else None
        files[entry["name"]] = {
            **found,
            "offset_s": entry["offset"],
            "plays_to_s": round(plays_to, 2),
            "lost_s": round(killed_at - plays_to, 2),
            # Where a tool that counts frames at the declared rate puts the end.
            "ends_by_declared_rate_s": None
            if by_rate is None
            else round(entry["offset"] + by_rate, 2),
        }
    shutil.rmtree(folder, ignore_errors=True)
    return {"killed_at_s": round(killed_at, 2), "files": files, "rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kill-at", type=float, nargs="+", default=[15.0, 60.0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--camera", default="1280x720@30", help="WIDTHxHEIGHT@FPS")
    args = parser.parse_args()
    if not all(0 < k <= MAX_KILL_AT_S for k in args.kill_at):
        parser.error(f"--kill-at must be within 0..{MAX_KILL_AT_S:g} s")
    if not 1 <= args.runs <= MAX_RUNS:
        parser.error(f"--runs must be within 1..{MAX_RUNS}")
    size, _, rate = args.camera.partition("@")
    width, _, height = size.partition("x")
    camera = (int(width), int(height), int(rate or 15))
    results = [
        asyncio.run(one_lesson(kill_at, camera))
        for _ in range(args.runs)
        for kill_at in args.kill_at
    ]
    lost = [f["lost_s"] for r in results for f in r["files"].values()]
    print(
        json.dumps(
            {
                "camera": args.camera,
                "runs": results,
                "worst_lost_s": max(lost, default=None),
            }
        )
    )


if __name__ == "__main__":
    main()
