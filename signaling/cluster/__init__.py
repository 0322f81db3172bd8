"""Several `classroom serve` nodes sharing lessons through Redis (`CLASSROOM_REDIS_URL`).

Without it nothing here is imported: one process, SQLite, the in-process bus.
`join()` connects a node and builds what the app uses in place of the defaults: the
lessons (`ClusterLessons`, over the Redis bus and event log) and the media gateway
(`ClusterMedia`, which sends an offer to the lesson's node).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from redis import Redis as SyncRedis
from redis.asyncio import Redis

from media.gateway import MediaGateway
from signaling.cluster.lessons import ClusterLessons
from signaling.cluster.media import ClusterMedia
from signaling.cluster.node import HEARTBEAT_S, NODE_TTL_S, Node
from signaling.metrics import Metrics
from signaling.store import Store

# Observers' viewers are numbered from the node's own number times this: two nodes
# never give one lesson's relay the same viewer.
VIEWERS_PER_NODE = 1_000_000


@dataclass
class Cluster:
    node: Node
    lessons: ClusterLessons
    media: ClusterMedia

    def viewer_numbers(self) -> Iterator[int]:
        return itertools.count(self.node.number * VIEWERS_PER_NODE + 1)

    async def alone(self) -> bool:
        """No other node is alive (the recordings a dead cluster left may be repaired)."""
        return not await self.node.others_alive()

    async def close(self) -> None:
        await self.lessons.close()
        await self.node.close()


async def join(
    redis_url: str,
    store: Store,
    media: MediaGateway,
    now: Callable[[], float],
    metrics: Metrics,
    max_catch_up: int,
    *,
    ttl_s: float = NODE_TTL_S,
    beat_s: float = HEARTBEAT_S,
) -> Cluster:
    node = Node(
        Redis.from_url(redis_url, decode_responses=True),
        SyncRedis.from_url(redis_url, decode_responses=True, socket_timeout=beat_s * 2),
        ttl_s=ttl_s,
        beat_s=beat_s,
    )
    await node.start()
    lessons = ClusterLessons(store, node, media, now, metrics, max_catch_up)
    lessons.start()
    return Cluster(node, lessons, ClusterMedia(media, node))
