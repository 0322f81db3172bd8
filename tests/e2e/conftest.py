"""Real Chromium pages against a real `classroom serve` process.

The browser is Debian's Chromium driven by Playwright (never `playwright install`),
headless, with fake camera and microphone. Everything stays on 127.0.0.1: the relay
gathers ICE candidates on loopback only (CLASSROOM_ICE_HOST_ADDRESSES), and an init
script keeps only the browser's 127.0.0.1 host candidates in the SDP it sends.

Pages expose `window.__classroom` (web_client/js/lesson_page.js): `pc` (the page's
RTCPeerConnection), `inboundStats()` (its getStats() inbound-rtp figures by slot),
`you`, `view` (the lesson as the page sees it) and `drop()`.

Screenshots (`screenshot()`) are kept in `test-artifacts/` at the checkout's root
(git-ignored), one PNG per name; a later run overwrites them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ADMIN_KEY = "e2e-admin-key"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
VIEWPORT: Any = {"width": 1366, "height": 768}

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    # Real addresses in host candidates rather than mDNS names, so that the filter
    # below finds 127.0.0.1 even on a page that never opened the camera (observer).
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

# Test-only: keep just the loopback host candidates in what the page sends.
LOOPBACK_ONLY = r"""
(() => {
  const proto = RTCPeerConnection.prototype;
  const desc = Object.getOwnPropertyDescriptor(proto, "localDescription");
  Object.defineProperty(proto, "localDescription", {
    configurable: true,
    get() {
      const d = desc.get.call(this);
      if (!d || !d.sdp) return d;
      const sdp = d.sdp
        .split("\r\n")
        .filter((l) => !l.startsWith("a=candidate:") || / 127\.0\.0\.1 \d+ typ host/.test(l))
        .join("\r\n");
      return new RTCSessionDescription({ type: d.type, sdp });
    },
  });
})();
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_script(*args: str, timeout_s: float) -> dict[str, Any]:
    """`python -m scripts.<args>` from the project's root, as a person runs a benchmark:
    it must succeed, and the JSON object on its last line is what it measured."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End a process started in its own group: SIGTERM (a graceful shutdown), then
    SIGKILL if it lingers; by its PID only."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Server:
    """A `classroom serve` process on a port and a data folder of its own."""

    data_dir: Path
    port: int = 0
    admin_key: str = ADMIN_KEY
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = self.port or _free_port()
        self.log = self.data_dir / "server.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "CLASSROOM_ADMIN_KEY": self.admin_key,
            "CLASSROOM_DATA_DIR": str(self.data_dir),
            "CLASSROOM_HOST": "127.0.0.1",
            "CLASSROOM_PORT": str(self.port),
            "CLASSROOM_ICE_HOST_ADDRESSES": "127.0.0.1",
        }
        command = [sys.executable, "-m", "signaling", "serve"]
        console = shutil.which("classroom")
        if console and Path(console).parent == Path(sys.executable).parent:
            command = [console, "serve"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                if _http("GET", f"{self.base}/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it lingers; by PID only."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc)

    def create_lesson(self, title: str, classrooms: list[str]) -> dict[str, Any]:
        status, body = _http(
            "POST",
            f"{self.base}/api/lessons",
            {"title": title, "classrooms": classrooms},
            self.admin_key,
        )
        assert status == 201, body
        assert isinstance(body, dict)
        return body

    def url(self, url: str) -> str:
        """A handed-out link, made to point at this server whatever base it carries."""
        if url.startswith("/"):
            return self.base + url
        return url


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session's tests; each test makes lessons of its own."""
    yield from _serving(tmp_path_factory.mktemp("server-data"))


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server for one test that stops and restarts it."""
    data = tmp_path / "server-data"
    data.mkdir()
    yield from _serving(data)


def _serving(data_dir: Path) -> Iterator[Server]:
    _need_chromium()
    srv = Server(data_dir)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def browser_args() -> list[str]:
    """Chromium's flags; a test may parametrize this name to change them."""
    return CHROMIUM_ARGS


@pytest.fixture
def browser(tmp_path: Path, browser_args: list[str]) -> Iterator[Any]:
    """One Chromium (persistent context on a fresh folder) for the test's pages."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=browser_args,
            viewport=VIEWPORT,
            timeout=30_000,
        )
        context.set_default_timeout(15_000)
        context.add_init_script(LOOPBACK_ONLY)
        try:
            yield context
        finally:
            context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed e2e test's report carries what the pages logged and the server's last
    lines: a failure seen once in CI is then something to read, not to guess."""
    outcome: Any = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    pages = getattr(funcargs.get("open_page"), "pages", [])
    lines = [line for page in pages for line in page.logs]
    if lines:
        report.sections.append(("browser console", "\n".join(lines[-200:])))
    for name in ("server", "own_server"):
        server = funcargs.get(name)
        if server is not None and server.log.exists():
            tail = server.log.read_text(errors="replace")[-6000:]
            report.sections.append((f"{name} log (last lines)", tail))


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[str, str], Any]]:
    """Open a page (at most three); its console lines go into a failed test's report."""
    pages: list[Any] = []

    def _open(url: str, name: str) -> Any:
        assert len(pages) < 3, "at most three pages per test: each costs a third of a CPU"
        page = browser.new_page()
        page.name = name
        logs: list[str] = []
        page.on("console", lambda m: logs.append(f"[{name}] {m.type}: {m.text}"))
        page.on("pageerror", lambda e: logs.append(f"[{name}] pageerror: {e}"))
        page.logs = logs
        page.on("dialog", lambda d: d.accept())
        page.goto(url)
        pages.append(page)
        return page

    _open.pages = pages  # type: ignore[attr-defined]
    yield _open


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def wait_connected(page: Any, timeout_s: float = 15) -> None:
    """Until the page has joined (signaling open) and its peer connection is up."""
    page.wait_for_function(
        """() => {
            const el = document.querySelector('[data-testid=connection]');
            return el && el.dataset.signal === 'open' && el.dataset.media === 'connected';
        }""",
        timeout=timeout_s * 1000,
    )


def wait_console(page: Any, text: str, timeout_s: float = 15) -> None:
    """Until one of the page's console lines contains `text`, without running anything
    in the page: Playwright runs every evaluation as a user gesture, which would give
    the page the activation that lets it play sound by itself."""
    deadline = time.monotonic() + timeout_s
    while not any(text in line for line in page.logs):
        assert time.monotonic() < deadline, f"no console line with {text!r} in {timeout_s} s"
        page.wait_for_timeout(100)


def open_lesson(
    server: Server, open_page: Callable[[str, str], Any], title: str, classrooms: list[str]
) -> tuple[dict[str, Any], Any, list[Any]]:
    """A new lesson, its teacher's page and one page per classroom, all connected."""
    lesson = server.create_lesson(title, classrooms)
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    wait_connected(teacher)
    rooms = [
        open_page(server.url(room["url"]), f"classroom-{i}")
        for i, room in enumerate(lesson["classrooms"], 1)
    ]
    for room in rooms:
        wait_connected(room)
    return lesson, teacher, rooms


def inbound(page: Any) -> dict[str, Any]:
    stats: dict[str, Any] = page.evaluate("() => window.__classroom.inboundStats()")
    return stats


def wait_flowing(page: Any, slot: str, timeout_s: float = 20) -> dict[str, Any]:
    """Until the page's own getStats() shows `slot` being decoded (video: frames
    decoded rising and a frame width; audio: samples received rising)."""
    deadline = time.monotonic() + timeout_s
    first: dict[str, Any] | None = None
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = inbound(page).get(slot) or {}
        if last:
            key = "framesDecoded" if last.get("kind") == "video" else "totalSamplesReceived"
            value = last.get(key) or 0
            if first is None and value > 0:
                first = last
            elif (
                first is not None
                and value > (first.get(key) or 0)
                and (last.get("kind") != "video" or (last.get("frameWidth") or 0) > 0)
            ):
                return last
        time.sleep(0.5)
    raise AssertionError(f"{page.name}: {slot} not flowing within {timeout_s}s; last stats {last}")


def raise_hand(page: Any, student: str) -> None:
    """A classroom page raises its hand for `student`, through its buttons."""
    page.click("[data-testid=raise-hand]")
    page.fill("[data-testid=student-name]", student)
    page.click("[data-testid=raise-confirm]")


def frames_decoded(page: Any, slot: str) -> int:
    return int((inbound(page).get(slot) or {}).get("framesDecoded") or 0)
