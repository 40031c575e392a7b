"""Frames the socket cannot take get a clear answer and leave the socket open (issue 13.8)."""

from __future__ import annotations

import json

import pytest

from chat.consumers import MAX_FRAME_CHARS
from chat.models import Message
from playground.serve import MAX_WEBSOCKET_BYTES, daphne_arguments
from tests.chat.test_consumer import connect, conversation, endpoint, frames_until_idle, reset_faults, send, sim  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_frame_over_the_cap_is_answered_and_the_socket_stays_usable(owner, conversation):
    ws = await connect(owner, conversation)
    await ws.send_to(text_data=json.dumps({"action": "send", "content": "x" * (10 * 1024 * 1024)}))
    frame = await ws.receive_from()
    assert 'id="frame-error"' in frame and "too large to send (10.5 MB" in frame
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await send(ws, action="send", content="A normal message")
    frames = await frames_until_idle(ws)
    assert any("A normal message" in f for f in frames)
    await ws.disconnect()


async def test_a_lone_surrogate_is_answered_not_a_crash(owner, conversation):
    ws = await connect(owner, conversation)
    await ws.send_to(text_data='{"action": "send", "content": "broken \\ud800 text"}')
    frame = await ws.receive_from()
    assert 'id="frame-error"' in frame and "lone UTF-16 surrogate" in frame
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await send(ws, action="send", content="Still here")
    assert any("Still here" in f for f in await frames_until_idle(ws))
    await ws.disconnect()


def test_the_server_lets_frames_up_to_its_cap_reach_the_consumer():
    assert MAX_WEBSOCKET_BYTES > MAX_FRAME_CHARS * 1.5  # a 10 MB frame is answered, not cut off
    args = daphne_arguments(["--bind", "127.0.0.1", "--port", "8000"])
    assert args[-1] == "playground.asgi:application"
    assert args[args.index("--websocket-max-message-size") + 1] == str(MAX_WEBSOCKET_BYTES)
    assert daphne_arguments(["--websocket-max-message-size", "5", "x.asgi:app"]).count("--websocket-max-message-size") == 1
