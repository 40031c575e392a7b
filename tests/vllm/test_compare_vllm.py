"""A comparison on the real vLLM server (issue 15): two settings side by side over one socket.

Both panes decode greedily (temperature 0, thinking off, logprobs on); one may write 6 tokens, the
other 14. The short answer is the long one's beginning, token for token, so the first divergence
is where the short one ends; both stream through the ordinary run and keep the exact bodies."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from chat import compare
from chat.models import Completion, Endpoint, Message
from playground.asgi import application
from tests.sockets import Socket
from tests.vllm.conftest import Upstream

pytestmark = [pytest.mark.vllm, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def comparison(owner, real: Upstream):
    endpoint = Endpoint.objects.create(name="real tiny (compare)", base_url=real.base_url, model_id=real.model)
    made = compare.new_comparison(owner, [(endpoint, {"max_tokens": 6}), (endpoint, {"max_tokens": 14})], title="Real compare")
    made.options = {"temperature": 0, "logprobs": True, "top_logprobs": 3, "enable_thinking": False}
    made.options = compare.merge({}, made.options)  # enable_thinking goes into chat_template_kwargs
    made.save()
    return made


async def test_two_settings_on_the_real_server(owner, comparison):
    panes = await database_sync_to_async(lambda: list(comparison.panes.all()))()
    socket = Socket(application, f"/ws/conversations/{comparison.public_id}/",
                    headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
    socket.scope["user"] = owner
    assert (await socket.connect())[0]
    await socket.receive_from()  # the board
    await socket.send_to(text_data=json.dumps({"action": "send", "content": "Count from one to ten in words."}))
    frames = []
    async with asyncio.timeout(120):
        while sum('class="pane-state" data-state="idle"' in f for f in frames) < 2:
            frames.append(await socket.receive_from())
    await socket.disconnect()

    answers = await database_sync_to_async(lambda: [
        Message.objects.select_related("completion").get(conversation=comparison, pane=p, role="assistant") for p in panes])()
    short, long = answers
    assert [m.status for m in answers] == ["complete", "complete"], [m.error for m in answers]
    assert [m.finish_reason for m in answers] == ["length", "length"]
    assert [m.completion.usage["completion_tokens"] for m in answers] == [6, 14]
    assert [m.completion.request_body["max_tokens"] for m in answers] == [6, 14]
    for m in answers:
        body = m.completion.request_body
        assert body["model"] == "tiny-qwen3" and body["temperature"] == 0 and body["chat_template_kwargs"] == {"enable_thinking": False}
        assert m.completion.ttft_ms is not None and m.completion.tokens_per_s
        assert not m.reasoning
    # Greedy decoding: the short answer is the long one's beginning, and they part where it ends.
    tokens = lambda m: [t["token"] for t in m.logprobs["content"]]
    assert len(tokens(short)) == 6 and tokens(long)[:6] == tokens(short)
    divergence = compare.first_divergence(short.logprobs, long.logprobs)
    assert divergence.index == 6 and divergence.a is None and divergence.b.token == compare.visible(tokens(long)[6])
    assert len(divergence.b.alternatives) >= 1
    assert long.text.startswith(short.text)
    ops = compare.text_diff(short.text, long.text)
    assert all(op != "delete" for op, _ in ops)
    # Both streamed live: content fragments for both answers arrived before the second one ended.
    assert all(any(f'msg-{m.public_id}-content" hx-swap-oob="beforeend"' in f for f in frames) for m in answers)
    assert await database_sync_to_async(Completion.objects.filter(conversation=comparison, status="complete").count)() == 2
