"""One encoder per layer, on PyAV directly: frames in, `av.Packet`s out.

The packets carry the *source's* clock (pts in 1/90000 for video, 1/48000 for
audio), whatever the layer's size: a subscriber switching layer keeps a
continuous RTP timestamp line, so its decoder sees no jump.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av
from av.audio.resampler import AudioResampler
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from media.wire.rates import AUDIO_CLOCK_RATE, AUDIO_TIME_BASE, VIDEO_TIME_BASE

# 40 ms packets (RFC 7587 §4.2 allows up to 120): half the packets of WebRTC's
# usual 20 ms. Each packet costs the relay its packetizing and SRTP for every
# classroom, and a weak link 12 kbit/s of headers; a lecture does not notice
# 20 ms more delay, and RED still covers one lost packet.
OPUS_FRAME_SAMPLES = 1920


@dataclass(frozen=True)
class VideoLayerSpec:
    name: str
    width: int
    height: int
    bitrate: int
    max_fps: float | None = None
    # What the layer usually costs, before it has been measured (bit/s). Camera
    # content fills its target; a slide is still most of the time and costs a
    # small part of its ceiling (about 25 kbit/s at 720p measured here).
    expected_bitrate: int | None = None
    # At least this long between forced keyframes of this layer, whatever the
    # relay's default: a slide's keyframe costs many seconds of its usual rate.
    min_keyframe_interval_s: float = 0.0
    # libvpx skips blocks whose change is below this. Slides reach the relay through
    # the teacher's own encoder, so a still page is never quite identical frame to
    # frame; at 300 a 720p page costs 38 kbit/s at 5 fps instead of 125 (measured).
    static_thresh: int = 1

    def fit(self, source_width: int, source_height: int) -> tuple[int, int]:
        """The layer's size for a given source: within the spec's box, aspect kept,
        never larger than the source (upscaling spends bits on nothing)."""
        scale = min(1.0, self.width / source_width, self.height / source_height)
        # VP8 with yuv420p wants even dimensions.
        width = max(2, int(source_width * scale) // 2 * 2)
        height = max(2, int(source_height * scale) // 2 * 2)
        return width, height

    def bitrate_for(self, width: int, height: int) -> int:
        """The spec's bitrate, scaled down when the source is smaller than the box.

        With the square root of the pixel ratio: smaller pictures need more bits per
        pixel for the same quality (a 640x360 source on the 720p layer gets 600 kbit/s).
        """
        ratio = min(1.0, (width * height) / (self.width * self.height))
        return int(self.bitrate * ratio**0.5)


class VideoEncoder:
    """VP8 (RFC 7741) with settings for real time: no lag, CBR, fast."""

    def __init__(self, spec: VideoLayerSpec) -> None:
        self.spec = spec
        # Each encoder scales with its own reformatter. VideoFrame.reformat() keeps
        # one scaler on the frame itself, and the layers of a ladder scale the same
        # decoded frame to different sizes in different threads at once: sharing
        # that scaler corrupted the heap (segfaults in libswscale, reproduced).
        self._reformatter = VideoReformatter()
        self._codec: av.VideoCodecContext | None = None
        self._source_size: tuple[int, int] | None = None
        self._closed = False

    def close(self) -> None:
        """Let libvpx go now (its buffers, its threads): the layer that owns this
        encoder sits in reference cycles (the relay's callbacks, aiortc's peer
        connection) that only the cyclic collector frees, and in a server with a
        large heap that is minutes later. An encode still running keeps its own
        reference and finishes."""
        self._closed = True
        self._codec = None

    def _open(self, width: int, height: int) -> av.VideoCodecContext:
        codec = av.CodecContext.create("libvpx", "w")
        assert isinstance(codec, av.VideoCodecContext)
        codec.width = width
        codec.height = height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        bitrate = self.spec.bitrate_for(width, height)
        codec.bit_rate = bitrate
        # A keyframe every 20 s as a safety net; receivers get theirs on request.
        codec.gop_size = 300
        codec.qmin = 2
        codec.qmax = 56
        codec.thread_count = 2 if width * height > 640 * 480 else 1
        codec.options = {
            # minrate = maxrate = bit_rate: CBR, as aiortc's own VP8 encoder does.
            "bufsize": str(bitrate),
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "deadline": "realtime",
            "cpu-used": "-8",
            "lag-in-frames": "0",
            "noise-sensitivity": "0",
            "overshoot-pct": "15",
            "undershoot-pct": "100",
            "static-thresh": str(self.spec.static_thresh),
            "partitions": "0",
        }
        return codec

    def encode(self, frame: av.VideoFrame, force_keyframe: bool) -> list[av.Packet[Any]]:
        """Encode one source frame (run in a worker thread: libvpx releases the GIL).

        `frame` may be shared with other layers' encoders: it is never modified.
        """
        if self._closed:
            return []
        size = (frame.width, frame.height)
        if self._codec is None or size != self._source_size:
            width, height = self.spec.fit(*size)
            self._codec = self._open(width, height)
            self._source_size = size
        codec = self._codec
        scaled = self._reformatter.reformat(
            frame, width=codec.width, height=codec.height, format="yuv420p"
        )
        if force_keyframe:
            if scaled is frame:
                # Never mark the shared frame: copy it (at most once a second).
                # to_ndarray() without arguments reads the planes, no scaler.
                scaled = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
            scaled.pict_type = PictureType.I
        scaled.pts = frame.pts
        scaled.time_base = VIDEO_TIME_BASE
        packets = list(codec.encode(scaled))
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
        return packets


class AudioEncoder:
    """Opus (RFC 7587), mono, voice mode, in-band FEC against the classrooms' loss."""

    def __init__(self, bitrate: int = 28000, expected_loss_pct: int = 10) -> None:
        codec = av.CodecContext.create("libopus", "w")
        assert isinstance(codec, av.AudioCodecContext)
        codec.sample_rate = AUDIO_CLOCK_RATE
        codec.layout = "mono"
        codec.format = "s16"
        codec.bit_rate = bitrate
        codec.time_base = AUDIO_TIME_BASE
        # FEC (RFC 6716 §2.1.7) is only spent when the encoder expects loss.
        codec.options = {
            "application": "voip",
            "frame_duration": "40",
            "fec": "1",
            "packet_loss": str(expected_loss_pct),
        }
        self._codec = codec
        self._resampler = AudioResampler(
            format="s16", layout="mono", rate=AUDIO_CLOCK_RATE, frame_size=OPUS_FRAME_SAMPLES
        )
        self._next_pts: int | None = None

    def encode(self, frame: av.AudioFrame, pts: int) -> list[av.Packet[Any]]:
        """Encode one decoded frame whose first sample is at `pts` (source clock, 1/48000).

        Output packets are stamped on that clock, one packet time (40 ms) apart; a gap in
        the input (lost packets) moves the clock on rather than squeezing time.
        """
        out: list[av.Packet[Any]] = []
        if self._next_pts is None or pts - self._next_pts > 2 * OPUS_FRAME_SAMPLES:
            self._next_pts = pts
        # The resampler's FIFO insists on gapless pts; ours are set on the way out.
        frame.pts = None
        for chunk in self._resampler.resample(frame):
            for packet in self._codec.encode(chunk):
                packet.pts = self._next_pts
                packet.dts = self._next_pts
                packet.time_base = AUDIO_TIME_BASE
                self._next_pts += OPUS_FRAME_SAMPLES
                out.append(packet)
        return out
