"""Our protocol layer against a real vLLM 0.32 server, and the simulator held to it.

Needs VLLM_TEST_BASE_URL (see conftest.py); skipped without it.

One case per request kind the real transcripts show (plus a few more the
simulator must also get right). Each case is built with `build_payload`, or,
where our validation refuses it on purpose, the refusal is asserted and the
raw body is sent anyway. Then, for the real server and the simulator alike:

- through `UpstreamClient` (`create_chat`, or `stream_chat` folded by
  `StreamAccumulator`), the message must have the expected shape: content,
  reasoning, tool calls whose arguments fit the tool's schema, finish_reason,
  usage, logprobs; errors must arrive as UpstreamHTTPError with vLLM's
  status, type, param and message;
- on the wire (plain httpx), the simulator's answer must have the same keys
  and JSON types as the real one, values aside (tests/shapes.py): the whole
  body, or for a stream its first chunk, finish chunk, usage chunk and the set
  of chunk shapes.

The tiny model writes nonsense-ish text but was trained on exactly these
prompts, so with its default sampling it reliably calls get_weather for
Paris, twice for "Paris and Tokyo", and writes JSON. Where it does not fit a
schema (a named tool_choice without "strict"), only the protocol shape is
asserted.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import jsonschema
import pytest

from chat.upstream import (
    PayloadError,
    StreamAccumulator,
    UpstreamClient,
    UpstreamHTTPError,
    build_payload,
    parse_error_body,
)
from tests.shapes import shape, sse_shapes

from .conftest import Upstream

pytestmark = pytest.mark.vllm

# --------------------------------------------------------------------------- request parts

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
HELLO = [SYSTEM, {"role": "user", "content": "Hello!"}]
WEATHER = [{"role": "user", "content": "What's the weather in Paris?"}]
TWO_CITIES = [{"role": "user", "content": "What's the weather in Paris and Tokyo?"}]
PERSON_PROMPT = [{"role": "user", "content": "Describe a person as JSON."}]

GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
GET_TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a timezone",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
    },
}
TOOLS = [GET_WEATHER, GET_TIME]
STRICT_TOOLS = [GET_WEATHER, {**GET_TIME, "function": {**GET_TIME["function"], "strict": True}}]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 2, "maxItems": 3},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "tags", "age"],
    "additionalProperties": False,
}
PHONE = r"\+1-[0-9]{3}-[0-9]{3}-[0-9]{4}"

THINK = {"chat_template_kwargs": {"enable_thinking": True}}
NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}
USAGE = {"stream": True, "stream_options": {"include_usage": True}}
STREAM = {"stream": True}


def named(name: str) -> dict:
    return {"type": "function", "function": {"name": name}}


def tool_result(content: str, assistant_content: str | None = None) -> list[dict]:
    call = {"id": "call_abc123", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    return [*WEATHER, {"role": "assistant", "content": assistant_content, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_abc123", "content": content}]


# --------------------------------------------------------------------------- content checks

def text(content) -> None:
    assert isinstance(content, str) and content.strip(), f"expected text, got {content!r}"


def empty(content) -> None:
    """No answer text: null, or only the blank line vLLM leaves after </think>."""
    assert content is None or not content.strip(), f"expected no content, got {content!r}"


def anything(content) -> None:
    """Text or none: what the model makes of a turn its template dropped."""


def json_object(content) -> None:
    assert isinstance(json.loads(content), dict), content


def fits(schema: dict) -> Callable:
    def check(content) -> None:
        jsonschema.validate(json.loads(content), schema)
    return check


def matches(pattern: str) -> Callable:
    def check(content) -> None:
        assert re.fullmatch(pattern, content), content
    return check


def one_of(*options: str) -> Callable:
    def check(content) -> None:
        assert content in options, content
    return check


# --------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    """One request and what its answer must look like.

    refused: the field our payload validation names when it refuses the
    request on purpose; the raw body is then sent as is.
    """

    id: str
    messages: list
    values: dict
    content: Callable = text
    reasoning: bool = False
    tools: tuple[str, ...] = ()  # the called functions, in order
    args_fit_schema: bool = True
    finish: tuple[str, ...] = ("stop",)
    choices: int = 1
    top_logprobs: int | None = None  # logprobs expected, with this many alternatives
    refused: str | None = None
    check: Callable | None = None  # anything else, given the result and its body

    @property
    def stream(self) -> bool:
        return bool(self.values.get("stream"))


def _min_tokens_reached(result, body):
    assert result["usage"]["completion_tokens"] >= body["min_tokens"]


def _stopped_at_stop_string(result, body):
    choice = result["choices"][0]
    assert choice["stop_reason"] in body["stop"]
    assert not any(word in choice["message"]["content"] for word in body["stop"])


def _one_logprob_per_token(result, body):
    logprobs = result["choices"][0]["logprobs"]
    entries = logprobs["content"] + logprobs.get("reasoning", [])
    assert len(entries) == result["usage"]["completion_tokens"]  # the end-of-sequence token included


def _max_tokens_used(limit: str):
    def check(result, body):
        assert result["usage"]["completion_tokens"] == body[limit]
    return check


CASES = [
    # plain and reasoning
    Case("plain", HELLO, {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64}, reasoning=True),
    Case("thinking_off", HELLO, {"max_tokens": 64, **NO_THINK}),
    Case("thinking_on", HELLO, {"max_tokens": 64, **THINK}, reasoning=True),
    Case("thinking_cut_by_max_tokens", HELLO, {"max_tokens": 6, **THINK},
         content=empty, reasoning=True, finish=("length",)),
    Case("text_content_parts", [{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}],
         {"max_tokens": 32, **NO_THINK}),
    # vLLM answers a role it does not know (its template drops the message); we refuse it.
    Case("unknown_role", [{"role": "wizard", "content": "hi"}], {"max_tokens": 8},
         content=anything, reasoning=True, finish=("length", "stop"), refused="messages[0].role"),
    # streams
    Case("stream_with_usage", HELLO, {"max_tokens": 64, **USAGE, **NO_THINK}),
    Case("stream_reasoning", HELLO, {"max_tokens": 64, **USAGE, **THINK}, reasoning=True),
    Case("stream_without_usage", HELLO, {"max_tokens": 64, **STREAM, **NO_THINK}),
    Case("stream_continuous_usage", HELLO,
         {"max_tokens": 16, "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True},
          **NO_THINK}, finish=("length", "stop")),
    Case("stream_stop", HELLO, {"max_tokens": 32, "stop": ["tiny", "reply"], **STREAM, **NO_THINK},
         check=_stopped_at_stop_string),
    Case("stream_n2", HELLO, {"max_tokens": 16, "n": 2, "seed": 7, **USAGE, **NO_THINK},
         choices=2, finish=("length", "stop")),
    # tools
    Case("tools_auto", WEATHER, {"tools": TOOLS, "tool_choice": "auto", "max_tokens": 64, **NO_THINK},
         content=empty, tools=("get_weather",), finish=("tool_calls",)),
    Case("tools_auto_stream", WEATHER, {"tools": TOOLS, "tool_choice": "auto", "max_tokens": 64, **USAGE, **NO_THINK},
         content=empty, tools=("get_weather",), finish=("tool_calls",)),
    Case("tools_default_choice", [{"role": "user", "content": "What time is it in Tokyo?"}],
         {"tools": TOOLS, "max_tokens": 64, **NO_THINK}, content=empty, tools=("get_time",), finish=("tool_calls",)),
    Case("tools_required", WEATHER, {"tools": TOOLS, "tool_choice": "required", "max_tokens": 64, **NO_THINK},
         content=empty, tools=("get_weather",), finish=("tool_calls",)),
    Case("tools_required_stream", WEATHER,
         {"tools": TOOLS, "tool_choice": "required", "max_tokens": 64, **STREAM, **NO_THINK},
         content=empty, tools=("get_weather",), finish=("tool_calls",)),
    # A named tool_choice finishes with "stop" (real vLLM); without "strict" the
    # tiny model may fill get_time with the weather call's arguments.
    Case("tools_named", WEATHER, {"tools": TOOLS, "tool_choice": named("get_time"), "max_tokens": 64, **NO_THINK},
         content=empty, tools=("get_time",), args_fit_schema=False),
    Case("tools_named_strict", WEATHER,
         {"tools": STRICT_TOOLS, "tool_choice": named("get_time"), "max_tokens": 64, **NO_THINK},
         content=empty, tools=("get_time",)),
    Case("tools_named_stream", WEATHER,
         {"tools": TOOLS, "tool_choice": named("get_weather"), "max_tokens": 64, **STREAM, **NO_THINK},
         content=empty, tools=("get_weather",)),
    Case("tools_two_calls", TWO_CITIES, {"tools": TOOLS, "tool_choice": "auto", "max_tokens": 96, **NO_THINK},
         content=empty, tools=("get_weather", "get_weather"), finish=("tool_calls",)),
    Case("tools_two_calls_stream", TWO_CITIES,
         {"tools": TOOLS, "tool_choice": "auto", "max_tokens": 96, **USAGE, **NO_THINK},
         content=empty, tools=("get_weather", "get_weather"), finish=("tool_calls",)),
    Case("tools_parallel_false", TWO_CITIES,
         {"tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": False, "max_tokens": 96, **NO_THINK},
         content=empty, tools=("get_weather",), finish=("tool_calls",)),
    Case("tools_parallel_false_stream", TWO_CITIES,
         {"tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": False, "max_tokens": 96, **STREAM, **NO_THINK},
         content=empty, tools=("get_weather",), finish=("tool_calls",)),
    Case("tools_required_parallel_false", TWO_CITIES,
         {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False, "max_tokens": 96, **NO_THINK},
         content=empty, tools=("get_weather",), finish=("tool_calls",)),
    Case("tools_thinking", WEATHER, {"tools": TOOLS, "tool_choice": "auto", "max_tokens": 96, **THINK},
         content=empty, reasoning=True, tools=("get_weather",), finish=("tool_calls",)),
    Case("tools_thinking_stream", WEATHER, {"tools": TOOLS, "tool_choice": "auto", "max_tokens": 96, **USAGE, **THINK},
         content=empty, reasoning=True, tools=("get_weather",), finish=("tool_calls",)),
    Case("tool_choice_none", WEATHER, {"tools": TOOLS, "tool_choice": "none", "max_tokens": 32, **NO_THINK},
         finish=("length", "stop")),
    Case("tools_smalltalk", [{"role": "user", "content": "Hello!"}], {"tools": TOOLS, "max_tokens": 64, **NO_THINK}),
    Case("tool_result", tool_result('{"temperature": 22, "condition": "sunny"}'), {"max_tokens": 64, **NO_THINK}),
    Case("tool_result_stream_thinking", tool_result("22 degrees, sunny", ""), {"max_tokens": 96, **STREAM, **THINK},
         reasoning=True),
    # output formats
    Case("json_object", [{"role": "user", "content": "Give me a JSON object."}],
         {"response_format": {"type": "json_object"}, "max_tokens": 64, **NO_THINK}, content=json_object),
    Case("json_schema", PERSON_PROMPT,
         {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
          "max_tokens": 96, **NO_THINK}, content=fits(PERSON)),
    Case("json_schema_stream", PERSON_PROMPT,
         {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
          "max_tokens": 96, **STREAM, **NO_THINK}, content=fits(PERSON)),
    Case("json_schema_thinking", PERSON_PROMPT,
         {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
          "max_tokens": 128, **THINK}, content=fits(PERSON), reasoning=True),
    Case("structured_json", PERSON_PROMPT, {"structured_outputs": {"json": PERSON}, "max_tokens": 96, **NO_THINK},
         content=fits(PERSON)),
    Case("structured_regex", [{"role": "user", "content": "Give me a phone number."}],
         {"structured_outputs": {"regex": PHONE}, "max_tokens": 32, **NO_THINK}, content=matches(PHONE)),
    Case("structured_choice", [{"role": "user", "content": "Is the sky blue?"}],
         {"structured_outputs": {"choice": ["yes", "no", "maybe"]}, "max_tokens": 16, **NO_THINK},
         content=one_of("yes", "no", "maybe")),
    Case("structured_grammar", [{"role": "user", "content": "Pick a color."}],
         {"structured_outputs": {"grammar": 'root ::= "red" | "green" | "blue"'}, "max_tokens": 16, **NO_THINK},
         content=one_of("red", "green", "blue")),
    # sampling and length
    Case("sampling_options", HELLO,
         {"temperature": 1.0, "top_k": 5, "min_p": 0.05, "repetition_penalty": 1.1, "presence_penalty": 0.5,
          "frequency_penalty": 0.5, "seed": 42, "max_tokens": 48, **NO_THINK}, finish=("length", "stop")),
    Case("n2", HELLO, {"n": 2, "temperature": 1.0, "seed": 7, "max_tokens": 32, **NO_THINK},
         choices=2, finish=("length", "stop")),
    Case("min_tokens", HELLO, {"max_tokens": 40, "min_tokens": 30, **NO_THINK},
         finish=("length", "stop"), check=_min_tokens_reached),
    Case("stop", HELLO, {"max_tokens": 64, "stop": ["tiny", "reply"], **NO_THINK}, check=_stopped_at_stop_string),
    Case("logit_bias", HELLO, {"logit_bias": {"1324": -100}, "max_tokens": 32, **NO_THINK}, finish=("length", "stop")),
    # More than the context leaves after the prompt: vLLM lowers it, no error.
    Case("max_tokens_beyond_context_room", HELLO, {"max_tokens": 2040, **NO_THINK}),
    Case("max_tokens", HELLO, {"max_tokens": 5, **NO_THINK}, finish=("length",), check=_max_tokens_used("max_tokens")),
    Case("max_completion_tokens", HELLO, {"max_completion_tokens": 5, **NO_THINK},
         finish=("length",), check=_max_tokens_used("max_completion_tokens")),
    Case("ignore_eos", HELLO, {"max_tokens": 24, "ignore_eos": True, "skip_special_tokens": False, **NO_THINK},
         finish=("length",), check=_max_tokens_used("max_tokens")),
    # logprobs
    Case("logprobs", HELLO, {"logprobs": True, "top_logprobs": 2, "max_tokens": 8, **NO_THINK},
         finish=("length", "stop"), top_logprobs=2),
    Case("logprobs_stream", HELLO, {"logprobs": True, "top_logprobs": 2, "max_tokens": 8, **USAGE, **NO_THINK},
         finish=("length", "stop"), top_logprobs=2, check=_one_logprob_per_token),
    Case("logprobs_to_the_end", HELLO, {"logprobs": True, "top_logprobs": 2, "max_tokens": 64, **NO_THINK},
         top_logprobs=2, check=_one_logprob_per_token),
    Case("logprobs_to_the_end_stream", HELLO,
         {"logprobs": True, "top_logprobs": 2, "max_tokens": 64, **USAGE, **NO_THINK},
         top_logprobs=2, check=_one_logprob_per_token),
    Case("logprobs_tools_stream", WEATHER,
         {"tools": TOOLS, "logprobs": True, "top_logprobs": 1, "max_tokens": 64, **USAGE, **NO_THINK},
         content=empty, tools=("get_weather",), finish=("tool_calls",), top_logprobs=1,
         check=_one_logprob_per_token),
    Case("logprobs_reasoning", HELLO, {"logprobs": True, "top_logprobs": 1, "max_tokens": 12, **THINK},
         content=empty, reasoning=True, finish=("length",), top_logprobs=1),
    Case("logprobs_reasoning_stream", HELLO,
         {"logprobs": True, "top_logprobs": 1, "max_tokens": 12, **STREAM, **THINK},
         content=empty, reasoning=True, finish=("length",), top_logprobs=1),
]


# --------------------------------------------------------------------------- sending

def request_body(case: Case, model: str) -> dict:
    """The body our payload layer builds, or the raw one it refuses on purpose."""
    if case.refused is None:
        return build_payload(model, case.messages, case.values)
    with pytest.raises(PayloadError) as refused:
        build_payload(model, case.messages, case.values)
    assert refused.value.field == case.refused
    return {"model": model, "messages": case.messages, **case.values}


async def through_client(upstream: Upstream, body: dict) -> dict:
    """The answer via UpstreamClient, streams folded by StreamAccumulator."""
    async with UpstreamClient(upstream.base_url, timeout=60) as client:
        if not body.get("stream"):
            return await client.create_chat(body)
        accumulator = StreamAccumulator()
        async with contextlib.aclosing(client.stream_chat(body)) as events:
            async for event in events:
                accumulator.feed(event)
        assert accumulator.done and not accumulator.truncated
        return accumulator.result()


async def on_the_wire(upstream: Upstream, body: dict | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(base_url=upstream.base_url, timeout=60) as http:
        return await http.post("/chat/completions", content=content, headers={"content-type": "application/json"})


def wire_shapes(response: httpx.Response):
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return sse_shapes(response.text)
    return shape(response.json())


def check_answer(case: Case, body: dict, result: dict) -> None:
    choices = result["choices"]
    assert [c["index"] for c in choices] == list(range(case.choices))
    for choice in choices:
        message = choice["message"]
        assert message["role"] == "assistant"
        assert choice["finish_reason"] in case.finish, choice
        case.content(message["content"])
        if case.reasoning:
            assert message["reasoning"], "expected reasoning"
        else:
            assert not message.get("reasoning"), f"unexpected reasoning {message['reasoning']!r}"
        check_tool_calls(case, message.get("tool_calls") or [])
        check_logprobs(case, choice["logprobs"])
    check_usage(body, result["usage"])
    if case.check:
        case.check(result, body)


def check_tool_calls(case: Case, calls: list[dict]) -> None:
    assert tuple(c["function"]["name"] for c in calls) == case.tools
    for call in calls:
        assert call["type"] == "function" and call["id"]
        arguments = json.loads(call["function"]["arguments"])
        assert isinstance(arguments, dict)
        if case.args_fit_schema:
            jsonschema.validate(arguments, SCHEMAS[call["function"]["name"]])
    assert len({c["id"] for c in calls}) == len(calls), "tool call ids must differ"


def check_logprobs(case: Case, logprobs: dict | None) -> None:
    if case.top_logprobs is None:
        assert logprobs is None
        return
    entries = logprobs["content"] + logprobs.get("reasoning", [])
    assert entries
    for entry in entries:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert entry["logprob"] <= 0 and isinstance(entry["bytes"], list)
        assert len(entry["top_logprobs"]) == case.top_logprobs


def check_usage(body: dict, usage: dict | None) -> None:
    if body.get("stream") and not (body.get("stream_options") or {}).get("include_usage"):
        assert usage is None
        return
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


# --------------------------------------------------------------------------- the tests

@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_answer(case: Case, real: Upstream, sim: Upstream):
    wire = {}
    for upstream in (real, sim):
        body = request_body(case, upstream.model)
        result = await through_client(upstream, body)
        try:
            check_answer(case, body, result)
        except AssertionError as error:
            raise AssertionError(f"{upstream.name}: {error}\n{json.dumps(result, indent=1)[:3000]}") from error
        response = await on_the_wire(upstream, body)
        assert response.status_code == 200, response.text
        wire[upstream.name] = (response.headers["content-type"], wire_shapes(response))
    (real_type, real_shapes), (sim_type, sim_shapes) = wire["vllm"], wire["simulator"]
    assert sim_type == real_type
    if case.stream:
        for name in real_shapes._fields:  # first, finish, usage, every
            assert getattr(sim_shapes, name) == getattr(real_shapes, name), f"{name} chunk shapes differ"
    else:
        assert sim_shapes == real_shapes


@dataclass(frozen=True)
class ErrorCase:
    """A request vLLM refuses: its status, error type and param (None where vLLM sends null)."""

    id: str
    values: dict
    status: int
    param: str | None
    fragment: str
    type: str = "BadRequestError"
    messages: list = field(default_factory=lambda: HELLO)
    model: str | None = None  # another model name than the upstream's
    refused: str | None = None
    drop: tuple[str, ...] = ()  # keys to leave out of the raw body


LONG_PROMPT = [{"role": "user", "content": "hello " * 2100}]
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJ"
       "RU5ErkJggg==")

ERROR_CASES = [
    ErrorCase("unknown_model", {"max_tokens": 8}, 404, "model", "does not exist", "NotFoundError",
              model="no-such-model"),
    ErrorCase("unknown_model_stream", {"max_tokens": 8, "stream": True}, 404, "model", "does not exist",
              "NotFoundError", model="no-such-model"),
    ErrorCase("max_tokens_over_context", {"max_tokens": 5000}, 400, "max_tokens", "cannot be greater than max_model_len"),
    ErrorCase("prompt_too_long", {"max_tokens": 8}, 400, "input_tokens", "maximum context length is 2048 tokens",
              messages=LONG_PROMPT),
    ErrorCase("image_on_text_model", {"max_tokens": 8}, 400, None, "is not a multimodal model",
              messages=[{"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                                     {"type": "image_url", "image_url": {"url": PNG}}]}]),
    ErrorCase("temperature_above_2", {"temperature": 2.5, "max_tokens": 8}, 400, "temperature", "must be in [0, 2]"),
    ErrorCase("logit_bias_out_of_vocab", {"logit_bias": {"999999": 1}, "max_tokens": 8}, 400, "logit_bias",
              "out-of-vocab token ids"),
    ErrorCase("min_tokens_over_max_tokens", {"min_tokens": 20, "max_tokens": 5}, 400, None,
              "min_tokens must be less than or equal to max_tokens=5", refused="min_tokens"),
    ErrorCase("empty_tools", {"tools": [], "max_tokens": 8}, 400, "tools", "`tools` must not be an empty array"),
    # Refused by our validation first; vLLM's own answer must still parse.
    ErrorCase("temperature_negative", {"temperature": -1, "max_tokens": 8}, 400, "temperature",
              "temperature must be non-negative", refused="temperature"),
    ErrorCase("temperature_not_a_number", {"temperature": "hot", "max_tokens": 8}, 400, "body.temperature",
              "float_parsing", "Bad Request", refused="temperature"),
    ErrorCase("top_p_above_1", {"top_p": 1.5, "max_tokens": 8}, 400, "top_p", "top_p must be in (0, 1]",
              refused="top_p"),
    ErrorCase("top_k_below_minus_1", {"top_k": -5, "max_tokens": 8}, 400, None, "top_k must be 0 (disable)",
              refused="top_k"),
    ErrorCase("presence_penalty_above_2", {"presence_penalty": 3, "max_tokens": 8}, 400, None,
              "presence_penalty must be in [-2, 2]", refused="presence_penalty"),
    ErrorCase("n_zero", {"n": 0, "max_tokens": 8}, 400, None, "n must be at least 1", refused="n"),
    ErrorCase("max_tokens_zero", {"max_tokens": 0}, 400, "max_tokens", "max_tokens must be at least 1",
              refused="max_tokens"),
    ErrorCase("too_many_stop_strings", {"stop": ["a", "b", "c", "d", "e"], "max_tokens": 8}, 400, "body.stop",
              "at most 4 items", "Bad Request", refused="stop"),
    ErrorCase("top_logprobs_too_large", {"logprobs": True, "top_logprobs": 50, "max_tokens": 4}, 400, "logprobs",
              "Requested sample logprobs of 50, which is greater than max allowed: 20", refused="top_logprobs"),
    ErrorCase("top_logprobs_without_logprobs", {"top_logprobs": 2, "max_tokens": 4}, 400, "top_logprobs",
              "`logprobs` must be set to true", refused="top_logprobs"),
    ErrorCase("tool_choice_without_tools", {"tool_choice": "required", "max_tokens": 8}, 400, "tool_choice",
              "When using `tool_choice`, `tools` must be set.", refused="tool_choice"),
    ErrorCase("tool_choice_names_unknown_tool",
              {"tools": TOOLS, "tool_choice": named("does_not_exist"), "max_tokens": 16}, 400, "tool_choice",
              "does not match any of the specified `tools`", messages=WEATHER, refused="tool_choice"),
    ErrorCase("stream_options_without_stream", {"stream_options": {"include_usage": True}, "max_tokens": 8}, 400,
              "stream_options", "Stream options can only be defined when `stream=True`.", refused="stream_options"),
    ErrorCase("logit_bias_not_token_ids", {"logit_bias": {"abc": 1}, "max_tokens": 8}, 400, "logit_bias",
              "cannot be converted to integer token IDs", refused="logit_bias['abc']"),
    ErrorCase("empty_stop_string", {"stop": [""], "max_tokens": 8}, 400, None, "stop cannot contain an empty string",
              refused="stop[0]"),
    ErrorCase("unknown_response_format", {"response_format": {"type": "yaml"}, "max_tokens": 8}, 400,
              "body.response_format.type", "literal_error", "Bad Request", refused="response_format.type"),
    ErrorCase("two_structured_outputs", {"structured_outputs": {"regex": "a+", "choice": ["a"]}, "max_tokens": 8}, 400,
              None, "You can only use one kind of constraints", refused="structured_outputs"),
    ErrorCase("empty_messages", {"max_tokens": 8}, 400, None, "empty conversation", messages=[], refused="messages"),
    ErrorCase("missing_messages", {"max_tokens": 8}, 400, "body.messages", "Field required", "Bad Request",
              messages=[], refused="messages", drop=("messages",)),
]


def error_body(case: ErrorCase, model: str) -> dict:
    model = case.model or model
    if case.refused is None:
        return build_payload(model, case.messages, case.values)
    with pytest.raises(PayloadError) as refused:
        build_payload(model, case.messages, case.values)
    assert refused.value.field == case.refused
    body = {"model": model, "messages": case.messages, **case.values}
    return {k: v for k, v in body.items() if k not in case.drop}


async def client_error(upstream: Upstream, body: dict) -> UpstreamHTTPError:
    async with UpstreamClient(upstream.base_url, timeout=60) as client:
        with pytest.raises(UpstreamHTTPError) as raised:
            if body.get("stream"):
                async with contextlib.aclosing(client.stream_chat(body)) as events:
                    async for _ in events:
                        pass
            else:
                await client.create_chat(body)
    return raised.value


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.id for c in ERROR_CASES])
async def test_error(case: ErrorCase, real: Upstream, sim: Upstream):
    errors, wire = {}, {}
    for upstream in (real, sim):
        body = error_body(case, upstream.model)
        error = await client_error(upstream, body)
        assert (error.status, error.type, error.param, error.code) == (case.status, case.type, case.param, case.status), \
            f"{upstream.name}: {error!r}"
        assert case.fragment in error.message, f"{upstream.name}: {error.message}"
        errors[upstream.name] = error
        response = await on_the_wire(upstream, body)
        assert response.status_code == case.status
        wire[upstream.name] = (response.headers["content-type"], shape(response.json()))
    assert wire["simulator"] == wire["vllm"]
    # Same situation, same words (the model name aside).
    real_message = errors["vllm"].message.replace(real.model, sim.model)
    assert errors["simulator"].message == real_message


async def test_malformed_json(real: Upstream, sim: Upstream):
    """Bytes that are not JSON: a pydantic-style 400 naming the offset."""
    answers = {}
    for upstream in (real, sim):
        raw = ('{"model": "%s", "messages": [{"role": "user", "content": "hi"}' % upstream.model).encode()
        response = await on_the_wire(upstream, raw)
        error = parse_error_body(response.status_code, response.content, response.headers["content-type"])
        assert (error.status, error.type, error.param) == (400, "Bad Request", f"body.{len(raw)}")
        assert "JSON decode error" in error.message
        answers[upstream.name] = (response.headers["content-type"], shape(response.json()))
    assert answers["simulator"] == answers["vllm"]


async def test_seed_repeats_the_answer(real: Upstream, sim: Upstream):
    for upstream in (real, sim):
        body = build_payload(upstream.model, HELLO, {"temperature": 2.0, "seed": 1234, "max_tokens": 24, **NO_THINK})
        first, second = [await through_client(upstream, body) for _ in range(2)]
        assert first["choices"][0]["message"] == second["choices"][0]["message"], upstream.name


async def test_models_health_and_version(real: Upstream, sim: Upstream):
    listed, versions = {}, {}
    for upstream in (real, sim):
        async with UpstreamClient(upstream.base_url, timeout=30) as client:
            assert await client.health()
            models = await client.list_models()
        assert upstream.model in [m["id"] for m in models]
        listed[upstream.name] = shape(models[0])
        root = upstream.base_url.removesuffix("/v1")
        async with httpx.AsyncClient(timeout=30) as http:
            versions[upstream.name] = shape((await http.get(root + "/version")).json())
    assert listed["simulator"] == listed["vllm"]
    assert versions["simulator"] == versions["vllm"]
