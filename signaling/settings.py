"""Server settings, from arguments or the environment (`CLASSROOM_*`).

Nothing here is read at import: `Settings()` is built by the CLI (or a test) and
handed to `create_app`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

import web_client

# A node's liveness key holds at least this many beats (signaling.cluster.node).
BEATS_PER_TTL = 3

# A rate a second or a minute: more than zero, and a number (not "inf" or "nan").
PositiveRate = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _default_web_client_dir() -> Path:
    return Path(web_client.__file__).parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSROOM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path("./classroom-data")
    # When unset, a key is generated on first start into <data_dir>/admin.key.
    admin_key: SecretStr | None = None
    # When unset, a secret is generated on first start into <data_dir>/token.key.
    token_secret: SecretStr | None = None
    token_ttl_s: int = Field(default=12 * 3600, gt=0)
    # The time zone the timetable is written in (an IANA name): a lesson at 09:00 is
    # at 09:00 there, and a day's lessons are that zone's day.
    time_zone: str = "Asia/Shanghai"
    # Base of the participant links handed out (a reverse proxy's https address, say).
    public_url: str | None = None
    web_client_dir: Path = Field(default_factory=_default_web_client_dir)
    # HTTPS by itself (`classroom serve --tls-cert F --tls-key F`, or `--tls` for what
    # `classroom tls init` made): browsers open cameras only on secure pages.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    # Relay worker processes (media.workers): the media of this machine's lessons in
    # this many processes, each with its own event loop (and core), signaling staying in
    # the server's. "auto": one per core. 1: the relay in the server's own process.
    workers: int = Field(default=1, ge=1, le=256)
    # The peer connections a relay worker takes before a lesson's next classrooms are
    # served by another worker that pulls the lesson from it (media.workers.follower).
    # On the safe side of one process's 300-450 classrooms: a worker's core also carries
    # its teachers' decoding and encoding, the pulls and the mosaic (README).
    worker_max_peers: int = Field(default=150, ge=1)

    # Redis shared by several nodes that serve the same lessons (signaling.cluster), as
    # "redis://host:6379/0"; unset, the server is one process with its in-process bus.
    redis_url: str | None = None
    # A node's liveness in Redis (signaling.cluster.node): its key lives `node_ttl_s`,
    # renewed every `node_beat_s`; a killed node's lessons move about a TTL after the
    # kill. Shorter moves them sooner, for more Redis commands and a greater risk that a
    # stalled machine passes for a dead node. The beat must fit three times in the TTL.
    node_ttl_s: float = Field(default=2.0, ge=0.3, le=600, allow_inf_nan=False)
    node_beat_s: float = Field(default=0.5, ge=0.05, le=200, allow_inf_nan=False)

    # County edge relays (signaling.edge): which edge serves each school's classrooms,
    # "school_id=edge_name,..." (or a JSON object). A classroom of such a school gets its
    # media from that edge while the edge is connected; unset, nothing goes to an edge.
    edge_schools: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # How long an edge token (`classroom edge-token NAME`) is good for.
    edge_token_ttl_s: int = Field(default=90 * 24 * 3600, gt=0)

    # Per-connection outbox: messages waiting to be written to a slow client. A client
    # whose outbox fills is dropped ("too_slow") so that memory stays bounded.
    outbox_size: int = Field(default=256, ge=4)
    join_timeout_s: float = Field(default=10.0, gt=0)
    # WebSocket pings (RFC 6455 §5.5.2, answered by any client's stack): a connection
    # whose pong is this late is closed, so that a classroom whose link was cut is seen
    # to leave within seconds, not when TCP gives up (issue 24).
    ws_ping_interval_s: float = Field(default=2.0, gt=0)
    ws_ping_timeout_s: float = Field(default=5.0, gt=0)
    # How long an SDP negotiation with the relay may take (ICE gathering included).
    negotiate_timeout_s: float = Field(default=20.0, gt=0)

    # Relay knobs, carried to media.relay.relay by signaling.cli.build_media. Lists may be
    # given in the environment as comma-separated values or as JSON.
    ice_host_addresses: Annotated[list[str], NoDecode] = Field(default_factory=list)
    announced_address: str | None = None
    stun_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # ICE over TCP straight to the relay (RFC 6544) for classrooms whose firewall drops
    # UDP: the one TCP port it listens on. Unset: UDP only (and TURN, below).
    ice_tcp_port: int | None = Field(default=None, ge=1, le=65535)
    # One UDP port for every peer connection of the relay (one socket per address),
    # for a firewall that lets only that port in. Unset: a port per peer, as aioice
    # binds them.
    ice_udp_port: int | None = Field(default=None, ge=1, le=65535)
    # TURN servers handed to the pages (and WHIP clients) for classrooms whose
    # firewall drops UDP ("turn:host:3478?transport=tcp", "turns:host:443"), with
    # credentials derived from the secret shared with coturn (signaling.ice), valid
    # for turn_ttl_s.
    turn_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    turn_secret: SecretStr | None = None
    turn_ttl_s: int = Field(default=6 * 3600, gt=0)
    # The teacher's audio as RED (RFC 2198) to browsers that offer it.
    audio_red: bool = True
    # Each browser's downlink estimated by the relay from its transport feedback
    # (transport-cc), where it offers it; off, from its REMB and receiver reports.
    transport_cc: bool = True
    # The cameras with FEC (ULPFEC in RED) on links with a long round trip.
    video_fec: bool = True

    # The C heap (signaling.heap): at most this many malloc arenas (0: glibc's own
    # rule, eight per core), and free memory given back to the system this often (0:
    # never). Decoder threads that come and go with the classrooms otherwise leave
    # arenas that hold what was freed in them: the process grows with reconnects.
    malloc_arena_max: int = Field(default=2, ge=0)
    malloc_trim_interval_s: float = Field(default=60.0, ge=0)

    # Courseware (signaling.decks): the largest deck file taken, and its most pages.
    deck_max_mb: int = Field(default=50, ge=1, le=1024)
    deck_max_pages: int = Field(default=300, ge=1, le=300)

    # Limits that hold across a participant's connections (signaling.limits; the table in
    # docs/protocol.md, "Limits"). A rate is a burst at once, then so many a second (or a
    # minute, for guesses at a secret). Per address: the address the server sees, so a
    # village behind one NAT shares it. Messages count all of a participant's connections
    # together: reconnecting in a loop gets no fresh budget.
    participant_messages_burst: int = Field(default=40, ge=1)
    participant_messages_per_s: PositiveRate = 10.0
    # The observer link is shared by many viewers (inspectors, parents, trainee teachers).
    observer_messages_burst: int = Field(default=400, ge=1)
    observer_messages_per_s: PositiveRate = 100.0
    connections_per_participant: int = Field(default=4, ge=1)
    connections_per_observer_link: int = Field(default=50, ge=1)
    # WebSocket upgrades per address: thirty classrooms behind one NAT reconnecting after
    # a restart fit in the burst.
    ws_opens_burst: int = Field(default=100, ge=1)
    ws_opens_per_s: PositiveRate = 20.0
    # Frames per address before a join (the join included).
    unjoined_messages_burst: int = Field(default=100, ge=1)
    unjoined_messages_per_s: PositiveRate = 20.0
    # Bad input per connection: a burst of mistakes is forgiven, a stream closes it.
    bad_input_burst: int = Field(default=20, ge=1)
    bad_input_per_s: PositiveRate = 0.5
    # HTTP, per address: wrong credentials (admin key, tokens, links) and wrong join
    # codes (a 6-digit code is guessable) each have their own budget, and so do requests
    # that create something (a lesson, a token by join code, a share link, a WHIP session).
    wrong_credentials_burst: int = Field(default=20, ge=1)
    wrong_credentials_per_min: PositiveRate = 20.0
    wrong_join_codes_burst: int = Field(default=10, ge=1)
    wrong_join_codes_per_min: PositiveRate = 10.0
    creations_burst: int = Field(default=60, ge=1)
    creations_per_s: PositiveRate = 2.0
    # One WebSocket message at most: a bigger frame is refused by the WebSocket layer as
    # its header arrives (close 1009), before its payload is read. A join carries a
    # token: less than 1 KiB would refuse every client.
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    # The deepest nesting of objects and arrays in a message, checked before the JSON
    # parser sees it. The protocol's own messages nest 3 deep (`ink.points`).
    ws_max_json_depth: int = Field(default=16, ge=3)
    # An HTTP request body. No request of the API carries more than a few kilobytes (a
    # lesson with 100 classrooms' names is the largest); 64 KiB leaves room and keeps a
    # flood of big bodies cheap. A deck upload has its own limit (deck_max_mb).
    http_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # A rejoin gets the snapshot and at most this many of the newest events it missed:
    # what a rejoin costs does not grow with the lesson.
    catch_up_max_events: int = Field(default=500, ge=1)

    @field_validator("ice_host_addresses", "stun_urls", "turn_urls", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("edge_schools", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                import json

                return json.loads(text)
            pairs: dict[str, str] = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                school, sep, edge = part.partition("=")
                if not sep or not school.strip() or not edge.strip():
                    raise ValueError(f"{part!r} is not school_id=edge_name")
                pairs[school.strip()] = edge.strip()
            return pairs
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_workers(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return os.cpu_count() or 1
        return value

    @field_validator("node_beat_s")
    @classmethod
    def _beat_well_under_ttl(cls, value: float, info: ValidationInfo) -> float:
        ttl = info.data.get("node_ttl_s")
        if ttl is not None and value * BEATS_PER_TTL > ttl:
            raise ValueError(
                f"the beat must fit {BEATS_PER_TTL} times in CLASSROOM_NODE_TTL_S ({ttl:g} s): "
                f"at most {ttl / BEATS_PER_TTL:g} s"
            )
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone") from None
        return value

    def base_url(self) -> str:
        """Where participants reach this server; no trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each variable (or flag) and why."""


def load_settings(flags: Mapping[str, Any] | None = None) -> Settings:
    """The environment's settings, with `flags` (from the command line) over them. A
    value that cannot be used stops the start with what to fix: a limit of zero would
    otherwise refuse every classroom, and only once they try to join."""
    given = dict(flags or {})
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, given.keys())) from None


def _describe(exc: ValidationError, flags: Iterable[str]) -> str:
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"--{field.replace('_', '-')}" if field in flags else f"CLASSROOM_{field.upper()}"
        # A secret's value is not echoed into a log.
        shown = "" if "secret" in field or "admin_key" in field else f" (given {error['input']!r})"
        lines.append(f"{name}: {error['msg']}{shown}")
    return "settings that cannot be used:\n  " + "\n  ".join(lines)
