"""A real classroom page through the kill of its lesson's node, or of its relay worker
(issue 20, item 4).

What holds on a busy machine is asserted here: with its WebSocket on the surviving node
(it offers again on `media_moved`) or on the killed one (it reconnects, through one
address in front of both nodes), the page shows the teacher's camera again, on a new peer
connection, without a click; its hand and place in the queue are kept; the recording goes
on in a second segment. The tight figures come from `python -m scripts.bench_failover`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import run_script

# Generous: the benchmark measures 3-6 s on a machine loaded well past its two cores.
RECOVERY_BOUND_S = 30.0


@pytest.mark.e2e
@pytest.mark.timeout(300)
@pytest.mark.skipif(
    shutil.which("redis-server") is None or not Path("/usr/bin/chromium").exists(),
    reason="needs redis-server and Debian's chromium",
)
def test_the_page_shows_the_teacher_again_after_its_lessons_node_is_killed() -> None:
    result = run_script("scripts.bench_failover", "--runs", "1", timeout_s=280)
    assert {run["ws_on"] for run in result["runs"]} == {"survivor", "dead", "worker"}
    for run in result["runs"]:
        back = run["video_back_s"]
        assert back is not None and back < RECOVERY_BOUND_S, run
        assert run["rejoined"] and run["hand_kept"] and run["queue_kept"], run
        assert run["recording_segments"] == ["interrupted", "recording"], run
        if run["ws_on"] == "survivor":
            assert run["teacher_told_media_moved_s"] is not None, run
