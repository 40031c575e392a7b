"""What the relay does to stay light under load (issue 14): longer batches when a process streams
many answers, and no frame that carries nothing."""

from __future__ import annotations

import pytest

from chat.runs import BUSY, BUSY_FLUSH_INTERVAL, FLUSH_INTERVAL, flush_interval
from tests.chat.test_consumer import (  # noqa: F401 (fixtures)
    conversation,
    endpoint,
    frames_until_idle,
    connect,
    reset_faults,
    send,
    sim,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_batches_grow_from_40_to_100_ms_as_a_process_streams_more_answers():
    low, high = BUSY
    assert flush_interval(0) == flush_interval(low) == FLUSH_INTERVAL == 0.04
    assert flush_interval(high) == flush_interval(10 * high) == BUSY_FLUSH_INTERVAL == 0.1
    steps = [flush_interval(n) for n in range(low, high + 1)]
    assert steps == sorted(steps) and FLUSH_INTERVAL < flush_interval((low + high) // 2) < BUSY_FLUSH_INTERVAL


CLEAR = '<div id="frame-error" class="error" role="alert" hx-swap-oob="true"></div>'


async def test_the_error_line_is_cleared_only_when_it_shows_a_refusal(owner, conversation, sim):
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello")
    first = await ws.receive_from()
    assert first != CLEAR and "Hello" in first  # nothing to clear: the opening comes first
    await frames_until_idle(ws)
    await ws.send_to(text_data="not json")
    assert "was not understood" in await ws.receive_from()
    await send(ws, action="send", content="Again")
    assert await ws.receive_from() == CLEAR  # the refusal shown on this page goes once the send is accepted
    assert "Again" in await ws.receive_from()
    await frames_until_idle(ws)
    await ws.disconnect()
