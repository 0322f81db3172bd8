"""A lesson in real browsers: the teacher reaches the classrooms, a hand goes up,
a classroom takes the stage, a reload keeps the hand, a wrong code is explained."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import (
    CHROMIUM_ARGS,
    _http,
    frames_decoded,
    open_lesson,
    raise_hand,
    screenshot,
    wait_connected,
    wait_console,
    wait_flowing,
)

pytestmark = pytest.mark.e2e


def red_first_on_received_audio(page) -> bool:
    answer = page.evaluate("() => window.__classroom.pc.remoteDescription.sdp")
    sections = [s for s in answer.split("m=")[1:] if s.startswith("audio")]
    sent = [s for s in sections if "a=sendonly" in s]
    assert sent, answer
    for section in sent:
        first = section.split("\r\n")[0].split()[3]
        if f"a=rtpmap:{first} red/48000/2" not in section:
            return False
    return True


def test_teacher_reaches_two_classrooms(server, open_page):
    lesson, teacher, rooms = open_lesson(
        server, open_page, "五年级数学 分数的加法", ["石桥小学 五(1)班", "河口小学 五年级"]
    )
    for room in rooms:
        video = wait_flowing(room, "teacher_camera")
        assert video["frameWidth"] > 0
        # The server hands out no ICE servers here: the page made its one offer before
        # its welcome came (lesson_page.js, `offerEarly`), and the welcome let it be.
        marks = room.evaluate(
            """() => Object.fromEntries(['offer-early', 'welcome', 'offer-sent'].map((name) =>
                [name, performance.getEntriesByName(name).map((m) => m.startTime)]))"""
        )
        assert len(marks["offer-early"]) == 1 and len(marks["offer-sent"]) == 1, marks
        assert marks["offer-early"][0] < marks["welcome"][0], marks
        audio = wait_flowing(room, "teacher_audio")
        # The relay answered RED first (RFC 2198: each packet carries the previous
        # one too) on the lesson's audio, and the browser decodes it.
        assert audio["codec"] == "audio/opus", audio
        assert red_first_on_received_audio(room)
    # Slides: the teacher shares the screen; the classrooms show it large.
    teacher.click("[data-testid=share-screen]")
    for room in rooms:
        slides = wait_flowing(room, "slides")
        assert slides["frameWidth"] > 0
        room.wait_for_selector("[data-testid=lesson]:not(.no-slides)", timeout=10_000)
    # The teacher sees both classrooms online.
    teacher.wait_for_function(
        "() => document.querySelectorAll('[data-testid=classroom-row][data-online=true]').length === 2"
    )
    # ...and how well each receives the lesson, from the relay's `link` reports.
    teacher.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=classroom-row]')].every((row) =>
            /^\\d+$/.test(row.querySelector('.kbps').textContent) &&
            /ms$/.test(row.querySelector('.rtt').textContent) &&
            row.dataset.level !== 'unknown')"""
    )
    time.sleep(1)
    screenshot(teacher, "teacher")
    screenshot(rooms[0], "classroom")
    # A 1080p projector, and the English page one click away (remembered).
    rooms[1].set_viewport_size({"width": 1920, "height": 1080})
    rooms[1].click("[data-testid=lang-toggle]")
    rooms[1].wait_for_selector("[data-testid=raise-hand]:has-text('Raise hand')")
    screenshot(rooms[1], "classroom-1080p-en")
    assert rooms[1].evaluate("() => localStorage.getItem('classroom.lang')") == "en"
    # The delivery report says what each classroom's own browser counted (its page
    # reports every 10 s): freezes and sound gaps, not only what the relay sent.
    url = f"{server.base}/api/lessons/{lesson['id']}/delivery"
    deadline = time.monotonic() + 20
    while True:
        status, report = _http("GET", url, token=server.admin_key)
        assert status == 200, report
        received = report["classrooms"]
        if all(r["reported"] for r in received) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for r in received:
        assert r["reported"] is True, r
        assert 0 <= r["audio_concealed_ratio"] <= 1, r
        assert isinstance(r["audio_gap_events"], int), r
        assert isinstance(r["freezes"], int) and r["freeze_s"] >= 0, r


def test_hand_floor_and_stage(server, open_page):
    lesson = server.create_lesson("语文 朗读课", ["石桥小学", "河口小学"])
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    asking = open_page(server.url(lesson["classrooms"][0]["url"]), "asking")
    other = open_page(server.url(lesson["classrooms"][1]["url"]), "other")
    for page in (teacher, asking, other):
        wait_connected(page)

    # A classroom raises a hand for a named student.
    raise_hand(asking, "王小明")
    asking.wait_for_selector("[data-testid=hand-status][data-student=王小明]")
    assert asking.is_hidden("[data-testid=raise-hand]")

    # The teacher sees it, with the student's name and a waiting time.
    hand = teacher.wait_for_selector("[data-testid=hand][data-student=王小明]")
    assert "石桥小学" in hand.inner_text()
    teacher.wait_for_function(
        "() => /[1-9] 秒/.test(document.querySelector('[data-testid=hand-wait]').textContent)"
    )
    screenshot(teacher, "teacher-hand-raised")

    # The teacher gives the floor: the teacher and the other classroom see and hear it.
    hand.query_selector("[data-testid=grant]").click()
    teacher.wait_for_selector("[data-testid=stage-now]:not([hidden])")
    assert teacher.is_hidden("[data-testid=hand]")
    asking.wait_for_selector("[data-testid=on-stage]:not([hidden])")
    asking.wait_for_selector("[data-testid=lesson].me-on-stage")
    other.wait_for_selector("[data-testid=lesson]:not(.no-stage)")
    assert "王小明" in other.inner_text("[data-testid=stage-label]")
    stage = wait_flowing(teacher, "stage_video")
    assert stage["frameWidth"] > 0
    wait_flowing(teacher, "stage_audio")
    stage = wait_flowing(other, "stage_video")
    assert stage["frameWidth"] > 0
    wait_flowing(other, "stage_audio")
    time.sleep(1)
    screenshot(teacher, "teacher-stage")
    screenshot(other, "classroom-stage")
    screenshot(asking, "classroom-on-stage")

    # Revoke: the stage closes and its pictures stop.
    teacher.click("[data-testid=revoke]")
    other.wait_for_selector("[data-testid=lesson].no-stage")
    teacher.wait_for_selector("[data-testid=stage-now][hidden]", state="attached")
    assert asking.is_hidden("[data-testid=on-stage]")
    time.sleep(2)
    before = frames_decoded(other, "stage_video")
    time.sleep(2)
    assert frames_decoded(other, "stage_video") == before


def test_reloaded_classroom_keeps_its_hand(server, open_page):
    lesson = server.create_lesson("科学 植物的生长", ["石桥小学"])
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    room = open_page(server.url(lesson["classrooms"][0]["url"]), "classroom")
    wait_connected(teacher)
    wait_connected(room)
    raise_hand(room, "李华")
    teacher.wait_for_selector("[data-testid=hand][data-student=李华]")

    # A reload (a projector PC's browser restarted, say) rejoins with the hand up.
    room.reload()
    wait_connected(room)
    room.wait_for_selector("[data-testid=hand-status][data-student=李华]")
    assert room.is_hidden("[data-testid=raise-hand]")
    wait_flowing(room, "teacher_camera")
    assert teacher.locator("[data-testid=hand]").count() == 1

    # A network drop: the page reconnects by itself, hand still up.
    room.evaluate("() => window.__classroom.drop()")
    room.wait_for_function(
        "() => document.querySelector('[data-testid=connection]').dataset.signal !== 'open'",
        timeout=5_000,
    )
    wait_connected(room, timeout_s=20)
    room.wait_for_selector("[data-testid=hand-status][data-student=李华]")
    teacher.wait_for_selector("[data-testid=classroom-row][data-online=true]")

    # The relay falls back to slides and audio for this classroom: the page says so.
    # (A `link` report as the server sends it, fed to the page's protocol module; the
    # next real report restores it, so it is read in the same turn.)
    weak = room.evaluate(
        """() => {
            const c = window.__classroom;
            c.connection._receive({type: "link", participant_id: c.you.id, estimate_kbps: 90,
                sent_kbps: 80, loss: 0.12, rtt_ms: 380,
                layers: {teacher_camera: "off", teacher_audio: "high", slides: "low",
                         stage_video: "off", stage_audio: "off"}});
            const el = document.querySelector('[data-testid=weak-link]');
            return {hidden: el.hidden, text: el.textContent};
        }"""
    )
    assert not weak["hidden"] and "只接收课件和声音" in weak["text"], weak

    # The teacher ends the lesson: the classroom says so in words.
    teacher.click("[data-testid=end-lesson]")
    room.wait_for_selector("[data-testid=lesson-ended]")
    teacher.wait_for_selector("[data-testid=lesson-ended]")
    screenshot(room, "classroom-lesson-ended")


def test_observer_watches(server, open_page):
    lesson = server.create_lesson("观摩课", ["石桥小学"])
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    wait_connected(teacher)
    observer = open_page(server.url(lesson["observer"]["url"]), "observer")
    wait_connected(observer)
    video = wait_flowing(observer, "teacher_camera")
    assert video["frameWidth"] > 0
    wait_flowing(observer, "teacher_audio")
    assert observer.locator("[data-testid=raise-hand]").count() == 0
    time.sleep(1)
    screenshot(observer, "observer")


def test_wrong_code_is_explained(server, open_page):
    lesson = server.create_lesson("数学", ["石桥小学"])
    codes = {room["code"] for room in lesson["classrooms"]}
    wrong = next(c for c in ("123456", "654321", "111111") if c not in codes)
    page = open_page(server.base + "/join", "join")
    page.fill("[data-testid=join-code]", "12")
    page.click("[data-testid=join-submit]")
    page.wait_for_selector("[data-testid=join-error]:has-text('6 位数字')")
    page.fill("[data-testid=join-code]", wrong)
    page.click("[data-testid=join-submit]")
    page.wait_for_selector("[data-testid=join-error]:has-text('代码不正确')")
    screenshot(page, "join-wrong-code")
    page.click("[data-testid=lang-toggle]")
    page.wait_for_selector("[data-testid=join-error]:has-text('Wrong code')")
    page.click("[data-testid=lang-toggle]")
    # A damaged link says what to do; a link without a token goes to the code page.
    page.goto(server.base + "/classroom#token=not-a-token")
    page.wait_for_selector("[data-testid=fatal-error]:has-text('链接无效')")
    screenshot(page, "classroom-bad-link")
    page.goto(server.base + "/classroom")
    page.wait_for_url("**/join")
    # The right code leads to the classroom page.
    page.fill("[data-testid=join-code]", lesson["classrooms"][0]["code"])
    page.click("[data-testid=join-submit]")
    page.wait_for_url("**/classroom#token=*")
    wait_connected(page)
    assert page.inner_text("[data-testid=who]").endswith("石桥小学")


def test_home_creates_a_lesson(server, open_page):
    page = open_page(server.base + "/", "home")
    page.fill("[data-testid=admin-key]", "not-the-key")
    page.fill("[data-testid=lesson-title-input]", "五年级数学 分数的加法")
    page.fill("[data-testid=classroom-names]", "石桥小学 五(1)班\n河口小学 五年级\n")
    page.click("[data-testid=create-submit]")
    page.wait_for_selector("[data-testid=create-error]:has-text('管理密钥不正确')")
    page.fill("[data-testid=admin-key]", server.admin_key)
    page.click("[data-testid=create-submit]")
    page.wait_for_selector("[data-testid=created]:not([hidden])")
    codes = page.locator("[data-testid=classroom-code]").all_inner_texts()
    assert len(codes) == 2 and all(len(c) == 6 and c.isdigit() for c in codes)
    assert "/teacher#token=" in page.input_value("[data-testid=teacher-url]")
    screenshot(page, "home-created")
    # The admin key is kept in this browser.
    page.reload()
    assert page.input_value("[data-testid=admin-key]") == server.admin_key


AUTOPLAY_BLOCKED = [a for a in CHROMIUM_ARGS if not a.startswith("--autoplay-policy")] + [
    "--autoplay-policy=document-user-activation-required"
]


@pytest.mark.parametrize("browser_args", [AUTOPLAY_BLOCKED])
def test_click_to_start_sound_when_autoplay_is_blocked(server, open_page, browser_args):
    # The observer page: it never opens a camera (Chromium lets a page that captures
    # the camera play sound by itself), on another origin than the teacher's page
    # (localhost, not 127.0.0.1) for the same reason.
    lesson = server.create_lesson("音乐课", ["石桥小学"])
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    wait_connected(teacher)
    observer_url = server.url(lesson["observer"]["url"]).replace("127.0.0.1", "localhost")
    viewer = open_page(observer_url, "observer")
    # Nothing may run in the observer's page before it has tried to play: each
    # Playwright evaluation counts as a click there, and would unlock its sound.
    wait_console(viewer, "sound: asking for a click to start sound")
    gate = viewer.wait_for_selector("[data-testid=start-sound]")
    assert "点击开启声音" in gate.inner_text()
    screenshot(viewer, "observer-start-sound")
    gate.click()
    viewer.wait_for_selector("[data-testid=start-sound]", state="detached")
    viewer.wait_for_function(
        "() => !document.querySelector('[data-testid=teacher-audio]').paused", timeout=5_000
    )


WITHOUT_DEVICES = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]


@pytest.mark.parametrize("browser_args", [WITHOUT_DEVICES])
def test_camera_refused_is_explained(server, open_page, browser_args):
    lesson = server.create_lesson("数学", ["石桥小学"])
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    banner = teacher.wait_for_selector("[data-testid=error]:has-text('摄像头')")
    assert "重试" in banner.inner_text()
    # The lesson still runs: the page joined and negotiated without a camera.
    wait_connected(teacher)
    screenshot(teacher, "teacher-camera-refused")


def test_client_modules(server, open_page):
    """The pure parts of the client, run in the browser: the lesson fold, delivery
    levels, and that both languages name every string."""
    page = open_page(server.base + "/join", "modules")
    result = page.evaluate(
        """async () => {
            const s = await import('/static/js/lesson_state.js');
            const i18n = await import('/static/js/i18n.js');
            for (const table of ['teacher', 'home', 'room', 'join', 'admin']) {
                await import(`/static/js/${table}_strings.js`);
            }
            const view = s.fromWelcome({id: 'l', title: 'T', state: 'live', seq: 3, origin: 0,
                participants: [{id: 'classroom-1', role: 'classroom', name: 'A', online: true}],
                hands: [], stage: null, delivery: {}});
            s.apply(view, {kind: 'hand_raised', seq: 4, at: 5, classroom_id: 'classroom-1', student: 'Li'});
            const raised = view.hands.length;
            s.apply(view, {kind: 'floor_granted', seq: 5, at: 6, classroom_id: 'classroom-1', student: 'Li'});
            const afterGrant = {hands: view.hands.length, stage: view.stage && view.stage.student};
            s.apply(view, {kind: 'participant_left', seq: 6, at: 7, participant_id: 'classroom-1'});
            s.apply(view, {kind: 'floor_revoked', seq: 7, at: 7, classroom_id: 'classroom-1', reason: 'left'});
            const levels = [
                s.deliveryLevel({teacher_camera: 'high', slides: 'high'}),
                s.deliveryLevel({teacher_camera: 'low', slides: 'high'}),
                s.deliveryLevel({teacher_camera: 'off', slides: 'mid'}),
                s.deliveryLevel({teacher_camera: 'off', slides: 'off', teacher_audio: 'high'}),
                s.deliveryLevel({}),
            ];
            // The recording: state from the events, and its length with the pause left out.
            const rec = [];
            s.apply(view, {kind: 'recording_started', seq: 8, at: 10, recording_id: 'r1'});
            rec.push([view.recording.state, s.recordedSeconds(view.recording, 15)]);
            s.apply(view, {kind: 'recording_paused', seq: 9, at: 20, recording_id: 'r1'});
            rec.push([view.recording.state, s.recordedSeconds(view.recording, 40)]);
            s.apply(view, {kind: 'recording_resumed', seq: 10, at: 50, recording_id: 'r1'});
            rec.push([view.recording.state, s.recordedSeconds(view.recording, 55)]);
            s.apply(view, {kind: 'recording_stopped', seq: 11, at: 60, recording_id: 'r1', reason: 'ended'});
            rec.push([view.recording.state, s.recordedSeconds(view.recording, 99)]);
            // A page that joins later knows the state, not the length.
            const late = s.fromWelcome({id: 'l', title: 'T', state: 'live', seq: 9, participants: [],
                hands: [], stage: null, delivery: {}, recording: {id: 'r1', state: 'paused'}});
            rec.push([late.recording.state, s.recordedSeconds(late.recording, 99)]);
            const zh = i18n.keysOf('zh-CN'), en = i18n.keysOf('en');
            return {raised, afterGrant, online: view.participants[0].online, stage: view.stage,
                    seq: view.seq, levels, rec,
                    onlyZh: zh.filter(k => !en.includes(k)), onlyEn: en.filter(k => !zh.includes(k))};
        }"""
    )
    assert result["raised"] == 1
    assert result["afterGrant"] == {"hands": 0, "stage": "Li"}
    assert result["online"] is False and result["stage"] is None and result["seq"] == 11
    assert result["levels"] == ["full", "low", "slides_audio", "audio_only", "unknown"]
    assert result["rec"] == [
        ["recording", 5],
        ["paused", 10],
        ["recording", 15],
        ["off", 20],
        ["paused", None],
    ]
    assert result["onlyZh"] == [] and result["onlyEn"] == []


def test_pages_come_back_after_a_server_restart(own_server, open_page):
    lesson = own_server.create_lesson("数学", ["石桥小学"])
    teacher = open_page(own_server.url(lesson["teacher"]["url"]), "teacher")
    room = open_page(own_server.url(lesson["classrooms"][0]["url"]), "classroom")
    wait_connected(teacher)
    wait_connected(room)
    raise_hand(room, "张伟")
    teacher.wait_for_selector("[data-testid=hand][data-student=张伟]")

    own_server.stop()
    for page in (teacher, room):
        page.wait_for_selector("[data-testid=connection][data-state=bad]", timeout=10_000)
    screenshot(room, "classroom-reconnecting")
    own_server.start()

    # The teacher's page comes back by itself (backoff of at most 10 s); in the
    # classroom someone clicks the red badge, which retries at once. Media included.
    room.click("[data-testid=connection]")
    wait_connected(teacher, timeout_s=30)
    wait_connected(room, timeout_s=30)
    room.wait_for_selector("[data-testid=hand-status][data-student=张伟]")
    teacher.wait_for_selector("[data-testid=hand][data-student=张伟]")
    wait_flowing(room, "teacher_camera")


# A WebSocket the test opens (`open()`) and speaks through (`deliver(msg)`): every socket
# protocol.js makes is in `sockets`, with what it sent (parsed) and whether it was closed.
FAKE_SOCKET = """
            const sockets = [];
            class FakeSocket {
                static CONNECTING = 0;
                static OPEN = 1;
                constructor(url) { this.url = url; this.readyState = 0; this.sent = []; this.closed = false;
                    sockets.push(this); }
                open() { if (this.closed) return; this.readyState = 1; this.onopen && this.onopen(); }
                send(text) { this.sent.push(JSON.parse(text)); }
                close() { this.closed = true; this.readyState = 3; }
                deliver(msg) { this.onmessage({data: JSON.stringify(msg)}); }
            }
            window.WebSocket = FakeSocket;
"""


def test_protocol_module_opens_a_second_socket_beside_a_slow_one(server, open_page):
    """A socket still opening after SECOND_OPEN_MIN_MS (here, loopback's round trip is
    nothing: 400 ms), as after a lost SYN, gets a second one beside it. The first of
    the two to open is kept and joins; the other is closed and never joins. A socket
    that opens in time has no second."""
    page = open_page(server.base + "/join", "protocol-second")
    result = page.evaluate(
        """async () => {"""
        + FAKE_SOCKET
        + """
            const { LessonConnection } = await import('/static/js/protocol.js');
            const tick = (ms) => new Promise((r) => setTimeout(r, ms));
            const view = (s) => ({sent: s.sent.map((m) => m.type), closed: s.closed});
            // The first never opens; the second does.
            const a = new LessonConnection({token: 'a', url: 'ws://x/ws'});
            a.connect();
            await tick(250);
            const early = sockets.length;
            await tick(400);
            const late = sockets.length;
            sockets[1].open();
            sockets[0].open();  // too late: dropped already
            const lost = {kept: a.ws === sockets[1], first: view(sockets[0]), second: view(sockets[1])};
            a.close();
            // The first opens while the second is still opening.
            const b = new LessonConnection({token: 'b', url: 'ws://x/ws'});
            b.connect();
            await tick(650);
            sockets[2].open();
            sockets[3].open();
            const slow = {made: sockets.length - 2, kept: b.ws === sockets[2],
                          first: view(sockets[2]), second: view(sockets[3])};
            b.close();
            // The first opens in time.
            const c = new LessonConnection({token: 'c', url: 'ws://x/ws'});
            c.connect();
            await tick(50);
            sockets[4].open();
            await tick(700);
            const quick = {made: sockets.length - 4, first: view(sockets[4])};
            c.close();
            return {early, late, lost, slow, quick};
        }"""
    )
    assert result["early"] == 1 and result["late"] == 2
    assert result["lost"] == {
        "kept": True,
        "first": {"sent": [], "closed": True},
        "second": {"sent": ["join"], "closed": False},
    }
    assert result["slow"] == {
        "made": 2,
        "kept": True,
        "first": {"sent": ["join"], "closed": False},
        "second": {"sent": [], "closed": True},
    }
    assert result["quick"] == {"made": 1, "first": {"sent": ["join"], "closed": False}}


def test_protocol_module_sends_an_offer_made_before_the_welcome_behind_the_join(server, open_page):
    """An offer made before the welcome (the classroom page's `offerEarly`) leaves as
    soon as the socket has sent its join: at once if it has, right behind the join if
    the socket is still opening. Its answer is matched as any other; an offer made
    with no socket at all fails."""
    page = open_page(server.base + "/join", "protocol-early-offer")
    result = page.evaluate(
        """async () => {"""
        + FAKE_SOCKET
        + """
            const { LessonConnection } = await import('/static/js/protocol.js');
            const welcome = {type: 'welcome', protocol: 1, you: {id: 'classroom-1', role: 'classroom', name: 'A'},
                             lesson: {id: 'l', seq: 1, participants: [], hands: [], stage: null, delivery: {}}};
            // Made while the socket is still opening: it follows the join.
            const a = new LessonConnection({token: 'a', url: 'ws://x/ws'});
            a.connect();
            const answered = a.offer('v=0 early');
            const before = sockets[0].sent.length;
            sockets[0].open();
            const order = sockets[0].sent.map((m) => m.type);
            const pending = a._pendingAnswer.ws === sockets[0];
            sockets[0].deliver(welcome);
            sockets[0].deliver({type: 'answer', sdp: 'v=0 answer', ref: sockets[0].sent[1].ref});
            const sdp = await answered;
            a.close();
            // Made once the socket has joined, before the welcome: it leaves at once.
            const b = new LessonConnection({token: 'b', url: 'ws://x/ws'});
            b.connect();
            sockets[1].open();
            b.offer('v=0 joined').catch(() => {});
            const atOnce = sockets[1].sent.map((m) => m.type);
            b.close();
            // No socket: refused.
            const c = new LessonConnection({token: 'c', url: 'ws://x/ws'});
            let refused = null;
            await c.offer('v=0 alone').catch((e) => { refused = e.message; });
            return {before, order, pending, sdp, atOnce, refused};
        }"""
    )
    assert result["before"] == 0
    assert result["order"] == ["join", "offer"]
    assert result["pending"] is True
    assert result["sdp"] == "v=0 answer"
    assert result["atOnce"] == ["join", "offer"]
    assert result["refused"] == "not connected"


def test_media_module_offers_its_host_candidates_without_waiting_for_complete(server, open_page):
    """media.js: with no ICE servers, the offer leaves once host candidates have stopped
    coming for HOST_QUIET_MS, with the ones found. (One found later is not lost: the
    browser checks from all of its candidates, and the relay learns the address.)"""
    page = open_page(server.base + "/join", "media-gathering")
    result = page.evaluate(
        """async () => {
            const { MediaLink } = await import('/static/js/media.js');
            let seen = null;
            const link = new MediaLink({role: 'observer', negotiate: async (sdp) => {
                seen = (sdp.match(/\\r\\na=candidate:/g) || []).length;
                throw new Error('no relay here');
            }});
            await link.start().catch(() => {});
            // Gathering still completes; a candidate found after the offer only adds.
            await new Promise((r) => setTimeout(r, 1000));
            const complete = link.pc.iceGatheringState;
            const total = (link.pc.localDescription.sdp.match(/\\r\\na=candidate:/g) || []).length;
            link.close();
            return {seen, total, complete};
        }"""
    )
    assert result["seen"] >= 1, result
    assert result["complete"] == "complete", result
    assert result["total"] >= result["seen"], result


def test_protocol_module_reconnects_with_since(server, open_page):
    """protocol.js against a scripted socket: the rejoin carries `since`, the backlog
    is marked as already in the snapshot, answers match their offer, and a fatal
    error stops the retries."""
    page = open_page(server.base + "/join", "protocol")
    result = page.evaluate(
        """async () => {
            const sockets = [];
            class FakeSocket {
                static OPEN = 1;
                constructor(url) { this.url = url; this.readyState = 0; this.sent = []; sockets.push(this);
                    setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 0); }
                send(text) { this.sent.push(JSON.parse(text)); }
                close() { this.readyState = 3; setTimeout(() => this.onclose && this.onclose({}), 0); }
                deliver(msg) { this.onmessage({data: JSON.stringify(msg)}); }
            }
            window.WebSocket = FakeSocket;
            const { LessonConnection } = await import('/static/js/protocol.js');
            const seen = [], states = [], errors = [];
            const conn = new LessonConnection({token: 'tok', url: 'ws://x/ws', handlers: {
                onEvent: (e, replayed) => seen.push([e.seq, replayed]),
                onState: (s) => states.push(s),
                onError: (e, fatal) => errors.push([e.code, fatal]),
            }});
            const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
            const welcome = (seq) => ({type: 'welcome', protocol: 1, you: {id: 'classroom-1', role: 'classroom', name: 'A'},
                                       lesson: {id: 'l', seq, participants: [], hands: [], stage: null, delivery: {}}});
            conn.connect(); await tick();
            const first = sockets[0].sent[0];
            sockets[0].deliver(welcome(5));
            sockets[0].deliver({type: 'event', event: {kind: 'chat_posted', seq: 6, at: 1}});
            // An offer answered by ref.
            const answer = conn.offer('v=0 offer');
            const offerMsg = sockets[0].sent.find((m) => m.type === 'offer');
            sockets[0].deliver({type: 'answer', sdp: 'v=0 answer', ref: offerMsg.ref});
            const answerSdp = await answer;
            // The network drops; the client comes back by itself with since = 6.
            sockets[0].close();
            for (let i = 0; i < 200 && sockets.length < 2; i++) await tick(10);
            await tick();
            const rejoin = sockets[1].sent[0];
            sockets[1].deliver(welcome(8));
            sockets[1].deliver({type: 'event', event: {kind: 'hand_raised', seq: 7, at: 2}});
            sockets[1].deliver({type: 'event', event: {kind: 'hand_lowered', seq: 8, at: 3}});
            sockets[1].deliver({type: 'event', event: {kind: 'hand_lowered', seq: 8, at: 3}});
            sockets[1].deliver({type: 'event', event: {kind: 'chat_posted', seq: 9, at: 4}});
            // Replaced elsewhere: no more retries.
            sockets[1].deliver({type: 'error', code: 'replaced', message: 'elsewhere'});
            await tick(1500);
            return {first, rejoin, seen, answerSdp, errors, sockets: sockets.length, last: states[states.length - 1]};
        }"""
    )
    assert result["first"] == {"type": "join", "token": "tok", "protocol": 1}
    assert result["rejoin"] == {"type": "join", "token": "tok", "protocol": 1, "since": 6}
    assert result["seen"] == [[6, False], [7, True], [8, True], [9, False]]
    assert result["answerSdp"] == "v=0 answer"
    assert result["errors"] == [["replaced", True]]
    assert result["sockets"] == 2 and result["last"] == "closed"
