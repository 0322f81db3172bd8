"""The pages as a real classroom meets them, in Chromium at the sizes schools have.

Each page in each state (waiting, live, on stage, frozen, sound only, reconnecting,
ended) at the sizes it must fit: the classroom (projector) page at 1024x768 (XGA),
1366x768 and 1920x1080, the teacher's at 1280x800 and 1366x768, the observer's at
1024x768 and 1280x800. At each: no horizontal scroll, every primary control is the
element at its own centre (nothing covers it, it is on screen), the projector's text
is at least 24 px at 1024x768, and what a picture's status says is what the page's own
getStats() reports. A screenshot of each is kept in test-artifacts/pages-*.png.

One lesson is shared by all the sizes of a test: a size is a viewport change, not a
new browser. Waits are for conditions, with generous timeouts: a busy 2-core machine
may be slow, never wrong.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.e2e.conftest import (
    CHROMIUM_ARGS,
    raise_hand,
    screenshot,
    wait_connected,
    wait_flowing,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

Size = tuple[int, int]
CLASSROOM_SIZES: list[Size] = [(1024, 768), (1366, 768), (1920, 1080)]
TEACHER_SIZES: list[Size] = [(1280, 800), (1366, 768)]
OBSERVER_SIZES: list[Size] = [(1024, 768), (1280, 800)]

# The projector PC as README says to start it: kiosk mode, sound without a click.
KIOSK = [*CHROMIUM_ARGS, "--kiosk"]

# What must be at least 24 px on the projector page at 1024x768 (when shown).
PROJECTOR_TEXT = [
    "[data-testid=lesson-title]",
    "[data-testid=connection]",
    "[data-testid=hand-status]",
    "[data-testid=on-stage]",
    ".pic-status",
    "[data-testid=weak-link]",
]

_OVERFLOW_JS = """() => ({scroll: document.documentElement.scrollWidth,
                         body: document.body.scrollWidth, inner: innerWidth})"""

# For each selector, every shown match must be the element at its own centre, on
# screen; a selector with no shown match is reported too (a control that vanished).
_COVERED_JS = """(selectors) => {
    const problems = [];
    for (const sel of selectors) {
        const shown = [...document.querySelectorAll(sel)].filter((el) => el.getClientRects().length > 0);
        if (shown.length === 0) problems.push(`${sel}: not shown`);
        for (const el of shown) {
            const r = el.getBoundingClientRect();
            const x = r.left + r.width / 2, y = r.top + r.height / 2;
            const inside = x >= 0 && y >= 0 && x < innerWidth && y < innerHeight;
            const hit = inside ? document.elementFromPoint(x, y) : null;
            if (!hit || !(hit === el || el.contains(hit))) {
                problems.push(`${sel}: centre (${Math.round(x)}, ${Math.round(y)}) is ` +
                    (hit ? hit.outerHTML.slice(0, 100) : 'off screen'));
            }
        }
    }
    return problems;
}"""

_FONTS_JS = """(selectors) => selectors.flatMap((sel) =>
    [...document.querySelectorAll(sel)]
        .filter((el) => el.getClientRects().length > 0 && el.textContent.trim())
        .map((el) => [sel, parseFloat(getComputedStyle(el).fontSize), el.textContent.trim().slice(0, 40)]))"""

# The page's own getStats() for one received slot, read here without the page's
# modules, beside what the slot's status chip says.
_STATUS_JS = """async (slot) => {
    const c = window.__classroom;
    const tr = c.media.transceivers.get(slot);
    const chip = document.querySelector(`[data-testid="status-${slot}"]`);
    let s = null;
    if (c.pc && tr) (await c.pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.mid === tr.mid) s = r;
    });
    return {relay: (c.relayLayers || {})[slot] || null,
            width: s ? s.frameWidth : null, height: s ? s.frameHeight : null,
            fps: s ? s.framesPerSecond : null, decoded: s ? s.framesDecoded : null,
            text: chip ? chip.textContent : null,
            state: chip ? chip.closest('.tile').dataset.status : null};
}"""


def set_size(page: Any, size: Size) -> None:
    page.set_viewport_size({"width": size[0], "height": size[1]})
    # One frame of layout and one status poll at the new size.
    page.wait_for_timeout(600)


def check_layout(
    page: Any,
    name: str,
    size: Size,
    controls: list[str],
    big_text: list[str] | None = None,
) -> None:
    """No horizontal scroll, every control reachable, the text large enough; a screenshot."""
    width = page.evaluate(_OVERFLOW_JS)
    assert width["scroll"] <= width["inner"] and width["body"] <= width["inner"], (
        f"{name} at {size}: {width}"
    )
    problems = page.evaluate(_COVERED_JS, controls)
    assert problems == [], f"{name} at {size}: {problems}"
    if big_text:
        small = [f for f in page.evaluate(_FONTS_JS, big_text) if f[1] < 24]
        assert small == [], f"{name} at {size}: text under 24 px {small}"
    screenshot(page, f"pages-{name}-{size[0]}x{size[1]}")


def status_matches_stats(
    page: Any, slot: str, timeout_s: float = 30, may_pause: bool = False
) -> dict[str, Any]:
    """Until the slot's status chip says the size getStats() reports, live, with a frame
    rate near the browser's own (both move; the chip is at most one poll behind).

    `may_pause`: on a busy machine the relay may really switch the teacher's camera off
    for a classroom (its estimate falls, the camera is the first picture to go). Then
    the chip must say so, and the page's own `link` report must say "off"."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = page.evaluate(_STATUS_JS, slot)
        text = last["text"] or ""
        if may_pause and last["state"] == "paused" and last["relay"] == "off":
            assert "服务器已暂停" in text or "Paused by the server" in text, last
            return last
        shown = re.search(r"(\d+)×(\d+) · (\d+)", text)
        if last["state"] == "live" and shown and last["width"]:
            w, h, fps = (int(g) for g in shown.groups())
            size_ok = (w, h) == (last["width"], last["height"])
            stats_fps = last["fps"]
            fps_ok = (
                fps > 0 if stats_fps is None else abs(fps - stats_fps) <= max(3, 0.35 * stats_fps)
            )
            if size_ok and fps_ok:
                return last
        time.sleep(0.3)
    raise AssertionError(f"{page.name}: {slot} status does not match getStats(): {last}")


_BADGE_JS = """() => ({
    badge: document.querySelector('[data-testid=connection]').dataset.pictures,
    shown: [...document.querySelectorAll('.tile[data-status]')]
        .filter((tile) => tile.getClientRects().length > 0).map((tile) => tile.dataset.status),
})"""


def badge_tells_the_truth(page: Any, timeout_s: float = 15) -> None:
    """Until the badge has a verdict, then: "ok" only if every picture shown is live; a
    frozen one makes it "frozen"; all paused, "sound_only" (the sound arrives here)."""
    deadline = time.monotonic() + timeout_s
    while not (now := page.evaluate(_BADGE_JS))["badge"] or "waiting" in now["shown"]:
        assert time.monotonic() < deadline, now
        time.sleep(0.3)
    shown = set(now["shown"])
    if "frozen" in shown:
        expected = "frozen"
    elif shown == {"paused"}:
        expected = "sound_only"
    elif "paused" in shown:
        expected = "paused"
    else:
        expected = "ok"
    assert now["badge"] == expected, now


def wait_status(page: Any, slot: str, state: str, timeout_s: float = 15) -> None:
    page.wait_for_selector(
        f".tile[data-status={state}] [data-testid=status-{slot}]", timeout=timeout_s * 1000
    )


# In the classroom's page: from now on, when did the teacher's picture last get a new
# frame (its own getStats(), every 100 ms), and when did its tile first stop saying
# live, in which state.
_WATCH_FREEZE_JS = """() => {
    const c = window.__classroom;
    const tr = c.media.transceivers.get('teacher_camera');
    const tile = document.querySelector('[data-testid=teacher-tile]');
    let last = -1, lastAt = performance.now();
    window.__stopped = null;
    const timer = setInterval(async () => {
        let decoded = 0;
        (await c.pc.getStats()).forEach((r) => {
            if (r.type === 'inbound-rtp' && r.mid === tr.mid) decoded = r.framesDecoded;
        });
        const now = performance.now();
        if (decoded !== last) { last = decoded; lastAt = now; }
        if (tile.dataset.status !== 'live') {
            clearInterval(timer);
            window.__stopped = {state: tile.dataset.status, markedAfterMs: now - lastAt};
        }
    }, 100);
}"""


def freeze_teacher_camera(teacher: Any, room: Any, attempts: int = 3) -> dict[str, Any]:
    """The teacher's camera stops sending; the classroom's picture must say frozen.
    If the relay happens to switch the camera off for the classroom first (its link
    estimate fell: a busy machine), that is "paused", honestly, and the freeze is
    tried again once the camera is back."""
    for _ in range(attempts):
        status_matches_stats(room, "teacher_camera", timeout_s=90)
        room.evaluate(_WATCH_FREEZE_JS)
        teacher.evaluate(
            """() => { const m = window.__classroom.media;
                       window.__camera = window.__camera || m.local.get('camera');
                       return m.setTrack('camera', null); }"""
        )
        room.wait_for_function("() => window.__stopped !== null", timeout=20_000)
        stopped: dict[str, Any] = room.evaluate("() => window.__stopped")
        if stopped["state"] == "frozen":
            return stopped
        assert stopped["state"] == "paused", stopped
        teacher.evaluate("() => window.__classroom.media.setTrack('camera', window.__camera)")
    raise AssertionError(f"the relay kept pausing the camera: {stopped}")


def received_text(teacher: Any, room_id: str) -> str:
    text: str = teacher.inner_text(
        f"[data-testid=classroom-row][data-id='{room_id}'] [data-testid=received]"
    )
    return text


@pytest.mark.parametrize("browser_args", [KIOSK])
def test_pages_fit_and_say_what_arrives(server, open_page, browser_args):
    lesson = server.create_lesson("五年级数学 分数的加法", ["石桥小学 五(1)班", "河口小学 五年级"])
    first, second = lesson["classrooms"]
    # Every chip checked against getStats(): live (size and rate) or paused (and the
    # relay's own report says off). At least one must have been seen live.
    seen: list[dict[str, Any]] = []

    # Waiting: the projector page is on before the teacher.
    room = open_page(server.url(first["url"]), "classroom")
    wait_connected(room)
    room.wait_for_selector("[data-testid=raise-hand]:not([disabled])")
    room_controls = [
        "[data-testid=raise-hand]",
        "[data-testid=fullscreen]",
        "[data-testid=lang-toggle]",
    ]
    for size in CLASSROOM_SIZES:
        set_size(room, size)
        big = PROJECTOR_TEXT if size == (1024, 768) else None
        check_layout(room, "classroom-waiting", size, room_controls, big)

    # Live: camera and slides arrive; each picture says its size and frame rate.
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    wait_connected(teacher)
    teacher.click("[data-testid=share-screen]")
    # Slides come before the camera in the relay's order: on a busy machine it may
    # pause the camera for a while (the chips must then say so: may_pause below).
    wait_flowing(room, "slides", timeout_s=45)
    room.wait_for_selector("[data-testid=lesson]:not(.no-slides)", timeout=15_000)
    # Kiosk flags: the sound plays by itself, nothing asks for a click.
    room.wait_for_function(
        "() => !document.querySelector('[data-testid=teacher-audio]').paused", timeout=15_000
    )
    assert room.locator("[data-testid=start-sound]").count() == 0
    badge_tells_the_truth(room)
    for size in CLASSROOM_SIZES:
        set_size(room, size)
        seen.append(status_matches_stats(room, "teacher_camera", may_pause=True))
        seen.append(status_matches_stats(room, "slides", may_pause=True))
        big = PROJECTOR_TEXT if size == (1024, 768) else None
        check_layout(room, "classroom-live", size, room_controls, big)
    # English is longer: it fits too, and its badge still tells the truth.
    set_size(room, CLASSROOM_SIZES[0])
    room.click("[data-testid=lang-toggle]")
    room.wait_for_selector("[data-testid=raise-hand]:has-text('Raise hand')")
    seen.append(status_matches_stats(room, "slides", may_pause=True))
    check_layout(room, "classroom-live-en", CLASSROOM_SIZES[0], room_controls, PROJECTOR_TEXT)
    room.click("[data-testid=lang-toggle]")

    observer = open_page(server.url(lesson["observer"]["url"]), "observer")
    wait_connected(observer)
    wait_flowing(observer, "slides", timeout_s=30)
    for size in OBSERVER_SIZES:
        set_size(observer, size)
        seen.append(status_matches_stats(observer, "teacher_camera", may_pause=True))
        check_layout(observer, "observer-live", size, ["[data-testid=lang-toggle]"])

    # The teacher's table: what the classroom's own browser decodes, from its report.
    room_id = room.evaluate("() => window.__classroom.you.id")
    deadline = time.monotonic() + 45
    while True:
        cam = room.evaluate(_STATUS_JS, "teacher_camera")
        text = received_text(teacher, room_id)
        if cam["state"] == "live" and f"{cam['width']}×{cam['height']}" in text:
            break
        if cam["state"] == "paused" and "老师：服务器已暂停" in text:
            break
        assert time.monotonic() < deadline, f"teacher's table says {text!r}, room decodes {cam}"
        time.sleep(1)
    teacher_controls = [
        "[data-testid=stop-screen]",
        "[data-testid=end-lesson]",
        "[data-testid=lang-toggle]",
        "[data-testid=chat-send]",
        "[data-testid=call-on]",
    ]
    for size in TEACHER_SIZES:
        set_size(teacher, size)
        check_layout(teacher, "teacher-live", size, teacher_controls)
    teacher.click("[data-testid=lang-toggle]")
    teacher.wait_for_selector("[data-testid=end-lesson]:has-text('End lesson')")
    check_layout(teacher, "teacher-live-en", TEACHER_SIZES[0], teacher_controls)
    teacher.click("[data-testid=lang-toggle]")

    # Hands: this classroom's, and another's over the protocol (a third page's worth
    # of CPU saved); the teacher gives this one the floor.
    raise_hand(room, "王小明")
    room.wait_for_selector("[data-testid=hand-status][data-student=王小明]")
    for size in CLASSROOM_SIZES[:1]:
        set_size(room, size)
        check_layout(room, "classroom-hand-up", size, ["[data-testid=lower-hand]"], PROJECTOR_TEXT)
    other = room.evaluate(
        """(token) => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws`);
            window.__other = ws;
            ws.onopen = () => ws.send(JSON.stringify({type: 'join', token}));
            ws.onmessage = (m) => {
                const msg = JSON.parse(m.data);
                if (msg.type === 'welcome') {
                    ws.send(JSON.stringify({type: 'raise_hand', student: '李华'}));
                    resolve(msg.you.id);
                }
            };
        })""",
        second["token"],
    )
    assert other == second["id"]
    teacher.wait_for_selector("[data-testid=hand][data-student=李华]")
    teacher.click("[data-testid=hand][data-student=王小明] [data-testid=grant]")
    room.wait_for_selector("[data-testid=lesson].me-on-stage")
    teacher.wait_for_selector("[data-testid=stage-now]:not([hidden])")
    # While a classroom has the floor, the next hand is in sight with its buttons.
    for size in TEACHER_SIZES:
        set_size(teacher, size)
        seen.append(status_matches_stats(teacher, "stage_video", may_pause=True))
        check_layout(
            teacher,
            "teacher-stage",
            size,
            [
                "[data-testid=hand][data-student=李华] [data-testid=grant]",
                "[data-testid=hand][data-student=李华] [data-testid=dismiss]",
                "[data-testid=revoke]",
                "[data-testid=end-lesson]",
                "[data-testid=stop-screen]",
                "[data-testid=chat-send]",
            ],
        )
    for size in CLASSROOM_SIZES:
        set_size(room, size)
        big = PROJECTOR_TEXT if size == (1024, 768) else None
        check_layout(room, "classroom-on-stage", size, room_controls[1:], big)
    teacher.click("[data-testid=revoke]")
    room.wait_for_selector("[data-testid=lesson]:not(.me-on-stage)")

    # The end: every page says so and offers the replay; the observer's link, opened
    # again, goes to the replay, whose pictures are labelled.
    teacher.click("[data-testid=end-lesson]")
    for page, sizes in ((room, CLASSROOM_SIZES), (observer, OBSERVER_SIZES)):
        page.wait_for_selector("[data-testid=lesson-ended] [data-testid=replay-link]")
        for size in sizes:
            set_size(page, size)
            check_layout(
                page,
                f"{page.name}-ended",
                size,
                ["[data-testid=replay-link]", "[data-testid=lang-toggle]"],
            )
    teacher.wait_for_selector("[data-testid=lesson-ended] [data-testid=replay-link]")
    observer.goto("about:blank")
    observer.goto(server.url(lesson["observer"]["url"]))
    observer.wait_for_url("**/replay#token=*", timeout=15_000)
    observer.wait_for_selector("[data-testid=chapter]", timeout=15_000)
    assert observer.inner_text("[data-testid=replay-camera-label]") == "老师"
    screenshot(observer, "pages-observer-replay")
    assert any(check["state"] == "live" for check in seen), seen


def test_a_frozen_paused_or_lost_picture_says_so(server, open_page):
    lesson = server.create_lesson("科学 植物的生长", ["石桥小学"])
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    wait_connected(teacher)
    room = open_page(server.url(lesson["classrooms"][0]["url"]), "classroom")
    wait_connected(room)
    room_id = room.evaluate("() => window.__classroom.you.id")

    # Frozen: the teacher's camera stops sending. The classroom's picture stands still
    # and says so within about 2 s of its last frame (measured in the page; the bound
    # here leaves room for a busy machine), and the badge stops saying "OK".
    frozen = freeze_teacher_camera(teacher, room)
    assert frozen["markedAfterMs"] <= 3500, frozen
    assert room.get_attribute("[data-testid=connection]", "data-pictures") == "frozen"
    assert "画面卡住" in room.inner_text("[data-testid=status-teacher_camera]")
    set_size(room, (1024, 768))
    check_layout(
        room, "classroom-frozen", (1024, 768), ["[data-testid=raise-hand]"], PROJECTOR_TEXT
    )
    # ...and the teacher's table says that this classroom's picture froze.
    teacher.wait_for_selector(
        f"[data-testid=classroom-row][data-id='{room_id}'][data-received=frozen]", timeout=45_000
    )
    assert "画面卡住" in received_text(teacher, room_id)
    set_size(teacher, (1280, 800))
    check_layout(teacher, "teacher-classroom-frozen", (1280, 800), ["[data-testid=end-lesson]"])
    teacher.evaluate("() => window.__classroom.media.setTrack('camera', window.__camera)")
    status_matches_stats(room, "teacher_camera", may_pause=True)

    # Sound only: the relay switches the pictures off for this classroom's link. (Its
    # `link` reports as the server would send them; the relay does so on a weak link,
    # tests/e2e/test_weaklink.py.) Each picture says the server paused it, the badge
    # says sound only, the note says so over the big picture.
    room.evaluate(
        """() => { const c = window.__classroom, conn = c.connection;
                   const real = conn._receive.bind(conn);
                   conn._receive = (data) => real(data.type === 'link' && data.participant_id === c.you.id
                       ? {...data, layers: {...data.layers, teacher_camera: 'off', slides: 'off'}} : data);
                   real({type: 'link', participant_id: c.you.id, estimate_kbps: 60, sent_kbps: 40,
                         loss: 0.1, rtt_ms: 400, layers: {teacher_camera: 'off', slides: 'off',
                         teacher_audio: 'high', stage_video: 'off', stage_audio: 'off'}}); }"""
    )
    wait_status(room, "teacher_camera", "paused")
    room.wait_for_selector("[data-testid=connection][data-pictures=sound_only]")
    assert "仅声音" in room.inner_text("[data-testid=connection]")
    assert room.is_visible("[data-testid=weak-link]")
    for size in CLASSROOM_SIZES:
        set_size(room, size)
        big = PROJECTOR_TEXT if size == (1024, 768) else None
        check_layout(room, "classroom-sound-only", size, ["[data-testid=raise-hand]"], big)
    room.evaluate("() => { delete window.__classroom.connection._receive; }")
    status_matches_stats(room, "teacher_camera", may_pause=True)

    # Reconnecting: the network drops and stays down (the page's socket is pointed
    # where nothing answers); every picture says so until it is back.
    room.evaluate(
        """() => { const conn = window.__classroom.connection;
                   window.__url = conn.url; conn.url = conn.url.replace(/ws$/, 'nowhere'); conn.drop(); }"""
    )
    wait_status(room, "teacher_camera", "reconnecting", timeout_s=10)
    room.wait_for_selector("[data-testid=connection][data-state=bad]")
    set_size(room, (1024, 768))
    check_layout(room, "classroom-reconnecting", (1024, 768), ["[data-testid=connection]"])
    room.evaluate(
        "() => { const conn = window.__classroom.connection; conn.url = window.__url; conn.retryNow(); }"
    )
    wait_connected(room, timeout_s=30)
    status_matches_stats(room, "teacher_camera", may_pause=True)


# (what the page knows, the state its chip must say)
PICTURE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"connected": False, "everConnected": False}, "waiting"),
    ({"connected": False, "everConnected": True}, "reconnecting"),
    ({"off": True}, "paused"),
    ({"off": True, "expected": False, "framesDecoded": 0}, "waiting"),
    ({"framesDecoded": 0}, "waiting"),
    ({"sinceFrameMs": 400}, "live"),
    ({"sinceFrameMs": 1500}, "frozen"),
    ({"sinceFrameMs": 1500, "frozenAfterMs": 3000}, "live"),
    # The teacher left, nobody is on stage: a picture with no source is not frozen.
    ({"sinceFrameMs": 60_000, "expected": False}, "waiting"),
]
KNOWN = {
    "connected": True,
    "everConnected": True,
    "expected": True,
    "off": False,
    "framesDecoded": 900,
    "sinceFrameMs": 100,
    "frozenAfterMs": 1500,
}


def test_picture_states_and_the_badge(server, open_page):
    """status.js's pure rules, run in the browser: each picture's state, and the
    badge's summary, which never says "ok" over a frozen or paused picture."""
    page = open_page(server.base + "/join", "modules")
    result = page.evaluate(
        """async ([cases, known]) => {
            const s = await import('/static/js/status.js');
            const states = cases.map(([given]) => s.pictureState({...known, ...given}));
            const p = (state) => ({state});
            const summaries = [
                s.pageSummary([p('live'), p('live')], true),
                s.pageSummary([p('live'), p('frozen')], true),
                s.pageSummary([p('paused'), p('paused')], true),
                s.pageSummary([p('paused'), p('paused')], false),
                s.pageSummary([p('live'), p('paused')], true),
                s.pageSummary([p('waiting')], true),
                s.pageSummary([p('live'), p('reconnecting')], true),
            ];
            return {states, summaries};
        }""",
        [PICTURE_CASES, KNOWN],
    )
    assert result["states"] == [state for _, state in PICTURE_CASES]
    assert result["summaries"] == [
        "ok",
        "frozen",
        "sound_only",
        "paused",
        "paused",
        "waiting",
        "reconnecting",
    ]
