"""The relay's own load (media.control.overload): levels from its lateness, by table,
on a hand clock."""

from __future__ import annotations

import pytest

from media.control.overload import CALM_S, SAMPLE_S, WINDOW_S, Load, LoadGauge


def run(gauge: LoadGauge, late_ms: list[float], start_s: float = 0.0) -> list[Load]:
    levels = []
    for i, late in enumerate(late_ms):
        gauge.sample(late, start_s + i * SAMPLE_S)
        levels.append(gauge.level)
    return levels


@pytest.mark.parametrize(
    ("late_ms", "level"),
    [
        ([0.0] * 50, Load.OK),
        ([5.0, 30.0, 12.0] * 20, Load.OK),  # an ordinary busy loop
        ([0.0] * 10 + [900.0], Load.OK),  # one pause is not a load
        ([0.0] * 10 + [60.0, 0.0, 70.0, 0.0, 80.0], Load.STRAINED),
        ([0.0] * 10 + [400.0, 200.0, 300.0], Load.OVERLOADED),
        ([0.0] * 10 + [400.0, 50.0, 300.0], Load.STRAINED),
    ],
)
def test_lateness_that_comes_back_sets_the_level_at_once(late_ms: list[float], level: Load) -> None:
    assert run(LoadGauge(), late_ms)[-1] is level


def test_the_level_falls_one_step_after_a_calm_spell() -> None:
    gauge = LoadGauge()
    run(gauge, [400.0] * 3)
    calm = int((WINDOW_S + CALM_S) / SAMPLE_S)
    levels = run(gauge, [0.0] * (2 * calm + 10), start_s=SAMPLE_S)
    # Held through the window and the calm spell, then one step, then the next.
    first_drop = levels.index(Load.STRAINED)
    assert first_drop * SAMPLE_S >= CALM_S
    assert Load.OK in levels[first_drop:]
    ok_at = levels.index(Load.OK)
    assert (ok_at - first_drop) * SAMPLE_S >= CALM_S - SAMPLE_S
    assert levels[-1] is Load.OK


def test_lateness_coming_back_keeps_the_level() -> None:
    gauge = LoadGauge()
    run(gauge, [200.0] * 3)
    # Late again (three times) every 4 s: never calm for 5 s.
    pattern = ([0.0] * 37 + [200.0] * 3) * 5
    assert set(run(gauge, pattern, start_s=SAMPLE_S)) == {Load.OVERLOADED}


def test_what_each_level_sheds() -> None:
    gauge = LoadGauge()
    assert (gauge.mosaic_slowdown, gauge.shed_top_layers) == (1, 0)
    run(gauge, [60.0] * 3)
    assert (gauge.mosaic_slowdown, gauge.shed_top_layers) == (2, 0)
    run(gauge, [400.0] * 3, start_s=0.3)
    assert (gauge.mosaic_slowdown, gauge.shed_top_layers) == (4, 1)
