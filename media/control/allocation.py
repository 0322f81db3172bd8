"""Which layer on which slot, for a budget: the pure planning under the allocator.

`allocate()` answers "given this budget, which layer on which slot", serving slots
in priority order; `next_step()` is one layer better somewhere, for a probe;
`rank()` and `raises()` compare two allocations. media.control.allocator adds the
hysteresis and the probes around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OFF = "off"


@dataclass(frozen=True)
class SlotOffer:
    """What one outgoing slot can carry: its layers, cheapest first, with their cost.

    `priority`: lower is served first. `essential` slots (audio) get their cheapest
    layer even when the budget does not cover it: silence is worse than congestion.
    Costs are in kbit/s, ideally measured from the layer's recent output.
    """

    slot: str
    priority: int
    layers: tuple[tuple[str, float], ...]
    essential: bool = False
    # The cheapest layer may use all of the estimate, not only what the headroom
    # leaves (slides at two frames a second keep the lesson readable on a bad link).
    # Such a slot climbs last, and only on a budget of `climb_min_kbps` or more.
    floor: bool = False
    climb_min_kbps: float = 0.0
    # The cheapest `reserve` layers are the slot's last resort (the camera at half its
    # frame rate): a dip of the estimate does not take it down to them (Allocator).
    reserve: int = 0


Allocation = dict[str, str]


def cost(allocation: Allocation, offers: Sequence[SlotOffer]) -> float:
    total = 0.0
    for offer in offers:
        layer = allocation.get(offer.slot, OFF)
        total += dict(offer.layers).get(layer, 0.0)
    return total


def allocate(
    budget_kbps: float, offers: Sequence[SlotOffer], floor_kbps: float | None = None
) -> Allocation:
    """The best allocation within a budget, slots served in priority order.

    First every slot gets its cheapest layer, in priority order, while the budget
    lasts (a `floor` slot may use up to `floor_kbps` instead), so a tight link
    keeps audio, then audio + slides; then slots climb to their best layer within
    the budget, again in priority order, `floor` slots last (`_climbing`).
    """
    ordered = sorted(offers, key=lambda o: o.priority)
    chosen: dict[str, int] = {}
    left = budget_kbps
    left_floor = budget_kbps if floor_kbps is None else max(floor_kbps, budget_kbps)
    for offer in ordered:
        if not offer.layers:
            continue
        cheapest = offer.layers[0][1]
        if offer.essential or cheapest <= (left_floor if offer.floor else left):
            chosen[offer.slot] = 0
            left -= cheapest
            left_floor -= cheapest
    for offer in _climbing(ordered, budget_kbps):
        index = chosen.get(offer.slot)
        if index is None:
            continue
        if offer.floor and any(o.slot not in chosen for o in ordered if o.layers and not o.floor):
            # Slides at five frames a second instead of two are worth less than
            # the teacher's face moving at all: they climb once the others are on.
            continue
        base = offer.layers[index][1]
        for better in range(len(offer.layers) - 1, index, -1):
            extra = offer.layers[better][1] - base
            if extra <= left:
                chosen[offer.slot] = better
                left -= extra
                break
    return {o.slot: (o.layers[chosen[o.slot]][0] if o.slot in chosen else OFF) for o in offers}


def _climbing(ordered: Sequence[SlotOffer], budget_kbps: float) -> list[SlotOffer]:
    """The slots that may climb, in the order they do: by priority, `floor` slots
    last and only on a budget of their `climb_min_kbps`.

    The floor is slides at two frames a second; five are worth less than the
    teacher's face at full rate, and each switch between the two costs a keyframe
    of the whole page. On geo's 256 kbit/s the slides climbed whenever the
    estimate allowed, the keyframe's queue brought the estimate down a third a
    second later, and the way down kept the slides and took the camera to its
    lowest frame rate: four times a minute."""
    return [o for o in ordered if not o.floor] + [
        o for o in ordered if o.floor and budget_kbps >= o.climb_min_kbps
    ]


def raises(better: Allocation, current: Allocation, offers: Sequence[SlotOffer]) -> bool:
    """Whether `better` is one layer or more up somewhere and down nowhere. An
    "up" that turns one slot off for another's higher layer is a flap: seen on
    the step profile, a camera just probed on was switched off two seconds later
    for the slides' high layer, and probed on again after that."""
    ups = rank(better, offers)
    now = rank(current, offers)
    return ups != now and all(u >= n for u, n in zip(ups, now, strict=True))


def rank(allocation: Allocation, offers: Sequence[SlotOffer]) -> tuple[int, ...]:
    """Comparable quality of an allocation: layer indexes in priority order (-1 = off)."""
    out = []
    for offer in sorted(offers, key=lambda o: o.priority):
        names = [name for name, _ in offer.layers]
        layer = allocation.get(offer.slot, OFF)
        out.append(names.index(layer) if layer in names else -1)
    return tuple(out)


def next_step(
    allocation: Allocation, offers: Sequence[SlotOffer], ceiling_kbps: float
) -> Allocation | None:
    """One layer better on one slot, the first whose step fits `ceiling_kbps`.

    The order is `allocate()`'s: first a slot that is off gets its cheapest layer
    (in priority order), then slots climb (in priority order, `floor` slots last
    and only if `ceiling_kbps` reaches their `climb_min_kbps`). A classroom that
    speaks is seen at a low quality before the teacher's face reaches a high one.
    """
    ordered = sorted(offers, key=lambda o: o.priority)
    turn_on = [o for o in ordered if allocation.get(o.slot, OFF) == OFF]
    climb = [o for o in _climbing(ordered, ceiling_kbps) if allocation.get(o.slot, OFF) != OFF]
    for offer in turn_on + climb:
        names = [name for name, _ in offer.layers]
        layer = allocation.get(offer.slot, OFF)
        index = names.index(layer) if layer in names else -1
        if index + 1 < len(names):
            step = {**allocation, offer.slot: names[index + 1]}
            if cost(step, offers) <= ceiling_kbps:
                return step
    return None
