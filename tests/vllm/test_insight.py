"""Issue 17 against a real vLLM server (tiny Qwen3, reasoning parser qwen3, hermes tools):
the probe's matrix cell by cell, the meter's count against the following completion's
prompt_tokens, the Qwen3 template's <|im_start|> in What the model saw, /metrics figures
in the console. Needs VLLM_TEST_BASE_URL (see conftest.py); skipped without it.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from django.test import Client
from django.urls import reverse

from chat import insight, nextrequest
from chat.models import Conversation, Endpoint
from chat.panel import PanelForm
from chat.upstream.client import UpstreamClient
from chat.upstream.metrics import parse_load
from chat.upstream.probe import CHECKS, PASS, UNSUPPORTED, run_probe

from .conftest import REAL_MODEL, Upstream

pytestmark = pytest.mark.vllm

# What the tiny Qwen3 server does: everything but images (a text-only model).
EXPECTED = {**{key: PASS for key, *_ in CHECKS}, "image": UNSUPPORTED}


async def test_the_probe_matrix_of_real_vllm(real: Upstream):
    async with UpstreamClient(real.base_url) as client:
        cells, facts = await run_probe(client, real.model)
    assert {c.key: c.status for c in cells} == EXPECTED, {c.key: c.message for c in cells if c.status != PASS}
    assert facts == {"max_model_len": 2048, "version": "0.32.0"}
    by_key = {c.key: c for c in cells}
    assert by_key["reasoning"].message == "the answer carries `reasoning` (a reasoning parser is active)"
    assert by_key["image"].message == f"HTTP 400: {REAL_MODEL} is not a multimodal model"
    assert by_key["tools_named"].message == "called get_weather"
    assert all(c.latency_ms > 0 for c in cells)


@pytest.fixture
def endpoint(db, real: Upstream) -> Endpoint:
    return Endpoint.objects.create(name="real tiny", base_url=real.base_url, model_id=real.model)


def panel_post(conversation, **changes) -> dict:
    data = {}
    for name, value in PanelForm.initial_for(conversation).items():
        data[name] = "" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else value
    data.update(changes)
    return data


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city.",
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]


@pytest.mark.parametrize("changes", [
    {"content": "What is the weather in Paris?", "system_prompt": "You are a helpful assistant."},
    {"content": "What is the weather in Paris?", "tools": json.dumps(TOOLS), "thinking": "off"},
    {"content": "Hello!", "thinking": "on", "max_tokens": "8"},
], ids=["plain", "tools-no-thinking", "thinking"])
def test_the_meter_count_is_the_prompt_tokens_of_the_following_completion(endpoint, owner, real, changes):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint)
    client = Client()
    client.force_login(owner)
    data = panel_post(conversation, **changes)
    html = client.post(reverse("chat:token_meter", args=[conversation.public_id]), data).content.decode()
    count = int(re.search(r'data-count="(\d+)"', html).group(1))
    assert "of 2048" in html
    # The request the send would make (built by the same code), sent to the real server.
    from django.http import QueryDict

    settings = QueryDict(mutable=True)
    settings.update(data)
    body = nextrequest.preview(conversation, owner, settings=settings, content=data["content"])
    body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")} | {"max_tokens": 4}
    answer = httpx.post(real.base_url + "/chat/completions", json=body, timeout=60).json()
    assert count == answer["usage"]["prompt_tokens"]


def test_what_the_model_saw_shows_the_qwen3_template(endpoint, owner):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint, system_prompt="You are terse.")
    client = Client()
    client.force_login(owner)
    html = client.post(reverse("chat:next_prompt", args=[conversation.public_id]),
                       panel_post(conversation, content="Hi there", thinking="off")).content.decode()
    assert '<mark class="special-token">&lt;|im_start|&gt;</mark>system\nYou are terse.<mark class="special-token">&lt;|im_end|&gt;</mark>' in html
    assert '<mark class="special-token">&lt;|im_start|&gt;</mark>user\nHi there' in html
    assert '<mark class="special-token">&lt;|im_start|&gt;</mark>assistant' in html
    shown = int(re.search(r"<b>(\d+)</b> tokens? of 2048", html).group(1))
    result = insight.templated(endpoint, nextrequest.preview(conversation, owner, content="Hi there"))
    assert shown > 0 and result["text"].startswith("<|im_start|>system\nYou are terse.<|im_end|>")


def test_the_console_shows_metrics_figures_from_real_vllm(endpoint, staff, real):
    httpx.post(real.base_url + "/chat/completions", timeout=60,  # some prefix-cache queries, even on a fresh server
               json={"model": real.model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 2})
    raw = httpx.get(real.base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    load = parse_load(raw, REAL_MODEL)
    client = Client()
    client.force_login(staff)
    page = client.get(reverse("admin:chat_endpoint_change", args=[endpoint.pk])).content.decode()
    running = re.search(r'<td data-figure="running">(\d+)</td>', page).group(1)
    assert int(running) == load.running  # an idle test server: no request in flight
    assert re.search(r'<td data-figure="kv_cache_usage">[\d.]+ %</td>', page)
    queries = int(re.search(r"% of (\d+) queried tokens", page).group(1))
    assert queries >= load.prefix_cache_queries > 0
