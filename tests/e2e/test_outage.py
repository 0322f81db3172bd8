"""A dropped link or a restarted server: the classroom comes back by itself (issue 24).

What holds on a busy machine is asserted here: the page rejoins without a click, its
hand and place in the queue are kept, the teacher sees it leave and come back, the
teacher's camera moves again within a generous bound. The tight figures (a 60 s cut
too) come from `python -m scripts.bench_outage`, which prints them as JSON.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import raise_hand, run_script, wait_connected, wait_flowing

# Generous: the benchmark measures 1-2 s on an idle machine.
RECOVERY_BOUND_S = 10.0

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or not Path("/usr/bin/chromium").exists(),
    reason="needs root, iproute2 and Debian's chromium",
)


@pytest.mark.e2e
@pytest.mark.netns
@pytest.mark.timeout(300)
@needs_netns
def test_a_cut_link_and_a_killed_server_come_back_without_a_click() -> None:
    result = run_script("scripts.bench_outage", "--cuts", "10", "--restarts", "kill", timeout_s=280)
    cut, kill = result["cut_10s"], result["restart_kill"]
    # Every packet was dropped both ways while the link was cut.
    assert result["link"]["down"]["lost_cut"] > 0 and result["link"]["up"]["lost_cut"] > 0
    # The page saw the drop, and so did the teacher, before the link came back.
    assert cut["page_noticed_s"] is not None and cut["page_noticed_s"] < 10
    assert cut["teacher_saw_offline_s"] is not None and cut["teacher_saw_offline_s"] < 10
    for name, case in (("cut", cut), ("kill", kill)):
        assert case["rejoined"], (name, case)
        assert case["hand_kept"] and case["queue_kept"], (name, case)
        assert case["teacher_saw_online_s"] is not None, (name, case)
        recovery = case["recovery_s"]
        assert recovery is not None and recovery < RECOVERY_BOUND_S, (name, case)
    shutil.rmtree(result["artifacts"], ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_pages_come_back_after_a_graceful_restart(own_server, open_page) -> None:
    """A real teacher page and a classroom page on loopback; the server stops (SIGTERM)
    and starts again on the same port and data folder. Nobody clicks."""
    lesson = own_server.create_lesson("数学 分数", ["石桥小学"])
    teacher = open_page(own_server.url(lesson["teacher"]["url"]), "teacher")
    wait_connected(teacher)
    room = open_page(own_server.url(lesson["classrooms"][0]["url"]), "classroom")
    wait_connected(room)
    wait_flowing(room, "teacher_camera")
    raise_hand(room, "李华")
    teacher.wait_for_selector("[data-testid=hand][data-student=李华]")

    own_server.stop()
    room.wait_for_function(
        "() => document.querySelector('[data-testid=connection]').dataset.signal !== 'open'",
        timeout=5_000,
    )
    own_server.start()
    up = time.monotonic()
    wait_connected(room, timeout_s=RECOVERY_BOUND_S)
    wait_connected(teacher, timeout_s=RECOVERY_BOUND_S)
    wait_flowing(room, "teacher_camera", timeout_s=RECOVERY_BOUND_S)
    assert time.monotonic() - up < 2 * RECOVERY_BOUND_S
    room.wait_for_selector("[data-testid=hand-status][data-student=李华]")
    teacher.wait_for_selector("[data-testid=hand][data-student=李华]")
    teacher.wait_for_selector("[data-testid=classroom-row][data-online=true]")
