"""The lesson as an edge relay pulls it: every layer of every lesson slot, one m-line each.

A county edge relay (docs/architecture.md, "Scale") serves village classrooms that
each choose their own layer, from their own feedback, as classrooms of the origin
do. It can only do that without encoding again if it receives every layer as it
is: the origin sends it one encoded stream per layer, each on its own m-line (its
own SSRC), in the fixed order below, and the edge hands each stream on to its
classrooms as the origin's layers hand theirs (media.pipeline.relayed).

The order is the protocol between the two relays: the edge's offer has these
m-lines, all `recvonly`, and each side names a line by its place in `FEED`.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.pipeline.encoders import VideoLayerSpec
from media.pipeline.ladder import CAMERA_LAYERS, SLIDES_LAYERS
from media.slots import Kind, Slot, SlotSpec


@dataclass(frozen=True)
class FeedLine:
    """One layer of one lesson slot, as the edge receives it."""

    slot: Slot
    layer: str
    kind: Kind

    @property
    def layer_spec(self) -> VideoLayerSpec | None:
        """What the origin encodes this layer to (None for audio): the edge's allocator
        costs a layer by it until the layer's packets have been measured."""
        if self.kind != "video":
            return None
        specs = SLIDES_LAYERS if self.slot is Slot.SLIDES else CAMERA_LAYERS
        return next(spec for spec in specs if spec.name == self.layer)

    @property
    def spec(self) -> SlotSpec:
        # As the edge (the offerer) sees it: it receives.
        return SlotSpec(self.slot, self.kind, "recvonly")


def _video(slot: Slot, names: tuple[str, ...]) -> tuple[FeedLine, ...]:
    return tuple(FeedLine(slot, name, "video") for name in names)


_CAMERA = tuple(spec.name for spec in CAMERA_LAYERS)
_SLIDES = tuple(spec.name for spec in SLIDES_LAYERS)

FEED: tuple[FeedLine, ...] = (
    *_video(Slot.TEACHER_CAMERA, _CAMERA),
    FeedLine(Slot.TEACHER_AUDIO, "high", "audio"),
    *_video(Slot.SLIDES, _SLIDES),
    # The classroom on stage: a camera's ladder (media.relay.relay._ladder).
    *_video(Slot.STAGE_VIDEO, _CAMERA),
    FeedLine(Slot.STAGE_AUDIO, "high", "audio"),
)
FEED_SPECS: tuple[SlotSpec, ...] = tuple(line.spec for line in FEED)
# How the edge's offer is named in the messages that refuse it.
FEED_OFFERER = "edge relay's"


def layers_of(slot: Slot) -> tuple[str, ...]:
    """The layers of `slot` the feed carries, highest first."""
    return tuple(line.layer for line in FEED if line.slot is slot)


def fed_slots() -> tuple[Slot, ...]:
    """The lesson slots the feed carries, in its order."""
    return tuple(dict.fromkeys(line.slot for line in FEED))
