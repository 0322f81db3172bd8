"""media.relay.sending.LayerTimes: seconds per layer of an outgoing slot, from its switches."""

from __future__ import annotations

from media.relay.sending import LayerTimes


def test_seconds_per_layer_add_up_over_switches_and_the_current_layer() -> None:
    times = LayerTimes()
    times.switch("off", 100.0)
    times.switch("high", 101.0)
    times.switch("min", 131.0)
    times.switch("high", 136.0)
    assert times.totals(146.0) == {"off": 1.0, "high": 40.0, "min": 5.0}
    # Reading them changes nothing: the current layer's time runs on.
    assert times.totals(150.0)["high"] == 44.0


def test_before_any_switch_there_is_nothing_to_count() -> None:
    assert LayerTimes().totals(10.0) == {}
