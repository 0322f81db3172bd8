"""CLASSROOM_ICE_TCP_PORT and CLASSROOM_ICE_UDP_PORT: read from the environment,
checked at start-up, and handed to the relay, which binds the port before the server
takes its first request. Unset, each peer has ports of its own, over UDP only."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from signaling.cli import build_media
from signaling.settings import SettingsError, load_settings

pytestmark = pytest.mark.timeout(20)

# (the variable, the relay's attribute for the bound port, its socket type)
PORTS = [
    ("CLASSROOM_ICE_TCP_PORT", "ice_tcp", socket.SOCK_STREAM),
    ("CLASSROOM_ICE_UDP_PORT", "ice_udp", socket.SOCK_DGRAM),
]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("variable", "attribute", "kind"), PORTS)
def test_unset_the_relay_binds_no_shared_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, attribute: str, kind: int
) -> None:
    monkeypatch.delenv(variable, raising=False)
    settings = load_settings({"data_dir": tmp_path})
    assert getattr(settings, variable.removeprefix("CLASSROOM_").lower()) is None
    relay = build_media(settings)
    try:
        assert getattr(relay, attribute) is None
    finally:
        asyncio.run(relay.close())


@pytest.mark.parametrize(("variable", "attribute", "kind"), PORTS)
def test_the_environment_gives_the_relay_its_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, attribute: str, kind: int
) -> None:
    port = free_port(kind)
    monkeypatch.setenv(variable, str(port))
    monkeypatch.setenv("CLASSROOM_ICE_HOST_ADDRESSES", "127.0.0.1")
    relay = build_media(load_settings({"data_dir": tmp_path}))
    try:
        bound = getattr(relay, attribute)
        assert bound is not None and bound.port == port
        # Bound already: a second server on the same port would not start.
        with socket.socket(socket.AF_INET, kind) as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
    finally:
        asyncio.run(relay.close())


@pytest.mark.parametrize("variable", [v for v, _, _ in PORTS])
@pytest.mark.parametrize("value", ["0", "65536", "-1", "https", "3478.5"])
def test_an_unusable_port_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


@pytest.mark.e2e  # starts relay worker processes
@pytest.mark.parametrize(("variable", "attribute", "kind"), PORTS)
def test_with_workers_each_binds_the_port_plus_its_index(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, attribute: str, kind: int
) -> None:
    port = free_port(kind)
    monkeypatch.setenv(variable, str(port))
    monkeypatch.setenv("CLASSROOM_ICE_HOST_ADDRESSES", "127.0.0.1")
    monkeypatch.setenv("CLASSROOM_WORKERS", "2")
    # The second worker's port taken: the start stops, and says which worker and why.
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", port + 1))
        except OSError:
            pytest.skip(f"port {port + 1} is in use")
        if kind == socket.SOCK_STREAM:
            taken.listen()
        with pytest.raises(SystemExit, match="relay worker 1 did not start"):
            build_media(load_settings({"data_dir": tmp_path}))
    gateway = build_media(load_settings({"data_dir": tmp_path}))
    try:
        for held in (port, port + 1):
            with socket.socket(socket.AF_INET, kind) as other, pytest.raises(OSError):
                other.bind(("127.0.0.1", held))
    finally:
        asyncio.run(gateway.close())
