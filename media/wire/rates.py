"""The media clocks: RTP timestamps count these (RFC 3550 §5.1, RFC 7741, RFC 7587).

Every packet the relay encodes carries its source's clock in these units, whatever
the layer, so the packers, the recorder and the encoders agree on one time line.
"""

from __future__ import annotations

import fractions

# VP8 over RTP uses a 90 kHz clock (RFC 7741 §4.1).
VIDEO_CLOCK_RATE = 90000
# Opus over RTP always uses 48 kHz, whatever it encodes (RFC 7587 §4.1).
AUDIO_CLOCK_RATE = 48000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_CLOCK_RATE)
