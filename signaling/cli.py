"""`classroom serve`: run the signaling app (and the media relay) under uvicorn;
`classroom tls init`: a local CA and a server certificate (signaling.tls);
`classroom edge`: a county edge relay linked to its origin (signaling.edge.client);
`classroom edge-token NAME`: the token an edge relay presents to this origin (`--revoke`:
refuse every token made so far for that edge)."""

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
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from media.gateway import MediaError, MediaGateway
from signaling import heap, keys, tls
from signaling.app import create_app
from signaling.district import District
from signaling.lessons import Lessons
from signaling.recordings import RecordingMedia
from signaling.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from media.relay.relay import Relay
    from media.settings import RelaySettings
    from media.workers.gateway import WorkerGateway


def relay_settings(settings: Settings) -> RelaySettings:
    """The relay's knobs from the server's settings (the origin's and an edge's)."""
    from media.settings import RelaySettings

    return RelaySettings(
        host_addresses=tuple(settings.ice_host_addresses),
        announced_address=settings.announced_address,
        stun_servers=tuple(settings.stun_urls),
        ice_tcp_port=settings.ice_tcp_port,
        ice_udp_port=settings.ice_udp_port,
        audio_red=settings.audio_red,
        transport_cc=settings.transport_cc,
        video_fec=settings.video_fec,
    )


def build_media(settings: Settings) -> Relay | WorkerGateway:
    """The media relay, which also records. The one place that constructs it: in this
    process, or with `settings.workers` > 1 in that many relay worker processes
    (media.workers), each ICE port then the setting plus the worker's index."""
    try:
        from media.relay.relay import Relay
    except ImportError as exc:
        raise SystemExit(
            f"the media relay (media.relay.relay) cannot be imported: {exc}. "
            "Is the installation complete?"
        ) from exc
    if settings.workers == 1:
        return Relay(relay_settings(settings))
    from media.workers.gateway import WorkerGateway

    # glibc reads it as the process starts: the workers' heaps as the server's (heap).
    env = {"MALLOC_ARENA_MAX": str(settings.malloc_arena_max)} if settings.malloc_arena_max else {}
    try:
        return WorkerGateway(
            relay_settings(settings),
            settings.workers,
            env=env,
            max_peers=settings.worker_max_peers,
        )
    except MediaError as exc:
        raise SystemExit(str(exc)) from None


class LessonServer(uvicorn.Server):
    """Tells the lessons that the server is stopping before connections are closed,
    so that closing them is not recorded as participants leaving; and answers the
    devices that wait for their lesson, so that they do not hold the stop up."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: Any = None) -> None:
        runtime = getattr(self._app.state, "runtime", None)
        if runtime is not None:
            lessons: Lessons = runtime.lessons
            lessons.closing = True
        # Devices waiting for their lesson are answered now: uvicorn waits for them.
        district: District | None = getattr(self._app.state, "district", None)
        if district is not None:
            district.close_waits()
        await super().shutdown(sockets)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, except where a client breaks the framing.

    - A text frame that is not UTF-8 is refused with close code 1007 *and a reason*, with
      no traceback in the server's log (uvicorn logs one, and gives no reason).
    - A frame the parser refuses (over the size limit: 1009; a protocol error: 1002)
      gets its close frame *read by the client*: uvicorn closed the socket at once, and a
      client still sending then got a TCP reset that threw the close frame away (a close
      with no reason). Here the server's side is shut for writing after the close frame,
      what the client still sends is discarded, and the socket is closed when the client
      closes or after LINGER_S.
    """

    LINGER_S = 2.0
    LOOP_STALL_S = 1.0

    def keepalive_timeout(self) -> None:
        """A late pong closes the connection (Settings.ws_ping_timeout_s), unless the
        lateness may be the server's own:
        - uvicorn is not reading: it stops after each message until the app takes it,
          and the app waits on a negotiation with the relay before it reads the next;
        - this timer ran late, by a second or more: the event loop was stalled (an
          overloaded server), and a pong may have arrived meanwhile unread.
        Then judge again one timeout later."""
        due = self.ping_sent_at + (self.ping_timeout or 0.0)
        stalled = self.loop.time() - due > self.LOOP_STALL_S
        if (self.read_paused or stalled) and not self.close_sent and self.ping_timeout:
            self.ping_sent_at = self.loop.time()
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
            return
        super().keepalive_timeout()

    def handle_parser_exception(self) -> None:
        if self.close_sent:
            return  # more bytes from a client already refused: discarded
        assert self.conn.close_sent is not None
        code, reason = self.conn.close_sent.code, self.conn.close_sent.reason
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.close_timer = self.loop.call_later(self.LINGER_S, self.transport.close)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode("utf-8")
            except UnicodeDecodeError:
                self.frames = []
                self.conn.send_close(1007, "text frames must be UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()


def uvicorn_config(
    app: FastAPI, host: str, port: int, *, max_message_bytes: int, **overrides: Any
) -> uvicorn.Config:
    """How the app is served; tests serve it the same way (`overrides`: log level...).
    A frame over `max_message_bytes` (Settings.ws_max_message_bytes) is refused by the
    WebSocket layer as its header arrives (close 1009), before its payload is read."""
    options: dict[str, Any] = {
        "ws": WebSocketProtocol,
        "ws_max_size": max_message_bytes,
        "log_level": "info",
        # The token is in the URL fragment, never in a request line, so access logs
        # carry no secrets.
        "access_log": True,
    }
    return uvicorn.Config(app, host=host, port=port, **(options | overrides))


def serve(settings: Settings, media: MediaGateway | None = None) -> None:
    """Run the server; `media` replaces the relay (benchmarks compare baselines), and
    then nothing is recorded."""
    # Before any thread starts: a thread keeps the arena it was given.
    heap.limit_arenas(settings.malloc_arena_max)
    admin_key, created = keys.admin_key(settings)
    if created:
        path = settings.data_dir / keys.ADMIN_KEY_FILE
        print(f"Admin key (shown once, kept in {path}): {admin_key}", flush=True)
    recorder: RecordingMedia | None = None
    if media is None:
        relay = build_media(settings)
        media, recorder = relay, relay
    app = create_app(settings, media, recorder=recorder)
    tls: dict[str, Any] = {}
    if settings.tls_cert or settings.tls_key:
        tls = {"ssl_certfile": settings.tls_cert, "ssl_keyfile": settings.tls_key}
    config = uvicorn_config(
        app,
        settings.host,
        settings.port,
        max_message_bytes=settings.ws_max_message_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        **tls,
    )
    # What exists now (modules, the app) lives as long as the process: out of the
    # collector's sight, a full collection walks only the lessons' objects and
    # pauses the media a fraction as long (234 -> 139 ms at 64 classrooms).
    gc.freeze()
    asyncio.run(_serve_giving_back(LessonServer(config, app), settings.malloc_trim_interval_s))


async def _serve_giving_back(server: LessonServer, trim_interval_s: float) -> None:
    """Serve, with the C heap's free memory given back every `trim_interval_s`."""
    trimming = None
    if trim_interval_s > 0:
        trimming = asyncio.create_task(heap.give_back_every(trim_interval_s), name="malloc-trim")
    try:
        await server.serve()
    finally:
        if trimming is not None:
            trimming.cancel()


def edge_token(settings: Settings, name: str) -> str:
    """A token for the edge called `name`, signed with this origin's token secret and
    good for `Settings.edge_token_ttl_s`."""
    import time

    from signaling.edge.revocations import FILE, Revocations
    from signaling.tokens import TokenIssuer

    if not name.strip():
        raise SystemExit("an edge needs a name")
    # Token times are whole seconds: a token of the second its edge was revoked in
    # would be refused (signaling.edge.revocations).
    revoked_at = Revocations(settings.data_dir / FILE).revoked_at(name.strip())
    while revoked_at is not None and int(time.time()) <= revoked_at:
        time.sleep(0.05)
    issuer = TokenIssuer(keys.token_secret(settings), settings.token_ttl_s, time.time)
    token, _expires = issuer.issue_edge(name.strip(), settings.edge_token_ttl_s)
    return token


def revoke_edge(settings: Settings, name: str) -> str:
    """Refuse every token made so far for the edge called `name`; a running origin
    closes its open link within seconds (signaling.edge.revocations)."""
    import time

    from signaling.edge.revocations import FILE, Revocations

    if not name.strip():
        raise SystemExit("an edge needs a name")
    Revocations(settings.data_dir / FILE).revoke(name.strip(), time.time())
    return f"every token of edge {name.strip()} made until now is revoked"


def run_edge(settings: Settings, origin: str, token: str) -> None:
    """Run an edge relay until stopped (Ctrl-C, SIGTERM)."""
    import signal

    from signaling.edge.client import EdgeRelay, LinkRefused

    heap.limit_arenas(settings.malloc_arena_max)

    async def run() -> None:
        try:
            edge = EdgeRelay(origin, token, relay_settings(settings))
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        linking = asyncio.create_task(edge.run(), name="edge-link")
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({linking, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if linking.done():
                linking.result()
        except LinkRefused as exc:
            raise SystemExit(str(exc)) from None
        finally:
            linking.cancel()
            stopping.cancel()
            await asyncio.gather(linking, stopping, return_exceptions=True)
            await edge.close()

    gc.freeze()
    asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="classroom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the classroom server")
    p_serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    p_serve.add_argument("--data-dir", type=Path, help="where lessons are kept")
    p_serve.add_argument(
        "--workers",
        help="relay worker processes: a number, or auto (one per core); default 1, the "
        "relay in the server's process",
    )
    p_serve.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    p_serve.add_argument("--tls-key", type=Path, help="... and this private key (PEM)")
    p_serve.add_argument(
        "--tls", action="store_true", help="serve HTTPS with what `classroom tls init` made"
    )
    p_tls = sub.add_parser("tls", help="HTTPS for a school LAN without a certificate")
    tls_sub = p_tls.add_subparsers(dest="tls_command", required=True)
    p_init = tls_sub.add_parser(
        "init", help="make a local CA (once) and a server certificate signed by it"
    )
    p_init.add_argument(
        "--name",
        action="append",
        default=[],
        help="a name or address the PCs use to reach the server (repeat it; default: "
        "this machine's names and addresses, and localhost)",
    )
    p_init.add_argument("--data-dir", type=Path, help="where lessons are kept")
    p_edge = sub.add_parser("edge", help="run a county edge relay for an origin server")
    p_edge.add_argument("--origin", required=True, help="the origin's address, https://...")
    p_edge.add_argument(
        "--token", required=True, help="the edge token the origin's admin made (edge-token)"
    )
    p_token = sub.add_parser("edge-token", help="make the token an edge relay presents")
    p_token.add_argument("name", help="the edge's name, as CLASSROOM_EDGE_SCHOOLS names it")
    p_token.add_argument(
        "--revoke",
        action="store_true",
        help="revoke every token made so far for this edge instead (its open link closes)",
    )
    p_token.add_argument("--data-dir", type=Path, help="where lessons are kept")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # e.g. CLASSROOM_DEBUG=media.control.downlink,media.relay.relay: those loggers at DEBUG.
    for name in filter(None, os.environ.get("CLASSROOM_DEBUG", "").split(",")):
        logging.getLogger(name.strip()).setLevel(logging.DEBUG)
    given = {"data_dir": getattr(args, "data_dir", None)}
    if args.command == "serve":
        given |= {"host": args.host, "port": args.port, "workers": args.workers}
        given |= {"tls_cert": args.tls_cert, "tls_key": args.tls_key}
    try:
        settings = load_settings({k: v for k, v in given.items() if v is not None})
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None
    if args.command == "serve":
        if args.tls:
            made = tls.TlsFiles(settings.data_dir / tls.TLS_DIR)
            if not made.cert.exists():
                raise SystemExit(f"no {made.cert}: run `classroom tls init` first")
            settings = settings.model_copy(update={"tls_cert": made.cert, "tls_key": made.key})
        if bool(settings.tls_cert) != bool(settings.tls_key):
            raise SystemExit("HTTPS needs both --tls-cert and --tls-key")
        serve(settings)
    elif args.command == "tls":
        public = urlsplit(settings.public_url).hostname if settings.public_url else None
        names = args.name or tls.default_names(settings.host, public)
        try:
            made = tls.init(settings.data_dir / tls.TLS_DIR, names)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        dns, ips = tls.split_names(names)
        print(f"Certificate for {', '.join([*dns, *map(str, ips)])}: {made.cert}")
        first = dns[0] if dns else (f"[{ips[0]}]" if ips[0].version == 6 else str(ips[0]))
        print(tls.how_to_trust(made, f"https://{first}:{settings.port}/"))
    elif args.command == "edge":
        run_edge(settings, args.origin, args.token)
    elif args.command == "edge-token":
        if args.revoke:
            print(revoke_edge(settings, args.name))
        else:
            print(edge_token(settings, args.name))
    else:  # pragma: no cover - argparse refuses other commands
        parser.print_help()
        sys.exit(2)
