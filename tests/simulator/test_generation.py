"""What the simulator says: text built from the prompt, token-sized chunks,
usage that counts the tokens, reasoning per family, and streamed answers that
fold back into exactly the non-streamed one."""

from __future__ import annotations

import pytest

from chat.simulator import DEFAULT_MODELS

from .conftest import accumulate, chat, stream

HELLO = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello!"}]
WEATHER_TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Get the current time in a timezone",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}},
]

# A spread of requests: every model, with and without thinking, tools, JSON, logprobs, limits.
REQUESTS = [
    *({"model": m.id, "messages": HELLO} for m in DEFAULT_MODELS),
    *({"model": m.id, "messages": HELLO, "chat_template_kwargs": {"enable_thinking": True}} for m in DEFAULT_MODELS),
    {"model": "sim/qwen3", "messages": HELLO, "chat_template_kwargs": {"enable_thinking": False}},
    {"model": "sim/qwen3", "messages": HELLO, "max_tokens": 6},
    {"model": "sim/qwen3", "messages": HELLO, "logprobs": True, "top_logprobs": 3, "max_tokens": 20},
    {"model": "sim/qwen3", "messages": HELLO, "stop": ["reply"], "chat_template_kwargs": {"enable_thinking": False}},
    {"model": "sim/qwen3", "messages": [{"role": "user", "content": "What's the weather in Paris and Tokyo?"}],
     "tools": WEATHER_TOOLS},
    {"model": "sim/llama-3.3", "messages": [{"role": "user", "content": "What time is it in Tokyo?"}],
     "tools": WEATHER_TOOLS, "tool_choice": "required", "logprobs": True},
    {"model": "sim/qwen3", "messages": HELLO, "n": 3, "temperature": 1.0, "seed": 5},
    {"model": "sim/gemma-4", "messages": HELLO, "response_format": {"type": "json_object"}},
]


def _ids():
    return [f"{i}-{r['model']}" for i, r in enumerate(REQUESTS)]


@pytest.mark.parametrize("request_body", REQUESTS, ids=_ids())
def test_stream_folds_into_the_non_streamed_answer(client, request_body):
    full = chat(client, **request_body)
    streamed = stream(client, **request_body, stream_options={"include_usage": True})
    assert streamed.done
    folded = accumulate(streamed.chunks)
    assert sorted(folded) == [c["index"] for c in full["choices"]]
    for choice in full["choices"]:
        got = folded[choice["index"]]
        message = choice["message"]
        reasoning_key = "reasoning_content" if "reasoning_content" in message else "reasoning"
        assert (message["content"] or "") == got["content"].strip() if message.get("tool_calls") else \
            (message["content"] or "") == got["content"]
        assert (message[reasoning_key] or "") == got[reasoning_key]
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])]
        assert calls == [(c["name"], c["arguments"]) for _, c in sorted(got["tool_calls"].items())]
        assert choice["finish_reason"] == got["finish_reason"]
        if choice["logprobs"]:
            assert got["logprobs"] == choice["logprobs"]["content"]
    usage = streamed.chunks[-1]["usage"]
    assert usage["completion_tokens"] == full["usage"]["completion_tokens"]
    assert usage["prompt_tokens"] == full["usage"]["prompt_tokens"]
    assert usage["completion_tokens_details"] == full["usage"]["completion_tokens_details"]


def test_reply_describes_what_it_received(client):
    body = chat(client, model="sim/llama-3.3", temperature=0.3, top_p=0.9,
                messages=[{"role": "user", "content": "Tell me about the Eiffel tower"}], extra_body={"top_k": 5})
    content = body["choices"][0]["message"]["content"]
    assert "Tell me about the Eiffel tower" in content
    assert "simulated" in content and "sim/llama-3.3" in content
    assert "temperature=0.3" in content and "top_p=0.9" in content
    assert "Ignored fields: extra_body" in content


def test_chunks_are_token_sized_and_usage_counts_them(client):
    streamed = stream(client, model="sim/qwen3", messages=HELLO, stream_options={"include_usage": True})
    chunks = streamed.chunks
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    reasoning = [c["choices"][0]["delta"]["reasoning"] for c in chunks[1:-2] if "reasoning" in c["choices"][0]["delta"]]
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2] if "content" in c["choices"][0]["delta"]]
    assert len(reasoning) > 5 and len(content) > 5
    assert all(0 < len(piece) <= 8 for piece in reasoning + content)
    finish = chunks[-2]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    # <think> and </think> are generated but hidden by the parser; the EOS token ends it.
    assert usage["completion_tokens"] == len(reasoning) + len(content) + 2 + 1
    assert usage["completion_tokens_details"]["reasoning_tokens"] == len(reasoning)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert chunks[-1]["choices"] == []


def test_no_usage_chunk_unless_asked(client):
    chunks = stream(client, messages=HELLO).chunks
    assert all(c["choices"] for c in chunks)
    assert "system_fingerprint" in chunks[-1]


def test_continuous_usage_stats(client):
    chunks = stream(client, messages=HELLO, max_tokens=12, chat_template_kwargs={"enable_thinking": False},
                    stream_options={"include_usage": True, "continuous_usage_stats": True}).chunks
    counts = [c["usage"]["completion_tokens"] for c in chunks]
    assert counts[0] == 0 and counts == sorted(counts) and counts[-1] == 12
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_usage_grows_with_the_prompt(client):
    short = chat(client, messages=[{"role": "user", "content": "Hi"}])["usage"]["prompt_tokens"]
    long = chat(client, messages=[{"role": "user", "content": "Hi " * 200}])["usage"]["prompt_tokens"]
    assert long >= short + 200


@pytest.mark.parametrize(("model", "kwargs", "thinks"), [
    ("sim/qwen3", None, True),
    ("sim/qwen3", {"enable_thinking": True}, True),
    ("sim/qwen3", {"enable_thinking": False}, False),
    ("sim/gemma-4", None, False),
    ("sim/gemma-4", {"enable_thinking": True}, True),
    ("sim/magistral", None, True),
    ("sim/magistral", {"enable_thinking": False}, True),
    ("sim/llama-3.3", {"enable_thinking": True}, False),
    ("sim/mistral-small", None, False),
])
def test_reasoning_per_family(client, model, kwargs, thinks):
    body = {"model": model, "messages": HELLO}
    if kwargs is not None:
        body["chat_template_kwargs"] = kwargs
    answer = chat(client, **body)
    message = answer["choices"][0]["message"]
    assert (message["reasoning"] is not None) is thinks
    assert (answer["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0) is thinks
    assert message["content"]


def test_reasoning_inline_without_a_parser(client):
    message = chat(client, model="sim/qwen3-no-parser", messages=HELLO)["choices"][0]["message"]
    assert message["reasoning"] is None
    assert message["content"].startswith("<think>\n") and "</think>\n\n" in message["content"]
    folded = accumulate(stream(client, model="sim/qwen3-no-parser", messages=HELLO).chunks)[0]
    assert folded["content"] == message["content"] and folded["reasoning"] == ""


def test_reasoning_under_the_legacy_name(client):
    message = chat(client, model="sim/qwen3-legacy", messages=HELLO)["choices"][0]["message"]
    assert "reasoning" not in message and message["reasoning_content"].strip()
    chunks = stream(client, model="sim/qwen3-legacy", messages=HELLO).chunks
    keys = {k for c in chunks for k in c["choices"][0]["delta"]}
    assert "reasoning_content" in keys and "reasoning" not in keys


def test_magistral_uses_its_own_markers(client):
    body = chat(client, model="sim/magistral", messages=HELLO, logprobs=True)
    tokens = [t["token"] for t in body["choices"][0]["logprobs"]["content"]]
    assert tokens[0] == "[THINK]" and "[/THINK]" in tokens


def test_truncated_inside_reasoning(client):
    message = chat(client, messages=HELLO, max_tokens=6)["choices"][0]
    assert message["finish_reason"] == "length"
    assert message["message"]["content"] is None and message["message"]["reasoning"]


def test_images_are_accepted_by_gemma(client):
    parts = [{"type": "text", "text": "What is in this image?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    body = chat(client, model="sim/gemma-4", messages=[{"role": "user", "content": parts}])
    assert "1 image(s) (image/png data URL)" in body["choices"][0]["message"]["content"]
    assert body["usage"]["prompt_tokens"] > 256


def test_text_parts_are_read(client):
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]
    content = chat(client, messages=[{"role": "user", "content": parts}])["choices"][0]["message"]["content"]
    assert "Hello there" in content


def test_unknown_role_still_answers(client):
    """vLLM's template drops roles it does not know and answers 200 (transcript 08i)."""
    body = chat(client, messages=[{"role": "wizard", "content": "hi"}], max_tokens=8)
    assert body["choices"][0]["finish_reason"] == "length"


def test_reply_counts_the_turns(client):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "And now?"}]
    content = chat(client, messages=messages, chat_template_kwargs={"enable_thinking": False})["choices"][0]["message"]["content"]
    assert "“And now?”" in content and "user message 2 of this conversation" in content
