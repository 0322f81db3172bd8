"""Fuzz the WebSocket protocol and the offer path of a real server, on loopback.

    python -m scripts.fuzz_ws --messages 100000 --offers 10000 --seconds 1800

The real server (`classroom serve`'s code, with the real relay) is started by this script
on 127.0.0.1 in a process of its own, with rate limits raised so that the fuzzer reaches
the parser and the handlers rather than only the limiter (the bad-input budget that
closes a connection stays as it is: closing is a path to fuzz too). Workers connect over
and over, some never joining, some joining with the lesson's tokens (teacher, classrooms,
observer), and send mutated protocol messages: every client type with fields dropped,
retyped, huge, deeply nested, unknown types, truncated or bit-flipped JSON, binary frames,
text frames that are not UTF-8, frames over the size limit; and offers whose SDP is a
real offer for the role (made by aiortc) mutated line by line. A lesson that a fuzzed
`end_lesson` ended is replaced by a new one.

What counts: `crashes` (the server process died), `internal_errors` (`internal` or
`media_unavailable` answers), `tracebacks` in the server's log, and
`closes_without_reason` (the server closed a connection with no close frame, or with
a close frame that carries no reason). The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

HOST = "127.0.0.1"
MAX_MESSAGES = 2_000_000
MAX_OFFERS = 200_000
MAX_SECONDS = 4 * 3600.0
FRAME_LIMIT = 64 * 1024

# -- messages ---------------------------------------------------------------------------

VIDEO = {"freeze_count": 3, "total_freezes_duration": 2.5, "frames_decoded": 900}
AUDIO = {"concealed_samples": 480, "total_samples_received": 48_000, "concealment_events": 2}
TEMPLATES: list[dict[str, Any]] = [
    {"type": "join", "token": "", "protocol": 1, "since": 0},
    {"type": "raise_hand", "student": "Li Wei"},
    {"type": "lower_hand"},
    {"type": "dismiss_hand", "classroom_id": "classroom-1"},
    {"type": "grant_floor", "classroom_id": "classroom-1"},
    {"type": "revoke_floor"},
    {"type": "chat", "text": "你好"},
    {"type": "ping"},
    {"type": "pause_recording"},
    {"type": "resume_recording"},
    {"type": "reception", "media_session": "a1b2c3", "video": VIDEO, "audio": AUDIO},
    {"type": "offer", "sdp": "v=0\r\n"},
    {"type": "turn_page", "page": 2},
    {"type": "point", "x": 0.5, "y": 0.25},
    {"type": "ink", "points": [[0.1, 0.2], [0.3, 0.4]], "color": "red"},
    {"type": "clear_ink"},
    {"type": "courseware", "deck_id": "0" * 64, "ready": 3, "total": 20},
]
# Rare: it ends the lesson for every worker, which then makes a new one.
END_LESSON = {"type": "end_lesson"}


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def odd_values(rng: random.Random) -> list[Any]:
    return [
        None, True, False, 0, -1, 1, 2**31, 2**63, 10**30, -(10**30), 1.5, 1e308, -0.0,
        "", " ", "\u0000", "\ud800", "é" * rng.randint(1, 3000), "x" * rng.randint(1, 70_000),
        "../../etc/passwd", "classroom-1", "classroom-999", "teacher", "observer", "admin",
        [], {}, [1, "a", None], {"a": {"b": [1]}}, nested(rng.randint(1, 40)),
    ]  # fmt: skip


class MessageFuzzer:
    """Seeded: the same seed gives the same frames. A frame is (payload, is_text)."""

    def __init__(self, rng: random.Random, tokens: Callable[[], list[str]]) -> None:
        self.rng = rng
        self.tokens = tokens

    def message(self) -> dict[str, Any]:
        rng = self.rng
        msg = dict(rng.choice(TEMPLATES))
        if msg["type"] == "join":
            msg["token"] = rng.choice([*self.tokens(), "", "x.y.z"])
        if rng.random() < 0.002:
            msg = dict(END_LESSON)
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            self._mutate(msg)
        if rng.random() < 0.3:
            msg["ref"] = rng.choice(["r1", "", "x" * 65, 7, None, ["r"]])
        return msg

    def _mutate(self, msg: dict[str, Any]) -> None:
        rng = self.rng
        op = rng.randrange(6)
        keys = list(msg)
        if op == 0 and keys:
            del msg[rng.choice(keys)]
        elif op == 1 and keys:
            msg[rng.choice(keys)] = rng.choice(odd_values(rng))
        elif op == 2:
            msg[rng.choice(["extra", "x", "__proto__", "type ", "Type"])] = rng.choice(
                odd_values(rng)
            )
        elif op == 3:
            msg["type"] = rng.choice(
                ["", "JOIN", "chat ", "dance", "welcome", "error", "event", 5, None, ["chat"]]
            )
        elif op == 4 and isinstance(msg.get("video"), dict) and msg["video"]:
            video = dict(msg["video"])
            video[rng.choice(list(video))] = rng.choice(odd_values(rng))
            msg["video"] = video
        elif op == 5 and isinstance(msg.get("audio"), dict) and msg["audio"]:
            audio = dict(msg["audio"])
            audio[rng.choice(list(audio))] = rng.choice(odd_values(rng))
            msg["audio"] = audio

    def frame(self) -> tuple[str | bytes, bool]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.03:
            return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))), False
        if roll < 0.05:  # a text frame that is not UTF-8
            return b'{"type": "chat", "text": "\xff\xfe\xc3"}', True
        if roll < 0.06:  # over the frame limit
            return "x" * (FRAME_LIMIT + rng.randint(1, 4096)), True
        if roll < 0.09:
            depth = rng.choice([15, 16, 17, 100, 5_000])
            return '{"type": "ping", "x": ' + "[" * depth + "]" * depth + "}", True
        text = json.dumps(self.message(), ensure_ascii=rng.random() < 0.5)
        if len(text.encode("utf-8", "surrogatepass")) > FRAME_LIMIT:
            text = text[: FRAME_LIMIT // 4]
        if roll < 0.25:
            text = self._garble(text)
        # A lone surrogate (from "\ud800" unescaped) makes these bytes no UTF-8: the
        # server must refuse the frame, as it would from a client that sent them.
        return text.encode("utf-8", "surrogatepass"), True

    def _garble(self, text: str) -> str:
        rng = self.rng
        op = rng.randrange(7)
        if op == 0:
            return text[: rng.randint(0, len(text))]
        if op == 1 and text:
            i = rng.randrange(len(text))
            return (
                text[:i] + chr(rng.choice([0, 34, 92, 123, 125, 91, 93, 0x7F, 0x10FFFF])) + text[i:]
            )
        if op == 2:
            return text.replace("1", rng.choice(["NaN", "Infinity", "-Infinity", "1e999999"]), 1)
        if op == 3:
            return text + rng.choice(["}", "]", ",", " garbage", "\u0000", "{}"])
        if op == 4:
            return text.replace('"type"', '"type": "ping", "type"', 1)
        if op == 5:
            return rng.choice(["null", "1", '"chat"', "[]", "true", "", " ", "{}"])
        return "[" * rng.randint(1, 40) + text


# -- SDP --------------------------------------------------------------------------------


class SdpFuzzer:
    """Mutations of a real offer for the role, a few at a time, line by line."""

    BOGUS: ClassVar[tuple[str, ...]] = (
        "a=rtpmap:999999 VP8/90000",
        "a=rtpmap:96 VP8/-1",
        "a=fmtp:111 minptime=-1;useinbandfec=99999999999999999999",
        "a=ssrc:-1 cname:x",
        "a=ssrc:99999999999 cname:x",
        "a=ssrc-group:FID 1",
        "a=candidate:garbage",
        "a=candidate:1 1 udp 1 300.1.1.1 99999 typ host",
        "a=candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype active",
        "a=extmap:99999 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=rtcp-fb:* nack",
        "a=mid:",
        "a=mid:0",
        "a=group:BUNDLE 0 0 0",
        "a=fingerprint:sha-256 00",
        "a=fingerprint:md5 AA:BB",
        "a=setup:bogus",
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=sendrecv",
        "a=inactive",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "m=audio 0 RTP/AVP",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "m=video 9 UDP/TLS/RTP/SAVPF " + " ".join(str(n) for n in range(96, 128)),
        "c=IN IP6 ::1",
        "c=IN IP4 999.999.999.999",
        "b=AS:-5",
        "a=" + "x" * 5000,
        "a=rtpmap:",
        "v=1",
        "o=- 0 0 IN IP4 0.0.0.0",
    )

    def __init__(self, rng: random.Random, base: dict[str, str]) -> None:
        self.rng = rng
        self.base = base

    def offer(self, role: str) -> str:
        rng = self.rng
        text = self.base.get(role) or rng.choice(list(self.base.values()))
        if rng.random() < 0.05:
            text = rng.choice(list(self.base.values()))  # another role's offer
        lines = text.split("\r\n")
        for _ in range(rng.choice([1, 1, 2, 3, 5])):
            lines = self._mutate(lines)
        newline = "\n" if rng.random() < 0.05 else "\r\n"
        return newline.join(lines)

    def _mutate(self, lines: list[str]) -> list[str]:
        rng = self.rng
        op = rng.randrange(9)
        i = rng.randrange(len(lines)) if lines else 0
        if op == 0 and lines:
            del lines[i]
        elif op == 1 and lines:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2 and len(lines) > 1:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:
            lines.insert(i, rng.choice(self.BOGUS))
        elif op == 4 and lines:
            lines[i] = re.sub(
                r"\d+",
                lambda _: str(rng.choice([0, -1, 65536, 2**32, 2**64, 10**40, 127])),
                lines[i],
                count=1,
            )
        elif op == 5 and lines:
            lines[i] = lines[i][: rng.randint(0, len(lines[i]))]
        elif op == 6 and lines:
            line = list(lines[i])
            if line:
                line[rng.randrange(len(line))] = chr(rng.choice([0, 32, 58, 61, 0xE9, 0x4E2D]))
            lines[i] = "".join(line)
        elif op == 7:
            for k, line in enumerate(lines):
                for a, b in (("sendonly", "recvonly"), ("video", "audio"), ("audio", "video")):
                    if a in line and rng.random() < 0.3:
                        lines[k] = line.replace(a, b)
                        break
        else:
            cut = rng.randint(0, len(lines))
            lines = lines[:cut]
        return lines


async def base_offers() -> dict[str, str]:
    """A real offer per role, with the role's slots in order (media.slots), from aiortc."""
    from aiortc import RTCPeerConnection

    from classroom.roles import Role
    from media.slots import SLOTS

    offers = {}
    for role in (Role.TEACHER, Role.CLASSROOM, Role.OBSERVER):
        pc = RTCPeerConnection()
        try:
            for spec in SLOTS[role]:
                pc.addTransceiver(spec.kind, direction=spec.direction)
            await pc.setLocalDescription(await pc.createOffer())
            offers[str(role)] = pc.localDescription.sdp
        finally:
            await pc.close()
    return offers


# -- the clients ------------------------------------------------------------------------


@dataclass
class Stats:
    messages: int = 0
    offers: int = 0
    connections: int = 0
    joined: int = 0
    answers: int = 0
    internal_errors: int = 0
    closes_without_reason: int = 0
    lessons: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    unanswered: int = 0
    samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "offers": self.offers,
            "connections": self.connections,
            "joined": self.joined,
            "answers": self.answers,
            "internal_errors": self.internal_errors,
            "closes_without_reason": self.closes_without_reason,
            "unanswered_connections": self.unanswered,
            "lessons": self.lessons,
            "errors": dict(self.errors.most_common()),
            "closes": dict(self.closes.most_common()),
            # A few of each kind: the first words say which.
            "samples": [
                x
                for kind in dict.fromkeys(x.split(":")[0] for x in self.samples)
                for x in [y for y in self.samples if y.startswith(kind)][:3]
            ],
        }


@dataclass
class Lesson:
    tokens: dict[str, str]  # role or participant id -> token
    generation: int = 0


class Fuzz:
    """Workers against one server; `new_lesson` makes a lesson and returns its tokens."""

    def __init__(
        self,
        ws_url: str,
        new_lesson: Callable[[], Awaitable[dict[str, str]]],
        offers: dict[str, str],
        seed: int,
        messages: int,
        offer_count: int,
        deadline: float,
    ) -> None:
        self.ws_url = ws_url
        self.new_lesson = new_lesson
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.messages = messages
        self.offer_count = offer_count
        self.deadline = deadline
        self.lesson = Lesson({})
        self._renewing = asyncio.Lock()
        self.frames = MessageFuzzer(self.rng, lambda: list(self.lesson.tokens.values()))
        self.sdp = SdpFuzzer(self.rng, offers)

    def _more(self) -> bool:
        s = self.stats
        return time.monotonic() < self.deadline and (
            s.messages < self.messages or s.offers < self.offer_count
        )

    async def renew(self, seen: int) -> None:
        async with self._renewing:
            if self.lesson.generation == seen:
                self.lesson = Lesson(await self.new_lesson(), seen + 1)
                self.stats.lessons += 1

    async def run(self, workers: int) -> Stats:
        await self.renew(0)
        await asyncio.gather(*(self._worker() for _ in range(workers)))
        return self.stats

    async def _worker(self) -> None:
        while self._more():
            await self._connection()

    async def _connection(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        rng, s = self.rng, self.stats
        lesson = self.lesson
        who = None if rng.random() < 0.3 else rng.choice(list(lesson.tokens))
        ended = asyncio.Event()
        done = asyncio.Event()
        state: dict[str, Any] = {"closed_by_us": False, "server_close": None, "last": ""}
        offers_sent: dict[str, str] = {}
        answered = {"n": 0}  # offers answered (an answer or an error)

        async def read(ws: Any) -> None:
            try:
                async for raw in ws:
                    msg = json.loads(raw)
                    kind = msg.get("type")
                    state["received"] = kind if kind != "error" else msg.get("code")
                    if str(msg.get("ref")).startswith("offer-"):
                        answered["n"] += 1
                    if kind == "error":
                        code = msg.get("code")
                        s.errors[code] += 1
                        if code in ("internal", "media_unavailable"):
                            s.internal_errors += 1
                            sdp = offers_sent.get(msg.get("ref"))
                            s.samples.append(f"{code}: {msg.get('message')} offer={sdp!r}")
                        if code == "lesson_ended":
                            ended.set()
                    elif kind == "answer":
                        s.answers += 1
                    elif kind == "welcome":
                        s.joined += 1
                    elif kind == "event" and msg["event"]["kind"] == "lesson_ended":
                        ended.set()
                    if msg.get("ref") == "fuzz-end":  # its pong, or not_joined
                        done.set()
            except ConnectionClosed as exc:
                # Closes the client began (it sent a close frame first) are not counted.
                by_client = exc.sent is not None and not exc.rcvd_then_sent
                if not state["closed_by_us"] and not by_client:
                    state["server_close"] = exc.rcvd
                    if exc.rcvd is None or not exc.rcvd.reason:
                        s.closes_without_reason += 1
                        last, got = state["last"], state.get("received")
                        s.samples.append(
                            f"close without reason: {exc.rcvd!r} after {last!r}, received {got}"
                        )
                    else:
                        s.closes[f"{exc.rcvd.code} {exc.rcvd.reason}"] += 1
                        if exc.rcvd.reason == "lesson_ended":
                            ended.set()
            finally:
                done.set()

        try:
            async with connect(
                self.ws_url, max_size=2**24, open_timeout=10, close_timeout=10, max_queue=None
            ) as ws:
                s.connections += 1
                reader = asyncio.create_task(read(ws))
                try:
                    if who is not None:
                        await ws.send(json.dumps({"type": "join", "token": lesson.tokens[who]}))
                    role = (who or "classroom").split("-")[0]
                    for _ in range(rng.randint(1, 40)):
                        if not self._more() or done.is_set():
                            break
                        if (
                            who is not None
                            and s.offers < self.offer_count
                            and (rng.random() < 0.3 or s.messages >= self.messages)
                        ):
                            offer = {"type": "offer", "sdp": self.sdp.offer(role)}
                            state["last"] = "an offer"
                            offer["ref"] = f"offer-{s.offers}"
                            offers_sent[offer["ref"]] = offer["sdp"]
                            await ws.send(json.dumps(offer))
                            s.offers += 1
                        else:
                            payload, is_text = self.frames.frame()
                            state["last"] = payload[:100]
                            state["sends"] = state.get("sends", 0) + 1
                            await ws.send(payload, text=is_text)
                            s.messages += 1
                        await asyncio.sleep(0)
                    if not done.is_set():
                        await ws.send(json.dumps({"type": "ping", "ref": "fuzz-end"}))
                    # An offer's negotiation may take seconds while the relay is busy with
                    # the other workers' (up to the server's 20 s timeout): room for each.
                    try:
                        await asyncio.wait_for(done.wait(), 30 + 20 * len(offers_sent))
                    except TimeoutError:
                        # Not even closed: what the server was still busy with.
                        s.unanswered += 1
                        pending = len(offers_sent) - answered["n"]
                        s.samples.append(
                            f"unanswered: {pending} offers of {len(offers_sent)}, "
                            f"joined as {who}, last sent {state['last']!r}, "
                            f"last received {state.get('received')}"
                        )
                except ConnectionClosed:
                    await asyncio.wait_for(done.wait(), 10)
                finally:
                    state["closed_by_us"] = True
                    await ws.close()
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
        except (OSError, TimeoutError) as exc:
            s.closes[f"connect failed: {type(exc).__name__}"] += 1
        if ended.is_set():
            await self.renew(lesson.generation)


# -- the server -------------------------------------------------------------------------


def fuzz_limits() -> dict[str, Any]:
    """Settings with the rates raised past what the fuzzer sends; the bad-input budget
    as it is."""
    lots = {"burst": 10**9, "per_s": 1e9}
    rates = ("participant_messages", "observer_messages", "ws_opens", "unjoined_messages")
    raised = {f"{rate}_{part}": n for rate in (*rates, "creations") for part, n in lots.items()}
    return raised | {"connections_per_participant": 1_000, "connections_per_observer_link": 1_000}


def serve_for_fuzz(port: int, data_dir: Path) -> None:
    """The server process: `classroom serve`'s code with the fuzz limits."""
    import logging

    from signaling.cli import serve
    from signaling.settings import Settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings(
        host=HOST, port=port, data_dir=data_dir, ice_host_addresses=[HOST], **fuzz_limits()
    )
    serve(settings)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from scripts.bench_weaklink import _free_port, wait_healthy

    folder = Path(tempfile.mkdtemp(prefix="fuzz-ws-"))
    admin_key = "fuzz-" + os.urandom(8).hex()
    port = _free_port(HOST)
    env = {**os.environ, "CLASSROOM_ADMIN_KEY": admin_key}
    command = [sys.executable, "-m", "scripts.fuzz_ws", "--serve", str(port),
               "--data-dir", str(folder / "data")]  # fmt: skip
    started = time.monotonic()
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://{HOST}:{port}"
            await asyncio.to_thread(wait_healthy, base, server, folder / "server.log")
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:

                async def new_lesson() -> dict[str, str]:
                    body = {"title": "fuzz", "classrooms": ["Village A", "Village B"]}
                    r = await http.post(
                        "/api/lessons", json=body, headers={"Authorization": f"Bearer {admin_key}"}
                    )
                    r.raise_for_status()
                    made = r.json()
                    tokens = {"teacher": made["teacher"]["token"]}
                    tokens["observer"] = made["observer"]["token"]
                    for room in made["classrooms"]:
                        tokens[room["id"]] = room["token"]
                    return tokens

                fuzz = Fuzz(
                    base.replace("http", "ws") + "/ws",
                    new_lesson,
                    await base_offers(),
                    args.seed,
                    args.messages,
                    args.offers,
                    started + args.seconds,
                )
                stats = await fuzz.run(args.workers)
                healthy = (await http.get("/healthz")).status_code == 200
            crashed = server.poll() is not None
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
    server_log = (folder / "server.log").read_text(errors="replace")
    shutil.rmtree(folder, ignore_errors=True)
    tracebacks = server_log.count("Traceback (most recent call last)")
    first = server_log.find("Traceback (most recent call last)")
    # Each traceback by where it was raised and what: its last two lines.
    kinds: Counter[str] = Counter()
    for block in server_log.split("Traceback (most recent call last)")[1:]:
        lines = [x for x in block.splitlines() if x.strip()]
        frames = [x.strip() for x in lines if x.strip().startswith("File ")]
        error = next((x for x in lines if not x.startswith(" ")), "?")
        kinds[f"{frames[-1] if frames else '?'} -> {error[:160]}"] += 1
    return {
        "seed": args.seed,
        "seconds": round(time.monotonic() - started, 1),
        **stats.to_dict(),
        "crashes": int(crashed),
        "healthy_after": healthy,
        "tracebacks": tracebacks,
        "traceback_kinds": dict(kinds.most_common(10)),
        "server_errors_logged": len(re.findall(r" (ERROR|CRITICAL) ", server_log)),
        # By logger and the message's first words.
        "server_error_kinds": dict(
            Counter(
                m[:80] for m in re.findall(r" (?:ERROR|CRITICAL) (.*)", server_log)
            ).most_common(10)
        ),
        "first_traceback": server_log[max(0, first - 200) : first + 2500] if tracebacks else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--offers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve_for_fuzz(args.serve, args.data_dir)
        return
    if not 0 <= args.messages <= MAX_MESSAGES:
        parser.error(f"--messages must be within 0..{MAX_MESSAGES}")
    if not 0 <= args.offers <= MAX_OFFERS:
        parser.error(f"--offers must be within 0..{MAX_OFFERS}")
    if not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be within 1..{MAX_SECONDS}")
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be within 1..64")
    print(json.dumps(asyncio.run(measure(args)), default=str))


if __name__ == "__main__":
    main()
