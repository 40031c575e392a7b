"""Redis without the round trip (issue 14): a run's fragments cross the channel layer only while
another page watches the conversation, and a page that joins mid-stream still misses nothing.

Every test runs on the configured layer: in-memory by default, Redis when REDIS_URL is set (the
in-memory layer reads its groups at each send; chat.layers.RedisChannelLayer counts the group's
members, as chat.live reads them).
"""

from __future__ import annotations

import asyncio
import html

import pytest
from channels.layers import get_channel_layer
from django.conf import settings as django_settings

from chat import live
from tests.chat.test_consumer import (  # noqa: F401 (fixtures)
    appended_text,
    connect,
    conversation,
    endpoint,
    frames_until_idle,
    reset_faults,
    send,
    sim,
)
from tests.chat.test_reattach import long_answer, last_snapshot, reply_of, snapshot_text, start_streaming, until  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
redis_only = pytest.mark.skipif(not django_settings.REDIS_URL, reason="REDIS_URL is not set")


@pytest.fixture
def layer_fragments(monkeypatch):
    """The fragments a run sends through the layer (the real group_send, counted)."""
    layer = get_channel_layer()
    sent: list[dict] = []
    group_send = layer.group_send

    async def counting(group, message):
        if message["type"] == "conversation.fragment":
            sent.append(message)
        await group_send(group, message)

    monkeypatch.setattr(layer, "group_send", counting)
    return sent


async def test_an_owner_alone_sends_nothing_through_the_layer(owner, conversation, sim, layer_fragments):
    sim.headers = {"x-sim-delay-token": "0.01"}
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello there")
    frames = await frames_until_idle(ws)
    await ws.disconnect()
    assert appended_text(frames, "content") and 'data-status="complete"' in frames[-1]
    assert layer_fragments == []  # the opening, every batch and the final message went to the socket only


async def test_a_viewer_already_there_gets_everything_through_the_layer(owner, teammate, conversation, sim, layer_fragments):
    sim.headers = {"x-sim-delay-token": "0.01"}
    watcher = await connect(teammate, conversation)
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello there")
    mine = await frames_until_idle(ws)
    seen = await frames_until_idle(watcher)
    await ws.disconnect()
    await watcher.disconnect()
    assert "Hello there" in seen[0] and 'data-status="streaming"' in seen[0]  # the opening
    assert seen == mine[-len(seen):] and len(seen) == len(mine)  # the same frames, in the same order
    assert len(layer_fragments) == len(mine)


async def test_a_viewer_joining_mid_stream_misses_nothing(owner, teammate, long_answer, sim, layer_fragments):
    conversation = long_answer
    ws = await start_streaming(owner, conversation)
    await asyncio.sleep(0.5)  # streaming with nobody else watching: nothing crosses the layer
    assert layer_fragments == []
    watcher = await connect(teammate, conversation)  # its first frame, the list as saved, is read
    seen = await frames_until_idle(watcher, timeout=20)
    await frames_until_idle(ws, timeout=20)
    await ws.disconnect()
    await watcher.disconnect()
    reply = await reply_of(conversation)
    assert reply.status == "complete" and layer_fragments
    at = last_snapshot(seen, reply)
    shown = snapshot_text(seen[at], reply, "content") + html.unescape(appended_text(seen[at + 1 : -1], "content"))
    assert shown == reply.content  # the live message, then every fragment after it, once
    assert f'id="msg-{reply.public_id}"' in seen[-1] and 'data-status="complete"' in seen[-1]


@redis_only
async def test_a_viewer_that_left_is_no_longer_sent_to(owner, teammate, long_answer, sim, layer_fragments, monkeypatch):
    monkeypatch.setattr(live, "WATCH_REFRESH", 0.1)
    conversation = long_answer
    watcher = await connect(teammate, conversation)
    ws = await start_streaming(owner, conversation)
    await until(lambda: len(layer_fragments) >= 3)
    await watcher.disconnect()
    await asyncio.sleep(0.5)  # a few reads of the group later
    count = len(layer_fragments)
    await asyncio.sleep(0.5)
    assert len(layer_fragments) == count, "fragments still crossed the layer with nobody else watching"
    await send(ws, action="stop")
    await frames_until_idle(ws)
    await ws.disconnect()


@redis_only
async def test_the_layer_counts_the_other_members_of_a_group():
    layer = get_channel_layer()
    mine, a, b = [await layer.new_channel() for _ in range(3)]
    await layer.group_add("count-check", mine)
    assert await layer.others_in_groups([("count-check", mine), ("count-empty", mine)]) == [0, 0]
    await layer.group_add("count-check", a)
    await layer.group_add("count-check", b)
    assert await layer.others_in_groups([("count-check", mine), ("count-check", a)]) == [2, 2]
    await layer.group_discard("count-check", a)
    await layer.group_discard("count-check", b)
    assert await layer.others_in_groups([("count-check", mine)]) == [0]
    await layer.flush()


@redis_only
async def test_a_small_pool_waits_instead_of_failing():
    """redis-py's default pool raised MaxConnectionsError ("Too many connections") at 100 streams."""
    from chat.layers import RedisChannelLayer

    config = django_settings.CHANNEL_LAYERS["default"]["CONFIG"]
    layer = RedisChannelLayer(**{**config, "max_connections": 3})
    channels = [await layer.new_channel() for _ in range(300)]
    await asyncio.gather(*(layer.group_add("pool-check", c) for c in channels))
    await asyncio.gather(*(layer.group_send("pool-check", {"type": "x"}) for _ in range(20)))
    assert await layer.others_in_groups([("pool-check", channels[0])]) == [299]
    await layer.flush()
