"""`classroom tls init` and `serve --tls-cert/--tls-key`: the CA, the server's
certificate, and the app over HTTPS with nothing but them."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from signaling import tls
from signaling.app import create_app
from signaling.cli import LessonServer, main, uvicorn_config
from tests.signaling.conftest import WAIT_S, make_settings
from tests.signaling.fakes import FakeMedia


def verifier(files: tls.TlsFiles, name: x509.GeneralName) -> None:
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    leaf = x509.load_pem_x509_certificate(files.cert.read_bytes())
    PolicyBuilder().store(Store([ca])).build_server_verifier(name).verify(leaf, [])


def test_init_makes_a_ca_and_a_certificate_for_the_names_given(tmp_path: Path) -> None:
    import ipaddress

    files = tls.init(tmp_path / "tls", ["classroom.test", "School.LAN", "192.168.1.20"])
    verifier(files, x509.DNSName("classroom.test"))
    verifier(files, x509.DNSName("school.lan"))
    verifier(files, x509.IPAddress(ipaddress.ip_address("192.168.1.20")))
    with pytest.raises(VerificationError):
        verifier(files, x509.DNSName("bank.example"))
    for key in (files.key, files.ca_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600

    # A second init keeps the CA (the PCs trust it) and signs a new server key.
    ca_before, key_before = files.ca_cert.read_bytes(), files.key.read_bytes()
    again = tls.init(tmp_path / "tls", ["classroom.test"])
    assert again.ca_cert.read_bytes() == ca_before and again.key.read_bytes() != key_before
    verifier(again, x509.DNSName("classroom.test"))
    # The CA may sign only what it was made for, and nothing else changes.
    with pytest.raises(ValueError, match=r"may not sign bank\.example"):
        tls.init(tmp_path / "tls", ["bank.example"])
    verifier(again, x509.DNSName("classroom.test"))


def test_tls_init_prints_how_to_trust_the_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["tls", "init", "--data-dir", str(tmp_path), "--name", "classroom.test"])
    out = capsys.readouterr().out
    files = tls.TlsFiles(tmp_path / "tls")
    assert str(files.ca_cert) in out and "certutil -addstore -f Root" in out
    assert tls.spki_sha256(files.cert.read_bytes()) in out
    assert "https://classroom.test:8000/" in out


async def test_the_app_serves_https_with_the_certificate(tmp_path: Path) -> None:
    files = tls.init(tmp_path / "tls", ["localhost", "127.0.0.1"])
    settings = make_settings(tmp_path, tls_cert=files.cert, tls_key=files.key, public_url=None)
    assert settings.base_url().startswith("https://")
    app = create_app(settings, FakeMedia())
    config = uvicorn_config(
        app,
        "127.0.0.1",
        0,
        max_message_bytes=settings.ws_max_message_bytes,
        log_level="warning",
        ssl_certfile=files.cert,
        ssl_keyfile=files.key,
    )
    server = LessonServer(config, app)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(WAIT_S):
            while not server.started:
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        trusting = ssl.create_default_context(cafile=str(files.ca_cert))
        async with httpx.AsyncClient(verify=trusting) as http:
            assert (await http.get(f"https://127.0.0.1:{port}/healthz")).status_code == 200
        # Without the CA, the certificate is not trusted.
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"https://127.0.0.1:{port}/healthz")
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT_S):
            await task
