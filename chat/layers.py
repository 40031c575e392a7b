"""The Redis channel layer: channels-redis's, with a connection pool that waits and a membership count.

- **A pool that waits.** channels-redis makes a plain redis-py pool, which raises
  `MaxConnectionsError: Too many connections` once `max_connections` commands are in flight at
  once (redis-py's default of 100 broke at 100 streams). Here the pool blocks instead: a command
  waits for a free connection (up to `pool_timeout` seconds). Every command holds a connection for
  one round trip, except the one receive per process that blocks on BZPOPMIN, so a pool of
  `max_connections` (REDIS_MAX_CONNECTIONS) serves any number of open sockets.
- **Locks of one event loop.** channels-redis keeps the locks that order a channel's receive and
  its clean-up in one table for every loop; a lock left held by a loop that closed (a test's)
  broke the next loop's receive ("bound to a different event loop"). Here each loop has its own.
  (A server has one loop; test runs make one per test.)
- **Who is in a group.** `others_in_groups` counts, for each (group, own channel), the other
  channels in the group's sorted set (one pipelined round trip per Redis host), so a run sends its
  fragments through Redis only while someone else is there to read them (chat.live).
"""

from __future__ import annotations

import asyncio
import time

from channels_redis import core
from redis import asyncio as aioredis


class RedisChannelLayer(core.RedisChannelLayer):
    def __init__(self, hosts=None, max_connections: int = 100, pool_timeout: float = 20.0, **kwargs) -> None:
        self._clean_locks: dict[asyncio.AbstractEventLoop, core.ChannelLock] = {}
        super().__init__(hosts=hosts, **kwargs)
        if max_connections < 2:  # one receive blocks on BZPOPMIN: sends need at least one more
            raise ValueError("max_connections must be at least 2")
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout

    @property
    def receive_clean_locks(self) -> core.ChannelLock:
        loop = asyncio.get_running_loop()
        locks = self._clean_locks.get(loop)
        if locks is None:
            for closed in [other for other in self._clean_locks if other.is_closed()]:
                del self._clean_locks[closed]
            locks = self._clean_locks[loop] = core.ChannelLock()
        return locks

    @receive_clean_locks.setter
    def receive_clean_locks(self, value) -> None:  # channels-redis's __init__ sets one for all loops
        pass

    def create_pool(self, index):
        host = dict(self.hosts[index])
        if "address" not in host:  # sentinels and other shapes: channels-redis's own pool
            return super().create_pool(index)
        address = host.pop("address")
        return aioredis.BlockingConnectionPool.from_url(
            address, max_connections=self.max_connections, timeout=self.pool_timeout, **host
        )

    async def others_in_groups(self, members: list[tuple[str, str]]) -> list[int]:
        """For each (group, channel): how many channels other than `channel` the group holds now
        (members older than group_expiry left out, as group_send leaves them out)."""
        cutoff = f"({int(time.time()) - self.group_expiry}"
        by_host: dict[int, list[int]] = {}
        for i, (group, _) in enumerate(members):
            by_host.setdefault(self.consistent_hash(group), []).append(i)
        counts = [0] * len(members)
        for index, positions in by_host.items():
            pipe = self.connection(index).pipeline(transaction=False)
            for i in positions:
                group, channel = members[i]
                key = self._group_key(group)
                pipe.zcount(key, cutoff, "+inf")
                pipe.zscore(key, channel)
            replies = await pipe.execute()
            for n, i in enumerate(positions):
                total, own = replies[2 * n], replies[2 * n + 1]
                counts[i] = total - (1 if own is not None and own > float(cutoff[1:]) else 0)
        return counts
