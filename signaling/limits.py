"""Limits that hold across connections: token buckets and connection slots, by key.

Pure bookkeeping, no I/O and no clock of its own: every call is given `now` (seconds),
so a table of (time, key) -> allowed tests it without sleeping. The keys are chosen by
the callers (signaling.ws, signaling.app): a participant ("lesson/participant") for
what a token does, a source address for what anyone does before showing one.

Memory is bounded: a table forgets its least recently used keys past `max_keys`. A
forgotten bucket comes back full, which an attacker with more than `max_keys` source
addresses could use; the per-connection limits still hold for it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


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
    """The numbers (docs/protocol.md, "Limits"), in one place."""

    # WebSocket messages of one participant (token subject), all its connections together:
    # a participant that reconnects in a loop does not get a fresh budget each time.
    participant_messages: Rate = Rate(burst=40, per_s=10)
    # The observer link is shared by many viewers (inspectors, parents, a class of
    # trainee teachers): a larger budget, and more connections, for the one identity.
    observer_messages: Rate = Rate(burst=400, per_s=100)
    connections_per_participant: int = 4
    connections_per_observer_link: int = 50
    # WebSocket connections opened from one source address (before any token is seen).
    # Thirty classrooms behind one village NAT reconnecting after a restart fit in it.
    ws_opens_per_address: Rate = Rate(burst=100, per_s=20)
    # Frames sent before a join (the join itself included), from one source address.
    unjoined_messages_per_address: Rate = Rate(burst=100, per_s=20)
    # Bad input on one connection (unparsable, invalid, refused as rate_limited or
    # not_joined): a burst of mistakes is forgiven; a stream of them closes it.
    bad_input_per_connection: Rate = Rate(burst=20, per_s=0.5)
    # HTTP, per source address: wrong credentials (admin key, tokens, replay links) and
    # wrong join codes each get their own budget; requests that create something
    # (a lesson, a token by join code, a share link) another.
    wrong_credentials_per_address: Rate = Rate(burst=20, per_s=20 / 60)
    wrong_join_codes_per_address: Rate = Rate(burst=10, per_s=10 / 60)
    creations_per_address: Rate = Rate(burst=60, per_s=2)


@dataclass
class Limits:
    """The live tables of one app, built from a Policy."""

    policy: Policy = field(default_factory=Policy)
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
