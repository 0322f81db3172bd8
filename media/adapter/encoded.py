"""A receiver whose encoded frames are handed over as they are, not decoded.

An edge relay (media.relay.upstream) receives each layer of the origin's lesson
already encoded for classrooms: decoding it to encode it again would cost what
the origin spent, once more per edge, and lose quality. aiortc's receiver
reassembles each frame in its jitter buffer and puts it on a queue that its
decoder thread reads; `tap_encoded` puts an object in that queue's place whose
`put` hands each frame to a callback on the event loop, and passes on only the
stop mark, so the decoder thread starts, waits, and ends as before without ever
decoding. Must be called before the receiver starts (before the answer is applied).
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver

# The name aiortc's receiver keeps its decoder's input queue under (Python's name
# mangling of `__decoder_queue`); tests/media/test_aiortc_internals.py checks it.
DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"

# Called with a reassembled frame's bytes and its RTP timestamp (counted from the
# stream's first frame, as aiortc's receiver maps it).
OnFrame = Callable[[bytes, int], None]


class _Tap:
    """Stands for the decoder's queue: frames go to `on_frame`, the stop mark on."""

    def __init__(self, on_frame: OnFrame) -> None:
        self._on_frame = on_frame
        self._control: queue.Queue[Any] = queue.Queue()

    def put(self, item: Any) -> None:
        if item is None:
            self._control.put(None)
            return
        _codec, frame = item
        self._on_frame(bytes(frame.data), int(frame.timestamp))

    def get(self) -> Any:
        return self._control.get()


def tap_encoded(receiver: RTCRtpReceiver, on_frame: OnFrame) -> None:
    """Hand `receiver`'s encoded frames to `on_frame` instead of its decoder."""
    if not hasattr(receiver, DECODER_QUEUE):
        raise RuntimeError("aiortc's receiver has no decoder queue to tap (version changed?)")
    setattr(receiver, DECODER_QUEUE, _Tap(on_frame))


async def request_keyframe(receiver: RTCRtpReceiver) -> None:
    """Ask the sender for a keyframe (PLI, RFC 4585 §6.3.1) on each stream it sends us."""
    streams: dict[int, Any] = getattr(receiver, REMOTE_STREAMS, {})
    for ssrc in list(streams):
        await receiver._send_rtcp_pli(ssrc)
