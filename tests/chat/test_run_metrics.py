"""What a finished run reports about itself: the inspector's chunk count and the footer's timings.

The upstream is the simulator behind a Recorder (tests/servers.py), so a count is checked against
the `data:` events that really went over the wire.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from chat import fragments
from chat.forms import family_defaults
from chat.models import ApiKey, Completion, Conversation, Endpoint, Message
from chat.simulator import make_simulator
from tests.chat.test_consumer import run_without_a_socket
from tests.servers import Recorder, serve_asgi

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sim-metrics-key-77"
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def recorded():
    recorder = Recorder(make_simulator(api_key=KEY, token_delay=0.0))
    with serve_asgi(recorder) as url:
        recorder.url = url + "/v1"
        yield recorder


@pytest.fixture
def conversation(owner, recorded):
    key = ApiKey(name="metrics key")
    key.set_secret(KEY)
    key.save()
    endpoint = Endpoint.objects.create(name="sim llama", base_url=recorded.url, model_id="sim/llama-3.3", api_key=key)
    return Conversation.objects.create(owner=owner, endpoint=endpoint, options=family_defaults(endpoint))


def data_events(raw: bytes) -> int:
    """The JSON chunks of an SSE body: its `data:` events other than the [DONE] terminator."""
    events = [e for e in raw.decode().split("\n\n") if e.startswith("data:")]
    return sum(1 for e in events if e.removeprefix("data:").strip() != "[DONE]")


async def finished_run(conversation, body: dict) -> tuple[Completion, Message, list[str]]:
    sent: list[str] = []

    async def emit(html):
        sent.append(html)

    run, message = await run_without_a_socket(conversation, body, emit)
    await run.run()
    completion = await Completion.objects.select_related("endpoint").aget(pk=run.completion.pk)
    await database_sync_to_async(message.refresh_from_db)()
    return completion, message, sent


@database_sync_to_async
def inspector(user, completion) -> str:
    client = Client()
    client.force_login(user)
    return client.get(reverse("chat:completion_inspect", args=[completion.public_id]), headers={"HX-Request": "true"}).content.decode()


async def test_the_inspector_counts_every_chunk_of_a_stream(owner, conversation, recorded):
    body = {"model": "sim/llama-3.3", "messages": HELLO, "max_tokens": 12, "stream": True, "stream_options": {"include_usage": True}}
    completion, message, _ = await finished_run(conversation, body)
    assert message.status == "complete" and recorded.exchanges[-1].json == body
    chunks = data_events(recorded.exchanges[-1].response)
    assert chunks > 5  # the role chunk, a dozen tokens, the finish and the usage chunk
    assert completion.chunk_count == chunks  # was 1: only changes of id/model were counted
    assert f"{chunks} chunks" in await inspector(owner, completion)


async def test_a_non_streamed_answer_reports_usage_and_total_time_but_no_rate(owner, conversation):
    body = {"model": "sim/llama-3.3", "messages": HELLO, "max_tokens": 12, "stream": False}
    completion, message, sent = await finished_run(conversation, body)
    assert message.status == "complete" and completion.usage["completion_tokens"] > 0
    # The whole answer arrives at once: there is no first token to time and no decode rate (the clock
    # started when it had all arrived, which once gave 8,663,634.7 tok/s).
    assert completion.ttft_ms is None and completion.tokens_per_s is None
    assert completion.duration_ms > 0
    footer = sent[-1].split('<footer class="metrics', 1)[1].split("</footer>", 1)[0]
    assert "tok/s" not in footer and "TTFT" not in footer
    assert "not streamed" in footer and "ms total" in footer
    assert f"{completion.usage['prompt_tokens']} in / {completion.usage['completion_tokens']} out" in footer
    page = await inspector(owner, completion)
    assert "not streamed" in page and "tok/s" not in page and "TTFT" not in page


async def test_a_streamed_answer_reports_ttft_and_rate(owner, conversation):
    body = {"model": "sim/llama-3.3", "messages": HELLO, "max_tokens": 12, "stream": True, "stream_options": {"include_usage": True}}
    completion, _, sent = await finished_run(conversation, body)
    assert completion.ttft_ms is not None and completion.tokens_per_s and completion.duration_ms >= completion.ttft_ms
    footer = sent[-1].split('<footer class="metrics', 1)[1].split("</footer>", 1)[0]
    assert "TTFT" in footer and "tok/s" in footer and "not streamed" not in footer


def test_a_rate_saved_for_a_non_streamed_answer_before_the_fix_is_not_shown(owner, conversation):
    """Rows saved by the old code hold the made-up rate: the footer shows it only for a stream."""
    completion = Completion.objects.create(
        conversation=conversation, endpoint=conversation.endpoint, request_body={"model": "m", "messages": HELLO},
        usage={"prompt_tokens": 9, "completion_tokens": 30, "total_tokens": 39}, ttft_ms=412.0, duration_ms=413.0,
        tokens_per_s=8663634.7, status="complete",
    )
    message = Message.objects.create(conversation=conversation, position=1, role="assistant", content="Hi", completion=completion)
    html = fragments.final(message, completion)
    assert "8663634" not in html and "8,663,634" not in html and "tok/s" not in html and "TTFT" not in html
    assert "413 ms total" in html and "9 in / 30 out" in html
