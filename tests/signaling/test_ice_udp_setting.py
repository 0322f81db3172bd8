"""CLASSROOM_ICE_UDP_PORT: read from the environment, checked at start-up, and handed
to the relay, which binds the port before the server takes its first request."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from signaling.cli import build_media
from signaling.settings import SettingsError, load_settings

pytestmark = pytest.mark.timeout(20)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unset_each_peer_has_ports_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CLASSROOM_ICE_UDP_PORT", raising=False)
    settings = load_settings({"data_dir": tmp_path})
    assert settings.ice_udp_port is None
    relay = build_media(settings)
    try:
        assert relay.ice_udp is None
    finally:
        asyncio.run(relay.close())


def test_the_environment_gives_the_relay_its_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = free_udp_port()
    monkeypatch.setenv("CLASSROOM_ICE_UDP_PORT", str(port))
    monkeypatch.setenv("CLASSROOM_ICE_HOST_ADDRESSES", "127.0.0.1")
    relay = build_media(load_settings({"data_dir": tmp_path}))
    try:
        assert relay.ice_udp is not None and relay.ice_udp.port == port
        # Bound already: a second server on the same port would not start.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
    finally:
        asyncio.run(relay.close())


@pytest.mark.parametrize("value", ["0", "65536", "-1", "udp", "10000.5"])
def test_an_unusable_port_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CLASSROOM_ICE_UDP_PORT", value)
    with pytest.raises(SettingsError, match="CLASSROOM_ICE_UDP_PORT"):
        load_settings()
