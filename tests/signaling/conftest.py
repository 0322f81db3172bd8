"""The app built by its factory, served by an in-process uvicorn on 127.0.0.1:<free port>,
driven over real HTTP (httpx) and real WebSockets (websockets), with a fake relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from signaling.app import create_app
from signaling.cli import LessonServer, uvicorn_config
from signaling.recordings import RecordingMedia
from signaling.settings import Settings
from tests.signaling.fakes import FakeMedia

ADMIN_KEY = "test-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
WAIT_S = 5.0


class Clock:
    """A hand-moved clock (Unix seconds)."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_settings(root: Path, **kw: Any) -> Settings:
    web = root / "web"
    web.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {
        "data_dir": root / "data",
        "admin_key": ADMIN_KEY,
        "web_client_dir": web,
        "public_url": "http://classroom.test",
    }
    fields.update(kw)
    return Settings(**fields)


@dataclass
class Running:
    url: str
    http: httpx.AsyncClient
    media: FakeMedia
    settings: Settings
    server: LessonServer
    app: FastAPI

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"


@contextlib.asynccontextmanager
async def serve(
    settings: Settings,
    media: FakeMedia,
    now: Callable[[], float],
    recorder: RecordingMedia | None = None,
    **config_overrides: Any,
) -> AsyncIterator[Running]:
    app = create_app(settings, media, now=now, recorder=recorder)
    config = uvicorn_config(
        app,
        "127.0.0.1",
        0,
        max_message_bytes=settings.ws_max_message_bytes,
        log_level="warning",
        lifespan="on",
        **config_overrides,
    )
    server = LessonServer(config, app)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(WAIT_S):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http:
            yield Running(url, http, media, settings, server, app)
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT_S):
            await task


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def media() -> FakeMedia:
    return FakeMedia()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def srv(settings: Settings, media: FakeMedia, clock: Clock) -> AsyncIterator[Running]:
    async with serve(settings, media, clock) as running:
        yield running


class Peer:
    """One WebSocket client; every read has a timeout so a missing message fails fast."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def recv(self, timeout: float = WAIT_S) -> dict[str, Any]:
        try:
            text = await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return {
                "type": "_closed",
                "code": rcvd.code if rcvd else None,
                "reason": rcvd.reason if rcvd else None,
            }
        return dict(json.loads(text))

    async def expect(self, type_: str, **fields: Any) -> dict[str, Any]:
        msg = await self.recv()
        assert msg["type"] == type_, msg
        for key, value in fields.items():
            assert msg.get(key) == value, msg
        return msg

    async def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        msg = await self.expect("event")
        assert msg["event"]["kind"] == kind, msg
        for key, value in fields.items():
            assert msg["event"].get(key) == value, msg
        return dict(msg["event"])

    async def events(self, n: int) -> list[str]:
        return [(await self.expect("event"))["event"]["kind"] for _ in range(n)]

    async def error(self, code: str) -> dict[str, Any]:
        return await self.expect("error", code=code)

    async def closed(self) -> tuple[int | None, str | None]:
        msg = await self.recv()
        assert msg["type"] == "_closed", msg
        return msg["code"], msg["reason"]

    async def quiet(self) -> None:
        """Nothing else is pending: a ping's pong is the very next message."""
        await self.send({"type": "ping", "ref": "quiet"})
        await self.expect("pong", ref="quiet")


@contextlib.asynccontextmanager
async def connected(srv: Running) -> AsyncIterator[Peer]:
    async with connect(srv.ws_url, open_timeout=WAIT_S, close_timeout=WAIT_S) as ws:
        yield Peer(ws)


@contextlib.asynccontextmanager
async def joined(
    srv: Running, token: str, since: int | None = None
) -> AsyncIterator[tuple[Peer, dict[str, Any]]]:
    """A connection that has sent join and received its welcome."""
    async with connected(srv) as peer:
        msg: dict[str, Any] = {"type": "join", "token": token, "protocol": 1}
        if since is not None:
            msg["since"] = since
        await peer.send(msg)
        welcome = await peer.expect("welcome", protocol=1)
        yield peer, welcome


async def create_lesson(
    srv: Running, title: str = "Maths", classrooms: list[str] | None = None
) -> dict[str, Any]:
    body = {"title": title, "classrooms": classrooms or ["Village A", "Village B"]}
    r = await srv.http.post("/api/lessons", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def snapshot(srv: Running, lesson_id: str) -> dict[str, Any]:
    r = await srv.http.get(f"/api/lessons/{lesson_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def eventually(check: Callable[[], Any], timeout: float = WAIT_S) -> None:
    """For effects with no message to wait on (a leave after a close)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)
