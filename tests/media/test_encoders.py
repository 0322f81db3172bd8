"""Layer encoders sharing one decoded frame across threads, as a ladder runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Every layer of a ladder scales the same decoded frame to its own size in its own
# thread. PyAV keeps a scaler on the frame itself (VideoFrame.reformat): shared, it
# crashed the server (heap corruption in libswscale). Run in a child process so that
# a crash fails this test instead of ending the test run.
STRESS = r"""
import sys, threading
import av, numpy as np
from media.pipeline.encoders import VideoEncoder
from media.pipeline.ladder import CAMERA_LAYERS, SLIDES_LAYERS
rng = np.random.default_rng(3)
frames = [
    av.VideoFrame.from_ndarray(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8), format="rgb24")
    .reformat(format="yuv420p")
    for _ in range(12)
]
def work(encoder):
    for i in range(150):
        frame = frames[i % len(frames)]
        frame.pts = i * 6000
        encoder.encode(frame, i % 30 == 0)
threads = [threading.Thread(target=work, args=(VideoEncoder(s),)) for s in CAMERA_LAYERS + SLIDES_LAYERS]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok")
"""


def test_layers_encode_one_shared_frame_in_parallel_without_crashing() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STRESS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "ok"
