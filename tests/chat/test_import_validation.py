"""Every cURL import is validated like a send before anything is stored, and a conversation page
never fails because of what is stored (issue 13.6)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from chat.models import Conversation, Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def qwen(db):
    return Endpoint.objects.create(name="qwen", base_url="http://127.0.0.1:9/v1", model_id="Qwen/Qwen3-8B", family="qwen")


def curl(body: dict | str) -> str:
    data = body if isinstance(body, str) else json.dumps(body)
    return f"curl http://127.0.0.1:9/v1/chat/completions -H 'Content-Type: application/json' -d '{data}'"


USER = [{"role": "user", "content": "hi"}]
BAD = [
    ('{"model": "Qwen/Qwen3-8B", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "NaN"),
    ('{"model": "Qwen/Qwen3-8B", "messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}', "Infinity"),
    ('{"model": "Qwen/Qwen3-8B", "messages": [{"role": "user", "content": "hi"}], "vllm_xargs": {"x": -Infinity}}', "Infinity"),
    ({"model": "Qwen/Qwen3-8B", "messages": USER, "chat_template_kwargs": ["enable_thinking", False]}, "chat_template_kwargs"),
    ({"model": "Qwen/Qwen3-8B", "messages": USER, "temperature": "hot"}, "temperature"),
    ({"model": "Qwen/Qwen3-8B", "messages": USER, "tools": {"type": "function"}}, "tools"),
    ({"model": "Qwen/Qwen3-8B", "messages": USER, "tool_choice": 3}, "tool_choice"),
    ({"model": "Qwen/Qwen3-8B", "messages": USER, "response_format": "json"}, "response_format"),
    ({"model": "Qwen/Qwen3-8B", "messages": USER, "stream": False, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"model": "Qwen/Qwen3-8B", "messages": [{"role": "wizard", "content": "hi"}]}, "role"),
    ({"model": "Qwen/Qwen3-8B", "messages": USER, "n": 0}, "n"),
    ({"model": "Qwen/Qwen3-8B", "messages": USER, "logit_bias": [1, 2]}, "logit_bias"),
]


@pytest.mark.parametrize("body, named", BAD)
def test_a_bad_import_gets_a_clear_message_and_creates_nothing(client, owner, qwen, body, named):
    client.force_login(owner)
    response = client.post(reverse("chat:conversation_import"), {"command": curl(body)})
    assert response.status_code == 400
    page = response.content.decode()
    assert named in page and any(s in page for s in ("cannot be imported", "could not be read", "cannot be sent"))
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("options, response_format", [
    ({"chat_template_kwargs": ["enable_thinking"]}, None),
    ({"stop": 5, "stream_options": [1], "logit_bias": "x", "metadata": 3, "tool_choice": 7, "structured_outputs": ["json"]}, ["json"]),
    ({"tool_choice": {"function": "get_weather"}}, {"type": 5, "json_schema": "x"}),
])
def test_a_page_never_fails_because_of_stored_settings(client, owner, qwen, options, response_format):
    conversation = Conversation.objects.create(owner=owner, endpoint=qwen, options=options, response_format=response_format)
    client.force_login(owner)
    response = client.get(reverse("chat:conversation", args=[conversation.public_id]))
    assert response.status_code == 200
    assert "The stored settings are not valid" in response.content.decode()
