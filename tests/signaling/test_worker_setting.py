"""`CLASSROOM_WORKERS` / `classroom serve --workers`: how many relay worker processes."""

from __future__ import annotations

import os

import pytest

from signaling.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("given", "workers"), [(None, 1), ("3", 3), ("auto", None), (" AUTO ", None)]
)
def test_workers_setting(
    monkeypatch: pytest.MonkeyPatch, given: str | None, workers: int | None
) -> None:
    if given is not None:
        monkeypatch.setenv("CLASSROOM_WORKERS", given)
    else:
        monkeypatch.delenv("CLASSROOM_WORKERS", raising=False)
    assert load_settings().workers == (workers or os.cpu_count())


@pytest.mark.parametrize("given", ["0", "-1", "many"])
def test_a_workers_count_that_cannot_be_used_stops_the_start(given: str) -> None:
    with pytest.raises(SettingsError, match="--workers"):
        load_settings({"workers": given})


def test_worker_max_peers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLASSROOM_WORKER_MAX_PEERS", raising=False)
    assert load_settings().worker_max_peers == 150
    monkeypatch.setenv("CLASSROOM_WORKER_MAX_PEERS", "2")
    assert load_settings().worker_max_peers == 2


@pytest.mark.parametrize("given", ["0", "-3", "lots"])
def test_a_worker_capacity_that_cannot_be_used_stops_the_start(given: str) -> None:
    with pytest.raises(SettingsError, match="--worker-max-peers"):
        load_settings({"worker_max_peers": given})
