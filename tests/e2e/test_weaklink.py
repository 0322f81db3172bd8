"""A classroom behind an emulated satellite link, end to end (scripts/bench_weaklink.py).

The long profiles are benchmark runs; this one short case checks that the whole
path works as a classroom meets it: Chromium in its own namespace, every packet
through the geo link (256 kbit/s, 300 ms each way, 1 % loss), transport-wide
congestion control negotiated with the browser and fed by its feedback, figures
from the page's own getStats().
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import run_script

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.netns,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or not Path("/usr/bin/chromium").exists(),
        reason="needs root, iproute2 and Debian's chromium",
    ),
]


def test_a_satellite_classroom_hears_the_teacher_and_reads_the_slides() -> None:
    result = run_script(
        "scripts.bench_weaklink", "--profile", "geo", "--seconds", "20", timeout_s=240
    )
    # The teacher's voice arrives: Opus at ~24 kbit/s, not mostly concealment.
    assert result["audio_kbps"] > 15
    assert result["audio_concealed_ratio"] < 0.2
    # Slides keep coming at full resolution over a 256 kbit/s link.
    assert result["slides_full_res_fps"] > 0.5
    # Chromium sent transport feedback for what the relay sent it, and the relay
    # estimated the link from it (media.adapter.twcc, media.control.sendside).
    log = (Path(result["artifacts"]) / "server.log").read_text()
    assert "transport feedback arrives: the estimate is the relay's own" in log
    # And it really went through the emulated link, which dropped what it should.
    down = result["link"]["down"]
    assert down["delivered"] > 500
    assert down["lost_random"] > 0
    # Kept for reading only when an assertion above failed.
    shutil.rmtree(result["artifacts"], ignore_errors=True)
