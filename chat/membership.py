"""Group memberships that last as long as the socket.

A channel layer forgets a group member `group_expiry` seconds after it joined (channels-redis: one
hour in playground/settings.py; the in-memory layer: a day), and nothing tells the socket. A page
left open longer would silently stop receiving a teammate's live answers and, worse, the access
re-checks that close it when its user loses access (chat.sharing). So each socket joins its groups
again well before they would expire, until it leaves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)

RENEWALS_PER_EXPIRY = 4  # a renewal may fail (Redis restarting) and the next one still comes in time


def renew_interval(layer) -> float:
    return max(0.05, getattr(layer, "group_expiry", 86400) / RENEWALS_PER_EXPIRY)


class Memberships:
    """One channel's groups on one layer: `join()` them, renewed in the background, until `leave()`."""

    def __init__(self, layer, channel: str, groups: list[str]) -> None:
        self.layer, self.channel, self.groups = layer, channel, list(groups)
        self.task: asyncio.Task | None = None

    async def join(self) -> None:
        for group in self.groups:
            await self.layer.group_add(group, self.channel)
        self.task = asyncio.create_task(self._renew())

    async def leave(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()  # without waiting: the first thing awaited is leaving (a run detached from
            # this socket reads the group next, and must not find this channel still there)
        for group in self.groups:
            await self.layer.group_discard(group, self.channel)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew(self) -> None:
        interval = renew_interval(self.layer)
        while True:
            await asyncio.sleep(interval)
            for group in self.groups:
                try:
                    await self.layer.group_add(group, self.channel)  # a new join time: the clock restarts
                except Exception:  # the next renewal retries; the membership still has time left
                    log.warning("could not renew %s's membership of %s", self.channel, group, exc_info=True)
