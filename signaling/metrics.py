"""Prometheus instruments, on a registry that belongs to one app (no global state)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from media.workers.restarts import WorkerCounts

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.lessons_live = Gauge(
            "classroom_lessons_live", "Lessons scheduled or live (not ended)", registry=r
        )
        self.ws_connections = Gauge(
            "classroom_ws_connections", "Open WebSocket connections", registry=r
        )
        self.messages_in = Counter(
            "classroom_ws_messages_in", "Client messages received, by type", ["type"], registry=r
        )
        self.messages_out = Counter(
            "classroom_ws_messages_out", "Server messages sent, by type", ["type"], registry=r
        )
        self.errors = Counter(
            "classroom_ws_errors", "Error messages sent to clients, by code", ["code"], registry=r
        )
        self.dropped = Counter(
            "classroom_ws_dropped",
            "Connections closed by the server, by reason (too_slow, replaced...)",
            ["reason"],
            registry=r,
        )
        self.events = Counter(
            "classroom_lesson_events", "Lesson events recorded, by kind", ["kind"], registry=r
        )
        self.media_failures = Counter(
            "classroom_media_failures",
            "Relay calls that failed or timed out, by call",
            ["call"],
            registry=r,
        )
        self.link_reports = Counter(
            "classroom_link_reports", "Link reports received from the relay", registry=r
        )
        self.lessons_moved = Counter(
            "classroom_lessons_moved",
            "Lessons this node adopted from a node that died (adopted), or let go to the "
            "node that adopted them while it was stalled (given_up)",
            ["how"],
            registry=r,
        )
        self.relay_load = Gauge(
            "classroom_relay_load",
            "The relay's own load as its last report said: 0 ok, 1 strained, 2 overloaded",
            registry=r,
        )

        # The process's memory, open files and CPU (process_*), and its asyncio tasks:
        # what a soak watches for leaks (scripts/soak.py).
        ProcessCollector(registry=r)
        self.tasks = Gauge(
            "classroom_asyncio_tasks", "asyncio tasks alive in the server's loop", registry=r
        )
        self.tasks.set_function(_task_count)
        self._relay_workers: _RelayWorkers | None = None

    def count_live_lessons(self, count: Callable[[], int]) -> None:
        self.lessons_live.set_function(lambda: float(count()))

    def count_relay_workers(self, counts: Callable[[], WorkerCounts]) -> None:
        """The relay workers' slots, as the gateway counts them (media.workers)."""
        if self._relay_workers is None:
            self._relay_workers = _RelayWorkers(counts)
            self.registry.register(self._relay_workers)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # no running loop (rendered outside the server)
        return 0.0


class _RelayWorkers(Collector):
    """Read from the gateway at each scrape: a restart is counted where it happens,
    in the gateway, which knows nothing of Prometheus."""

    def __init__(self, counts: Callable[[], WorkerCounts]) -> None:
        self._counts = counts

    def describe(self) -> Iterator[Metric]:
        return self._families(WorkerCounts(0, 0, 0, 0))

    def collect(self) -> Iterator[Metric]:
        return self._families(self._counts())

    @staticmethod
    def _families(counts: WorkerCounts) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "classroom_relay_workers", "Relay worker slots (--workers)", value=counts.slots
        )
        yield GaugeMetricFamily(
            "classroom_relay_workers_alive", "Relay workers running now", value=counts.alive
        )
        yield GaugeMetricFamily(
            "classroom_relay_workers_held_back",
            "Slots left empty for now: their worker kept dying right after its restarts",
            value=counts.held_back,
        )
        yield CounterMetricFamily(
            "classroom_relay_worker_restarts",
            "Relay workers started again in the slot of one that died",
            value=counts.restarts,
        )
