"""When a layer's encoder should produce a keyframe: requests merged, rate-limited.

Receivers ask for keyframes with PLI (RFC 4585 §6.3.1) or FIR (RFC 5104 §4.3.1);
subscribers that join or switch layer ask too. With dozens of classrooms on lossy
links the requests arrive in storms; each keyframe costs several times a delta
frame of bandwidth on *every* receiver of the layer, so all requests inside one
interval are merged into a single keyframe. Pure: the caller passes the time.
"""

from __future__ import annotations


class KeyframeGate:
    def __init__(self, min_interval_s: float) -> None:
        self._min_interval_s = min_interval_s
        self._pending = False
        self._last_keyframe_at: float | None = None

    @property
    def pending(self) -> bool:
        return self._pending

    def request(self) -> None:
        """Someone needs a keyframe; it will come with the next frame the gate allows."""
        self._pending = True

    def should_force(self, now: float) -> bool:
        """Whether the frame about to be encoded at `now` must be a keyframe."""
        if not self._pending:
            return False
        last = self._last_keyframe_at
        return last is None or now - last >= self._min_interval_s

    def on_keyframe(self, now: float) -> None:
        """A keyframe went out (forced or not): it answers every request so far."""
        self._pending = False
        self._last_keyframe_at = now
