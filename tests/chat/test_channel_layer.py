"""The configured channel layer (in-memory by default, Redis when REDIS_URL is set) keeps the two
promises the consumer relies on: a cancelled send raises, and an idle socket's receive keeps waiting."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

redis_only = pytest.mark.skipif(not settings.REDIS_URL, reason="REDIS_URL is not set (the in-memory layer has no socket)")


@pytest.fixture
async def layer():
    layer = get_channel_layer()
    yield layer
    if hasattr(layer, "flush"):
        await layer.flush()


async def test_a_cancel_during_group_send_always_raises(layer):
    """Stop cancels the run while it broadcasts; a lost cancel would let the completion run on.
    (redis-py 8's default socket timeout sends through asyncio.wait_for, which on Python 3.11
    swallowed about two cancels in three here.)"""
    channel = await layer.new_channel()
    await layer.group_add("cancel-check", channel)
    outcomes = []
    for trial in range(40):
        give_up = False

        async def broadcast():
            while not give_up:  # (a lost cancel would otherwise keep this task alive)
                await layer.group_send("cancel-check", {"type": "x", "html": "a" * 200})

        task = asyncio.create_task(broadcast())
        await asyncio.sleep(0.0003 * trial)  # land the cancel at varied points of a send
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
        outcomes.append(task in done and task.cancelled())
        give_up = True
        await asyncio.wait([task], timeout=2)
    assert all(outcomes), f"{outcomes.count(False)} of {len(outcomes)} cancels were lost"


@redis_only
async def test_an_idle_receive_outlives_the_blocking_pop(layer):
    """channels-redis blocks 5 s per BZPOPMIN; with redis-py 8's 5 s read timeout every idle socket
    failed right there (django/channels_redis#422)."""
    channel = await layer.new_channel()
    receiving = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(layer.brpop_timeout + 1)
    assert not receiving.done(), receiving.exception()
    await layer.send(channel, {"type": "late.message"})
    assert (await asyncio.wait_for(receiving, 5))["type"] == "late.message"
