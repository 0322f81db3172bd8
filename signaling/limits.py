"""Limits that hold across connections: token buckets and connection slots, by key.

Pure bookkeeping, no I/O and no clock of its own: every call is given `now` (seconds),
so a table of (time, key) -> allowed tests it without sleeping. The keys are chosen by
the callers (signaling.ws, signaling.app): a participant ("lesson/participant") for
what a token does, a source address for what anyone does before showing one. The
numbers are the server's settings (Policy.of), so a district sets them without code.

Memory is bounded: a table forgets its least recently used keys past `max_keys`. A
forgotten bucket comes back full, which an attacker with more than `max_keys` source
addresses could use; the per-connection limits still hold for it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signaling.settings import Settings


@dataclass(frozen=True)
class Rate:
    """A burst of `burst` at once, then `per_s` a second."""

    burst: float
    per_s: float


class Bucket:
    """One token bucket: `take` spends, time refills up to the burst."""

    __slots__ = ("_at", "_left", "rate")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._left = rate.burst
        self._at = now

    def left(self, now: float) -> float:
        # A clock that steps back (a test, an NTP jump) refills nothing and takes nothing.
        elapsed = max(0.0, now - self._at)
        self._left = min(self.rate.burst, self._left + elapsed * self.rate.per_s)
        self._at = max(self._at, now)
        return self._left

    def take(self, now: float, cost: float = 1.0) -> bool:
        if self.left(now) < cost:
            return False
        self._left -= cost
        return True


class Buckets:
    """A token bucket per key, all at one rate."""

    def __init__(self, rate: Rate, max_keys: int = 10_000) -> None:
        self.rate = rate
        self._max_keys = max_keys
        self._by_key: OrderedDict[str, Bucket] = OrderedDict()

    def _bucket(self, key: str, now: float) -> Bucket:
        bucket = self._by_key.get(key)
        if bucket is None:
            bucket = self._by_key[key] = Bucket(self.rate, now)
            while len(self._by_key) > self._max_keys:
                self._by_key.popitem(last=False)
        else:
            self._by_key.move_to_end(key)
        return bucket

    def take(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Spend `cost` of `key`'s bucket if it holds that much; whether it did."""
        return self._bucket(key, now).take(now, cost)

    def left(self, key: str, now: float) -> float:
        bucket = self._by_key.get(key)
        return self.rate.burst if bucket is None else bucket.left(now)

    def __len__(self) -> int:
        return len(self._by_key)


class Slots:
    """How many holders each key has, at most a cap given at each acquire."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    def acquire(self, key: str, cap: int) -> bool:
        held = self._held.get(key, 0)
        if held >= cap:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def held(self, key: str) -> int:
        return self._held.get(key, 0)


@dataclass(frozen=True)
class Policy:
    """The numbers, in one place: the server's settings (signaling.settings, where each
    is explained) as rates and caps."""

    participant_messages: Rate
    observer_messages: Rate
    connections_per_participant: int
    connections_per_observer_link: int
    ws_opens_per_address: Rate
    unjoined_messages_per_address: Rate
    bad_input_per_connection: Rate
    wrong_credentials_per_address: Rate
    wrong_join_codes_per_address: Rate
    creations_per_address: Rate

    @classmethod
    def of(cls, s: Settings) -> Policy:
        return cls(
            participant_messages=Rate(s.participant_messages_burst, s.participant_messages_per_s),
            observer_messages=Rate(s.observer_messages_burst, s.observer_messages_per_s),
            connections_per_participant=s.connections_per_participant,
            connections_per_observer_link=s.connections_per_observer_link,
            ws_opens_per_address=Rate(s.ws_opens_burst, s.ws_opens_per_s),
            unjoined_messages_per_address=Rate(
                s.unjoined_messages_burst, s.unjoined_messages_per_s
            ),
            bad_input_per_connection=Rate(s.bad_input_burst, s.bad_input_per_s),
            wrong_credentials_per_address=Rate(
                s.wrong_credentials_burst, s.wrong_credentials_per_min / 60
            ),
            wrong_join_codes_per_address=Rate(
                s.wrong_join_codes_burst, s.wrong_join_codes_per_min / 60
            ),
            creations_per_address=Rate(s.creations_burst, s.creations_per_s),
        )


@dataclass
class Limits:
    """The live tables of one app, built from a Policy."""

    policy: Policy
    messages: Buckets = field(init=False)
    observer_messages: Buckets = field(init=False)
    connections: Slots = field(default_factory=Slots)
    ws_opens: Buckets = field(init=False)
    unjoined_messages: Buckets = field(init=False)
    wrong_credentials: Buckets = field(init=False)
    wrong_join_codes: Buckets = field(init=False)
    creations: Buckets = field(init=False)

    def __post_init__(self) -> None:
        p = self.policy
        self.messages = Buckets(p.participant_messages)
        self.observer_messages = Buckets(p.observer_messages)
        self.ws_opens = Buckets(p.ws_opens_per_address)
        self.unjoined_messages = Buckets(p.unjoined_messages_per_address)
        self.wrong_credentials = Buckets(p.wrong_credentials_per_address)
        self.wrong_join_codes = Buckets(p.wrong_join_codes_per_address)
        self.creations = Buckets(p.creations_per_address)
