"""A reload does not kill a run: when the owner's last socket closes mid-stream, the run goes on for
RUN_GRACE_SECONDS and a page that connects again gets it live; if nobody comes back, it is cancelled
(upstream closed, partial answer saved). Stop still cancels at once, from any of the owner's pages.

Every test runs on the configured channel layer: in-memory by default, Redis when REDIS_URL is set
(CI runs the suite both ways), since a detached run is reached only through the layer.
"""

from __future__ import annotations

import asyncio
import html
import re
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chat import live
from chat.consumers import group_name
from tests.chat.test_consumer import (  # noqa: F401 (fixtures)
    appended_text,
    completions_of,
    connect,
    conversation,
    endpoint,
    frames_until_idle,
    messages_of,
    reset_faults,
    send,
    sim,
)

pytestmark = pytest.mark.django_db(transaction=True)

# A long answer (the simulator's story is 43 tokens): ~100 tokens at 40 ms, about 4 s.
LONG = {"max_tokens": 100, "ignore_eos": True}
TOKEN_DELAY = {"x-sim-delay-token": "0.04"}


@pytest.fixture
async def long_answer(conversation, sim):
    # Runs an earlier test left detached in its own, closed event loop can never end: not this test's.
    for stale in [d for d in live._detached if d.run.task is None or d.run.task.get_loop().is_closed()]:
        live._detached.discard(stale)
    conversation.options = {**conversation.options, **LONG}
    await database_sync_to_async(conversation.save)()  # (closes its connection, unlike asave)
    sim.headers = dict(TOKEN_DELAY)
    yield conversation
    # A failed test must not leave a run streaming into the next one.
    for detached in list(live._detached):
        detached.run.stop()
        await asyncio.wait([detached.task], timeout=10)


async def start_streaming(owner, conversation):
    """The owner's socket, once the answer is streaming (its reasoning has started to arrive)."""
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Tell me a long story")
    while '-reasoning" hx-swap-oob="beforeend"' not in await ws.receive_from():
        pass
    return ws


async def until(check, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(step)


async def reply_of(conversation):
    return (await messages_of(conversation, role="assistant"))[-1]


def last_snapshot(frames: list[str], reply) -> int:
    """Index of the last frame that re-sends the streaming message whole (the run's snapshot)."""
    marker = f'<article id="msg-{reply.public_id}" class="message assistant status-streaming"'
    indexes = [i for i, f in enumerate(frames) if marker in f and 'hx-swap-oob="outerHTML"' in f]
    assert indexes, "the page never got the live message"
    return indexes[-1]


def snapshot_text(frame: str, reply, part: str) -> str:
    found = re.search(rf'id="msg-{reply.public_id}-{part}" class="[^"]*" hx-disable>(.*?)</div>', frame, flags=re.S)
    return html.unescape(found.group(1)) if found else ""


async def test_a_reload_reattaches_to_the_running_answer(owner, long_answer, sim, settings):
    settings.RUN_GRACE_SECONDS = 10
    conversation = long_answer
    disconnects, requests = len(sim.app.disconnects), len(sim.app.requests)
    ws = await start_streaming(owner, conversation)
    closed_at = time.monotonic()
    await ws.disconnect()
    assert time.monotonic() - closed_at < 1, "closing the socket waited for the run"
    await asyncio.sleep(0.4)  # the reload: the run streams on with nobody watching
    reply = await reply_of(conversation)
    assert reply.status == "streaming" and len(sim.app.disconnects) == disconnects

    page = await connect(owner, conversation)  # the reloaded page (its first frame, the list, is read)
    frames = await frames_until_idle(page)
    await page.disconnect()

    at = last_snapshot(frames, reply)
    live_frames, final = frames[at + 1 : -1], frames[-1]
    assert appended_text(live_frames, "content"), "no live fragments reached the reloaded page"
    assert f'id="msg-{reply.public_id}"' in final and 'data-status="complete"' in final
    assert 'data-state="idle"' in final
    reply = await reply_of(conversation)
    assert reply.status == "complete" and reply.finish_reason == "length"
    # What the page shows live is the answer: the snapshot, then every fragment after it, once.
    shown = snapshot_text(frames[at], reply, "content") + html.unescape(appended_text(live_frames, "content"))
    assert shown == reply.content
    [completion] = await completions_of(conversation)
    assert completion.status == "complete" and completion.usage["completion_tokens"] == LONG["max_tokens"]
    assert len(sim.app.disconnects) == disconnects  # never cut
    assert len(sim.app.requests) == requests + 1  # and never asked again
    await until(lambda: not live._detached)  # it left the group and stopped listening


async def test_nobody_comes_back_the_run_is_cancelled_after_the_grace_period(owner, teammate, long_answer, sim, settings):
    """A teammate watching does not keep the run going (only the owner can stop it); they see it to the end."""
    settings.RUN_GRACE_SECONDS = 1.5  # the answer's text starts after ~0.7 s of reasoning
    conversation = long_answer
    watcher = await connect(teammate, conversation)
    disconnects = len(sim.app.disconnects)
    ws = await start_streaming(owner, conversation)
    closed_at = time.monotonic()
    await ws.disconnect()
    await until(lambda: len(sim.app.disconnects) > disconnects, step=0.01)
    seen_after = time.monotonic() - closed_at
    assert 1.5 <= seen_after < 1.5 + 3, f"the upstream request closed {seen_after:.2f} s after the socket"
    watched = await frames_until_idle(watcher)
    await watcher.disconnect()
    assert appended_text(watched, "content"), "the teammate saw nothing while the owner was away"  # (it began after)
    assert 'data-status="cancelled"' in watched[-1] and "stopped" in watched[-1]
    reply = await reply_of(conversation)
    assert reply.status == "cancelled" and reply.reasoning and reply.content  # the partial answer is kept
    [completion] = await completions_of(conversation)
    assert completion.status == "cancelled"
    await until(lambda: not live._detached)
    layer = get_channel_layer()
    if isinstance(getattr(layer, "groups", None), dict):  # in-memory: nobody is left in the group
        assert not layer.groups.get(group_name(conversation.public_id))


async def test_stop_from_the_reloaded_page_cancels_at_once(owner, long_answer, sim, settings):
    settings.RUN_GRACE_SECONDS = 10
    conversation = long_answer
    ws = await start_streaming(owner, conversation)
    await ws.disconnect()
    page = await connect(owner, conversation)
    while '-content" hx-swap-oob="beforeend"' not in await page.receive_from():
        pass  # reattached: the answer streams into the reloaded page
    disconnects = len(sim.app.disconnects)
    stopped_at = time.monotonic()
    await send(page, action="stop")
    frames = await frames_until_idle(page)
    await until(lambda: len(sim.app.disconnects) > disconnects, step=0.01)
    assert time.monotonic() - stopped_at < 1.0, "Stop did not close the upstream request at once"
    assert 'data-status="cancelled"' in frames[-1] and "stopped" in frames[-1]
    reply = await reply_of(conversation)
    assert reply.status == "cancelled" and reply.content
    # the conversation goes on from the same page
    conversation.options = {**conversation.options, "max_tokens": 5}
    await conversation.asave()
    sim.headers = {}
    await send(page, action="send", content="Again")
    await frames_until_idle(page)
    await page.disconnect()
    assert [m.status for m in await messages_of(conversation, role="assistant")] == ["cancelled", "complete"]


async def test_the_run_waits_for_the_owners_last_socket(owner, long_answer, sim, settings):
    """Closing the tab that started the run while another of the owner's tabs is open does not start
    the grace period; closing that one too does."""
    settings.RUN_GRACE_SECONDS = 0.5
    conversation = long_answer
    other_tab = await connect(owner, conversation)
    disconnects = len(sim.app.disconnects)
    ws = await start_streaming(owner, conversation)
    await ws.disconnect()
    await asyncio.sleep(1.2)  # over twice the grace period
    assert len(sim.app.disconnects) == disconnects and (await reply_of(conversation)).status == "streaming"
    closed_at = time.monotonic()
    await other_tab.disconnect()
    await until(lambda: len(sim.app.disconnects) > disconnects, step=0.01)
    assert 0.5 <= time.monotonic() - closed_at < 0.5 + 3
    await until(lambda: not live._detached)
    assert (await reply_of(conversation)).status == "cancelled"


async def test_a_detached_run_alone_sends_nothing_through_the_layer(owner, long_answer, sim, settings, monkeypatch):
    """A detached run, whose own channel is a member of the group, sends nothing through the layer
    while nobody else is there (the in-memory layer reads its groups; Redis counts the group's
    members, chat.live), and sends again once a page is back."""
    layer = get_channel_layer()
    settings.RUN_GRACE_SECONDS = 10
    conversation = long_answer
    ws = await start_streaming(owner, conversation)
    await ws.disconnect()
    fragments = []
    group_send = layer.group_send

    async def counting(group, message):
        if message["type"] == "conversation.fragment":
            fragments.append(message)
        await group_send(group, message)

    monkeypatch.setattr(layer, "group_send", counting)
    await asyncio.sleep(0.5)  # ~12 tokens stream with nobody watching
    assert fragments == []
    page = await connect(owner, conversation)
    frames = await frames_until_idle(page)
    await page.disconnect()
    assert fragments and appended_text(frames, "content")
    assert (await reply_of(conversation)).status == "complete"
