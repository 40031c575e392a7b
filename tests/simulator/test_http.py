"""Routes, errors, auth and mounting under a prefix."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from chat.simulator import DEFAULT_MODELS, OWNER, ModelSpec, make_simulator
from tests.servers import serve_asgi

HELLO = [{"role": "user", "content": "Hello!"}]


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert list(error) == ["message", "type", "param", "code"] and error["code"] == status
    return error


def _post(client, **body) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": "sim/qwen3", "messages": HELLO, **body})


def test_models_list_is_labelled(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [m.id for m in DEFAULT_MODELS]
    assert {m["owned_by"] for m in body["data"]} == {OWNER} == {"hexgrid-simulator"}
    assert all(m["max_model_len"] == 32768 and m["permission"][0]["object"] == "model_permission" for m in body["data"])


def test_health_and_version(client):
    health = client.get("/health")
    assert health.status_code == 200 and health.content == b""
    assert "simulator" in client.get("/version").json()["version"]


def test_unknown_path_and_method(client):
    assert client.get("/v1/nope").status_code == 404
    assert client.get("/v1/nope").json() == {"detail": "Not Found"}
    wrong = client.get("/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.json() == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_404_json_even_for_streams(client, stream):
    response = _post(client, model="no-such-model", stream=stream)
    error = _error(response, 404)
    assert error["type"] == "NotFoundError" and error["param"] == "model"
    assert error["message"].startswith("The model `no-such-model` does not exist. Valid aliases: sim/qwen3, ")


@pytest.mark.parametrize(("body", "param", "fragment"), [
    ({"temperature": -1}, "temperature", "temperature must be non-negative, got -1.0."),
    ({"top_p": 0}, "top_p", "top_p must be in (0, 1], got 0.0."),
    ({"temperature": 2.5}, "temperature", "temperature must be in [0, 2], got 2.5."),
    ({"max_tokens": 0}, "max_tokens", "max_tokens must be at least 1"),
    ({"max_completion_tokens": 0}, "max_tokens", "max_tokens must be at least 1"),
    ({"max_tokens": 40000}, "max_tokens", "max_tokens=40000 cannot be greater than max_model_len=32768."),
    ({"logprobs": True, "top_logprobs": 21}, "logprobs", "Requested sample logprobs of 21"),
    ({"logprobs": True, "top_logprobs": -1}, "logprobs", "Requested sample logprobs of 151936"),
    ({"logprobs": True, "top_logprobs": -2}, "top_logprobs", "must be a positive value or -1."),
    ({"top_logprobs": 2}, "top_logprobs", "`logprobs` must be set to true. (parameter=top_logprobs)"),
    ({"tool_choice": "required"}, "tool_choice", "When using `tool_choice`, `tools` must be set."),
    ({"tools": []}, "tools", "`tools` must not be an empty array."),
    ({"stream_options": {"include_usage": True}}, "stream_options",
     "only be defined when `stream=True`. (parameter=stream_options)"),
    ({"logit_bias": {"999999": 1}}, "logit_bias", "out-of-vocab token ids. Vocabulary size: 151936"),
    ({"logit_bias": {"abc": 1}}, "logit_bias", "cannot be converted to integer token IDs: ['abc']"),
])
def test_invalid_values_are_400_with_param(client, body, param, fragment):
    error = _error(_post(client, **body), 400)
    assert error["type"] == "BadRequestError" and error["param"] == param
    assert fragment in error["message"]


@pytest.mark.parametrize(("body", "message"), [
    ({"min_p": 2}, "min_p must be in [0, 1], got 2.0."),
    ({"top_k": -5}, "top_k must be 0 (disable), or at least 1, got -5."),
    ({"presence_penalty": 3}, "presence_penalty must be in [-2, 2], got 3.0."),
    ({"repetition_penalty": 0}, "repetition_penalty must be greater than zero, got 0.0."),
    ({"n": 0}, "n must be at least 1, got 0."),
    ({"min_tokens": 50, "max_tokens": 10}, "min_tokens must be less than or equal to max_tokens=10, got 50."),
    ({"stop": ""}, "stop cannot contain an empty string."),
    ({"messages": []}, "Cannot apply chat template to an empty conversation. Provide at least one message."),
    ({"structured_outputs": {"regex": "a", "choice": ["a"]}},
     "You can only use one kind of constraints for structured outputs ('json', 'regex' or 'choice')."),
])
def test_invalid_values_vllm_does_not_attribute(client, body, message):
    """vLLM 0.32 raises these without a parameter: param is null, the message has no suffix."""
    error = _error(_post(client, **body), 400)
    assert (error["type"], error["param"], error["message"]) == ("BadRequestError", None, message)


def test_max_tokens_is_clamped_to_the_room_the_prompt_leaves(client):
    body = _post(client, max_tokens=32760, ignore_eos=True).json()  # the prompt takes more than 8 tokens
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["total_tokens"] == 32768


def test_named_tool_must_exist(client):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    error = _error(_post(client, tools=tools, tool_choice={"type": "function", "function": {"name": "nope"}}), 400)
    assert error["message"] == ("The tool specified in `tool_choice` does not match any of the specified `tools` "
                                "(parameter=tool_choice)")


@pytest.mark.parametrize(("body", "loc", "kind"), [
    ({"temperature": "hot"}, "body.temperature", "float_parsing"),
    ({"max_tokens": 1.5}, "body.max_tokens", "int_from_float"),
    ({"stream": "maybe"}, "body.stream", "bool_parsing"),
    ({"messages": "hi"}, "body.messages", "list_type"),
    ({"messages": [{"content": "no role"}]}, "body.messages.0.role", "missing"),
])
def test_wrong_types_are_pydantic_style_400(client, body, loc, kind):
    error = _error(_post(client, **body), 400)
    assert error["type"] == "Bad Request" and error["param"] == loc
    assert error["message"].startswith("1 validation error:\n  {'type': '%s', 'loc': '%s'" % (kind, loc))


def test_too_many_stop_strings_fail_both_union_branches(client):
    error = _error(_post(client, stop=["a", "b", "c", "d", "e"]), 400)
    assert (error["type"], error["param"]) == ("Bad Request", "body.stop")
    assert error["message"] == (  # real vLLM 0.32, word for word
        "2 validation errors:\n"
        "  {'type': 'string_type', 'loc': 'body.stop', 'msg': 'Input should be a valid string', "
        "'input': '<list of 5 items>'}\n"
        "  {'type': 'too_long', 'loc': 'body.stop', 'msg': 'List should have at most 4 items after validation, not 5', "
        "'input': '<list of 5 items>', 'ctx': {'field_type': 'List', 'max_length': 4, 'actual_length': 5}}"
    )


def test_tool_choice_is_checked_before_field_types(client):
    """vLLM's before-validators see the raw body: a bad tool_choice is not a pydantic error."""
    error = _error(_post(client, tool_choice="sometimes", temperature="hot"), 400)
    assert (error["param"], error["message"]) == ("tool_choice", "When using `tool_choice`, `tools` must be set. "
                                                                 "(parameter=tool_choice)")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    error = _error(_post(client, tools=tools, tool_choice="sometimes"), 400)
    assert error["message"].startswith("Invalid value for `tool_choice`: sometimes! Only named tools")


def test_lax_types_are_accepted_like_pydantic(client):
    assert _post(client, temperature="0.5", max_tokens="5", stream="false").status_code == 200


def test_malformed_json(client):
    response = client.post("/v1/chat/completions", content=b'{"model": "sim/qwen3", "messages": [',
                           headers={"content-type": "application/json"})
    error = _error(response, 400)
    assert error["param"] == "body.36" and "'type': 'json_invalid'" in error["message"]


def test_missing_messages(client):
    error = _error(client.post("/v1/chat/completions", json={"model": "sim/qwen3"}), 400)
    assert error["message"] == ("1 validation error:\n  {'type': 'missing', 'loc': 'body.messages', "
                                "'msg': 'Field required', 'input': '<dict of 1 items>'}")


def test_model_may_be_omitted(client):
    response = client.post("/v1/chat/completions", json={"messages": HELLO})
    assert response.status_code == 200 and response.json()["model"] == "sim/qwen3"


def test_image_on_a_text_only_model(client):
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    error = _error(_post(client, messages=[{"role": "user", "content": parts}]), 400)
    assert error == {"message": "sim/qwen3 is not a multimodal model", "type": "BadRequestError",
                     "param": None, "code": 400}


def test_prompt_too_long():
    app = make_simulator(models=[ModelSpec("sim/small", family="llama", max_model_len=64)])
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        error = _error(client.post("/v1/chat/completions", json={
            "model": "sim/small", "messages": [{"role": "user", "content": "hello " * 100}]}), 400)
    assert error["param"] == "input_tokens" and "at least 65 input tokens" in error["message"]


def test_auto_tool_choice_needs_the_server_flag():
    app = make_simulator(models=[ModelSpec("sim/plain", family="llama", auto_tools=False)])
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather"}}]
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        error = _error(client.post("/v1/chat/completions", json={
            "model": "sim/plain", "messages": HELLO, "tools": tools, "tool_choice": "auto"}), 400)
        assert "--enable-auto-tool-choice" in error["message"]
        # Without an explicit tool_choice the tools are simply not called, as vLLM does.
        ok = client.post("/v1/chat/completions", json={"model": "sim/plain", "tools": tools,
                                                       "messages": [{"role": "user", "content": "weather?"}]})
        assert ok.status_code == 200 and "tool_calls" not in ok.json()["choices"][0]["message"]


def test_api_key():
    app = make_simulator(api_key="s3cret")
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret"}):
            for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
                response = client.request(method, path, headers=headers, json={"messages": HELLO})
                assert response.status_code == 401 and response.json() == {"error": "Unauthorized"}
        good = {"authorization": "Bearer s3cret"}
        assert client.get("/v1/models", headers=good).status_code == 200
        assert client.post("/v1/chat/completions", headers=good, json={"messages": HELLO}).status_code == 200
        assert client.get("/health").status_code == 200  # vLLM guards /v1 only
        assert client.get("/version").status_code == 200
        assert "authorization" not in app.requests[-3].headers


def test_mounted_under_a_prefix():
    """In process, a router hands the app a scope whose root_path is the mount point."""
    app = make_simulator()

    async def router(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/simulator/"):
            await app({**scope, "root_path": "/simulator"}, receive, send)
        else:
            await send({"type": "http.response.start", "status": 418, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    with serve_asgi(router) as url, httpx.Client(base_url=url + "/simulator") as client:
        assert client.get("/v1/models").status_code == 200
        assert client.get("/health").status_code == 200
        streamed = client.post("/v1/chat/completions", json={"messages": HELLO, "stream": True})
        assert streamed.text.endswith("data: [DONE]\n\n")
        assert app.requests[-1].path == "/v1/chat/completions"


def test_lifespan_is_answered():
    """uvicorn's default lifespan="auto" talks to the app directly; no socket involved."""
    app = make_simulator()

    async def run():
        events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        sent = []

        async def receive():
            return next(events)

        async def send(message):
            sent.append(message["type"])

        await app({"type": "lifespan"}, receive, send)
        return sent

    assert asyncio.run(run()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
