"""`classroom serve`: run the signaling app (and the media relay) under uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI

from media.gateway import MediaGateway
from signaling import keys
from signaling.app import create_app
from signaling.lessons import Lessons
from signaling.protocol import MAX_MESSAGE_BYTES
from signaling.recordings import RecordingMedia
from signaling.settings import Settings

if TYPE_CHECKING:
    from media.relay.relay import Relay

# A message may be at most 64 KiB: a bigger frame is refused by the WebSocket layer
# as its header arrives (close 1009), before its payload is read or decoded.
WS_MAX_FRAME_BYTES = MAX_MESSAGE_BYTES


def build_media(settings: Settings) -> Relay:
    """The media relay, which also records. The one place that constructs it."""
    try:
        from media.relay.relay import Relay
        from media.settings import RelaySettings
    except ImportError as exc:
        raise SystemExit(
            f"the media relay (media.relay.relay) cannot be imported: {exc}. "
            "Is the installation complete?"
        ) from exc
    relay_settings = RelaySettings(
        host_addresses=tuple(settings.ice_host_addresses),
        announced_address=settings.announced_address,
        stun_servers=tuple(settings.stun_urls),
        audio_red=settings.audio_red,
    )
    return Relay(relay_settings)


class LessonServer(uvicorn.Server):
    """Tells the lessons that the server is stopping before connections are closed,
    so that closing them is not recorded as participants leaving."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: Any = None) -> None:
        runtime = getattr(self._app.state, "runtime", None)
        if runtime is not None:
            lessons: Lessons = runtime.lessons
            lessons.closing = True
        await super().shutdown(sockets)


def uvicorn_config(app: FastAPI, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    """How the app is served; tests serve it the same way (`overrides`: log level...)."""
    options: dict[str, Any] = {
        "ws_max_size": WS_MAX_FRAME_BYTES,
        "log_level": "info",
        # The token is in the URL fragment, never in a request line, so access logs
        # carry no secrets.
        "access_log": True,
    }
    return uvicorn.Config(app, host=host, port=port, **(options | overrides))


def serve(settings: Settings, media: MediaGateway | None = None) -> None:
    """Run the server; `media` replaces the relay (benchmarks compare baselines), and
    then nothing is recorded."""
    admin_key, created = keys.admin_key(settings)
    if created:
        path = settings.data_dir / keys.ADMIN_KEY_FILE
        print(f"Admin key (shown once, kept in {path}): {admin_key}", flush=True)
    recorder: RecordingMedia | None = None
    if media is None:
        relay = build_media(settings)
        media, recorder = relay, relay
    app = create_app(settings, media, recorder=recorder)
    config = uvicorn_config(app, settings.host, settings.port)
    # What exists now (modules, the app) lives as long as the process: out of the
    # collector's sight, a full collection walks only the lessons' objects and
    # pauses the media a fraction as long (234 -> 139 ms at 64 classrooms).
    gc.freeze()
    asyncio.run(LessonServer(config, app).serve())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="classroom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the classroom server")
    p_serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    p_serve.add_argument("--data-dir", type=Path, help="where lessons are kept")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # e.g. CLASSROOM_DEBUG=media.control.downlink,media.relay.relay: those loggers at DEBUG.
    for name in filter(None, os.environ.get("CLASSROOM_DEBUG", "").split(",")):
        logging.getLogger(name.strip()).setLevel(logging.DEBUG)
    overrides: dict[str, Any] = {
        k: v
        for k, v in {"host": args.host, "port": args.port, "data_dir": args.data_dir}.items()
        if v is not None
    }
    settings = Settings(**overrides)
    if args.command == "serve":
        serve(settings)
    else:  # pragma: no cover - argparse refuses other commands
        parser.print_help()
        sys.exit(2)
