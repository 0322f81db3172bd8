"""`classroom tls init` then `classroom serve --tls`: Chromium opens a page over HTTPS at a
name that is not localhost and the camera opens, with no insecure-origin flag; only
the server's key is pinned in the test's profile (`--ignore-certificate-errors-spki-list`,
as the printed instructions offer for a kiosk PC). Without the pin, the page is refused."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from signaling import tls
from tests.e2e.conftest import ADMIN_KEY, CHROMIUM, CHROMIUM_ARGS, REPO, _free_port, stop_group

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

NAME = "classroom.test"  # not localhost: a secure context only through TLS


@dataclass
class TlsServer:
    port: int
    files: tls.TlsFiles

    @property
    def base(self) -> str:
        return f"https://{NAME}:{self.port}"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    data = tmp_path / "server-data"
    command = [sys.executable, "-m", "signaling"]
    made = subprocess.run(
        [*command, "tls", "init", "--data-dir", str(data), "--name", NAME, "--name", "127.0.0.1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "ca.crt" in made.stdout
    port = _free_port()
    env = {
        **os.environ,
        "CLASSROOM_ADMIN_KEY": ADMIN_KEY,
        "CLASSROOM_DATA_DIR": str(data),
        "CLASSROOM_HOST": "127.0.0.1",
        "CLASSROOM_PORT": str(port),
        "CLASSROOM_ICE_HOST_ADDRESSES": "127.0.0.1",
    }
    log = tmp_path / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*command, "serve", "--tls"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    files = tls.TlsFiles(data / tls.TLS_DIR)
    trusting = ssl.create_default_context(cafile=str(files.ca_cert))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                url = f"https://127.0.0.1:{port}/healthz"
                if httpx.get(url, verify=trusting, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield TlsServer(port, files)
    finally:
        stop_group(proc)


def launch(p: Any, profile: Path, extra: list[str]) -> Any:
    args = [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {NAME} 127.0.0.1", *extra]
    return p.chromium.launch_persistent_context(
        user_data_dir=str(profile), executable_path=CHROMIUM, headless=True, args=args
    )


GET_USER_MEDIA = """async () => {
  if (!window.isSecureContext || !navigator.mediaDevices) return {secure: window.isSecureContext};
  const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
  const kinds = stream.getTracks().map((t) => t.kind).sort();
  stream.getTracks().forEach((t) => t.stop());
  return {secure: window.isSecureContext, kinds, protocol: location.protocol};
}"""


def test_chromium_opens_the_camera_on_the_https_page(tls_server: TlsServer, tmp_path: Path) -> None:
    from playwright.sync_api import Error, sync_playwright

    spki = tls.spki_sha256(tls_server.files.cert.read_bytes())
    with sync_playwright() as p:
        pinned = launch(p, tmp_path / "pinned", [f"--ignore-certificate-errors-spki-list={spki}"])
        try:
            page = pinned.new_page()
            page.goto(f"{tls_server.base}/join", timeout=15_000)
            got = page.evaluate(GET_USER_MEDIA)
            assert got == {"secure": True, "kinds": ["audio", "video"], "protocol": "https:"}
        finally:
            pinned.close()

        unpinned = launch(p, tmp_path / "unpinned", [])
        try:
            with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                unpinned.new_page().goto(f"{tls_server.base}/join", timeout=15_000)
        finally:
            unpinned.close()
