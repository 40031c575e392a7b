"""No conversation stays stuck "Generating…" (issue 13.2, 13.3): answers left streaming by a server
process that is gone are finalized; a malformed upstream always ends in a saved error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from chat import liveness
from chat.models import Completion, Conversation, Message
from tests.chat.test_consumer import connect, frames_until_idle, make_endpoint, send
from tests.servers import serve_asgi

pytestmark = pytest.mark.django_db(transaction=True)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def streaming_answer(conversation, worker: str, age: timedelta = timedelta(0)) -> Message:
    completion = Completion.objects.create(conversation=conversation, request_body={}, status="streaming", worker=worker)
    user = Message.objects.create(conversation=conversation, position=0, role="user", content="Tell me")
    reply = Message.objects.create(conversation=conversation, parent=user, position=1, role="assistant",
                                   completion=completion, status="streaming", content="Once upon a")
    Message.objects.filter(pk=reply.pk).update(updated_at=timezone.now() - age)
    return reply


@pytest.fixture
def conversation(owner):
    endpoint = make_endpoint("http://127.0.0.1:9/v1")
    return Conversation.objects.create(owner=owner, endpoint=endpoint, options={"stream": True})


@pytest.mark.parametrize("worker, age, orphaned", [
    (f"{socket.gethostname()}:{{dead}}:abc", timedelta(0), True),  # this host, the process is gone (SIGKILL)
    (f"{socket.gethostname()}:{os.getpid()}:earlier", timedelta(0), True),  # our pid, another boot: we restarted
    ("this-process", timedelta(0), True),  # ours, but no run of ours holds it
    (f"{socket.gethostname()}:1:abc", timedelta(0), False),  # a live process on this host (pid 1 exists)
    ("other-host:123:abc", timedelta(seconds=5), False),  # another host, beating
    ("other-host:123:abc", timedelta(minutes=5), True),  # another host, silent
])
def test_an_answer_without_a_live_run_is_finalized_as_interrupted(client, owner, conversation, worker, age, orphaned):
    worker = liveness.worker_id() if worker == "this-process" else worker.replace("{dead}", str(dead_pid()))
    reply = streaming_answer(conversation, worker, age)
    client.force_login(owner)
    page = client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    reply.refresh_from_db()
    if orphaned:
        assert reply.status == "error" and reply.error == liveness.INTERRUPTED and reply.content == "Once upon a"
        assert reply.completion.status == "error" and reply.completion.finished_at is not None
        assert "Interrupted" in page and 'data-state="idle"' in page  # the composer is usable
    else:
        assert reply.status == "streaming"


async def test_a_send_after_a_dead_server_goes_through(owner, conversation, sim):
    conversation.endpoint = await make_endpoint_async(sim.url)
    await conversation.asave()
    from channels.db import database_sync_to_async

    reply = await database_sync_to_async(streaming_answer)(conversation, f"{socket.gethostname()}:{dead_pid()}:x")
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Are you there?")
    frames = await frames_until_idle(ws)
    assert 'data-status="complete"' in frames[-1]
    await reply.arefresh_from_db()
    assert reply.status == "error" and "Interrupted" in reply.error
    await ws.disconnect()


async def make_endpoint_async(url):
    from channels.db import database_sync_to_async

    return await database_sync_to_async(make_endpoint)(url)


@pytest.fixture(scope="module")
def sim():
    from chat.simulator import make_simulator

    app = make_simulator(api_key="sim-consumer-key-42", token_delay=0.0)
    with serve_asgi(app) as url:
        app.url = url + "/v1"
        yield app


# --- a malformed upstream ---------------------------------------------------------------------

GOOD = {"id": "chatcmpl-1", "model": "m", "created": 1, "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Partial "}, "finish_reason": None}]}
MALFORMED = [
    {"choices": [{"index": 0, "delta": {"content": 42}}]},
    {"choices": [{"index": 0, "delta": {"content": ["a"]}}]},
    {"choices": [{"index": "0", "delta": {"content": "x"}}]},
    {"choices": [], "usage": {"prompt_tokens": "3", "completion_tokens": "4", "total_tokens": "7"}},
    {"choices": [{"index": 0, "delta": {"content": "\ud800"}}]},
    {"choices": [{"index": 0, "delta": {"reasoning": 3.5}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": "a", "function": {"name": "f"}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": {"a": 1}}}]}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": ["stop"]}]},
    {"choices": [{"index": 0, "delta": {}, "logprobs": {"content": [1, 2]}}]},
    {"choices": "all of them"},
    "NaN-logprob",
]


def upstream(bad) -> callable:
    """An OpenAI-style server that streams one good chunk, then `bad`."""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        second = ('{"choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": {"content": [{"token": "x", "logprob": NaN}]}}]}'
                  if bad == "NaN-logprob" else json.dumps(bad))
        body = f"data: {json.dumps(GOOD)}\n\ndata: {second}\n\ndata: [DONE]\n\n".encode()
        await send({"type": "http.response.body", "body": body})
    return app


@pytest.mark.parametrize("bad", MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
async def test_every_wrong_type_ends_in_a_saved_error_with_the_partial_text(owner, bad):
    from channels.db import database_sync_to_async

    with serve_asgi(upstream(bad)) as url:
        endpoint = await database_sync_to_async(make_endpoint)(url + "/v1", "m", key=None)
        conversation = await Conversation.objects.acreate(owner=owner, endpoint=endpoint, options={"stream": True})
        ws = await connect(owner, conversation)
        await send(ws, action="send", content="Hello")
        frames = await frames_until_idle(ws)
        await ws.disconnect()
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "error" and reply.error.startswith("Upstream error")
    assert "the server sent" in reply.error or "undecodable data" in reply.error
    assert reply.content == "Partial "
    assert 'data-status="error"' in frames[-1]
