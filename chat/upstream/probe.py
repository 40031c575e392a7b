"""The capability probe: a matrix of small real requests to one endpoint.

    cells = await run_probe(client, model)   # list of Cell, in CHECKS order

Each cell is "pass", "fail" (the request failed, or its answer was not what the feature
promises) or "unsupported" (the server says it does not offer this: a missing route, vLLM's
400 for a feature it was not started with, no reasoning field), with the server's own message
and the latency. The requests are the real transcripts' (tests/fixtures/vllm-transcripts), kept
short (few output tokens) so a CPU server answers the whole matrix in seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from .chunks import UsageReport
from .errors import UpstreamError

PASS, FAIL, UNSUPPORTED = "pass", "fail", "unsupported"
PARALLEL = 4  # requests in flight at once: quick, without crowding a small server

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather", "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                       "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time", "description": "Get the current time in a timezone",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
    },
}
NO_THINKING = {"enable_thinking": False}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"], "additionalProperties": False,
}
PHONE = r"\+1-[0-9]{3}-[0-9]{3}-[0-9]{4}"
CHOICES = ["yes", "no", "maybe"]
COLORS = ("red", "green", "blue")
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


@dataclass
class Cell:
    key: str
    label: str
    status: str
    message: str
    latency_ms: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class Verdict(Exception):
    """Raised by a check with its outcome when the answer arrived but says fail / unsupported."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Context:
    client: object
    model: str
    facts: dict  # what the checks learn for the endpoint: max_model_len, version, token count

    def chat(self, **fields) -> dict:
        body = {"model": self.model, "messages": [{"role": "user", "content": fields.pop("prompt", "Hello!")}]}
        body.update(fields)
        return body


def _message(answer: dict, index: int = 0) -> dict:
    choices = answer.get("choices") or []
    return (choices[index].get("message") or {}) if len(choices) > index else {}


def _calls(answer: dict) -> list[dict]:
    return _message(answer).get("tool_calls") or []


def _content(answer: dict) -> str:
    return _message(answer).get("content") or ""


def _cut(answer: dict) -> bool:
    choices = answer.get("choices") or [{}]
    return choices[0].get("finish_reason") == "length"


# --- the checks: each returns the pass message, or raises Verdict / UpstreamError ----------------


async def check_models(ctx: Context) -> str:
    models = await ctx.client.list_models()
    served = {m.get("id"): m for m in models if isinstance(m, dict)}
    if ctx.model not in served:
        raise Verdict(FAIL, f"{ctx.model!r} is not served here (served: {', '.join(map(str, served)) or 'none'})")
    limit = served[ctx.model].get("max_model_len")
    if isinstance(limit, int) and not isinstance(limit, bool):
        ctx.facts["max_model_len"] = limit
        return f"served; max_model_len {limit}"
    return "served (no max_model_len listed)"


async def check_version(ctx: Context) -> str:
    version = await ctx.client.version()
    ctx.facts["version"] = version
    return f"vLLM {version}"


async def check_tokenize(ctx: Context) -> str:
    answer = await ctx.client.tokenize({"model": ctx.model, "messages": [{"role": "user", "content": "Hello!"}]})
    if answer.get("max_model_len"):
        ctx.facts.setdefault("max_model_len", answer["max_model_len"])
    return f"{answer['count']} tokens for a one-line prompt"


async def check_reasoning(ctx: Context) -> str:
    body = ctx.chat(prompt="Think first: what is 2 + 3?", max_tokens=24, chat_template_kwargs={"enable_thinking": True})
    answer = await ctx.client.create_chat(body)
    message = _message(answer)
    if message.get("reasoning"):
        return "the answer carries `reasoning` (a reasoning parser is active)"
    if message.get("reasoning_content"):
        return "the answer carries `reasoning_content` (an older vLLM's reasoning parser)"
    if re.search(r"<think>|\[THINK\]", _content(answer)):
        raise Verdict(UNSUPPORTED, "the thinking came back inside `content`: the server runs without --reasoning-parser")
    raise Verdict(UNSUPPORTED, "no reasoning in the answer (not a reasoning model, or no --reasoning-parser)")


def _tool_check(choice, want: str | None = None, at_most_one: bool = False, prompt="What's the weather in Paris?"):
    async def check(ctx: Context) -> str:
        body = ctx.chat(prompt=prompt, tools=[WEATHER, TIME], tool_choice=choice, max_tokens=48,
                        chat_template_kwargs=NO_THINKING)
        if at_most_one:
            body["parallel_tool_calls"] = False
        answer = await ctx.client.create_chat(body)
        calls = _calls(answer)
        names = [c.get("function", {}).get("name") for c in calls]
        if want == "any" and not calls:
            raise Verdict(FAIL, f"accepted, but no tool call came back: {_content(answer)[:120]!r}")
        if want not in (None, "any") and names[:1] != [want]:
            raise Verdict(FAIL, f"accepted, but the call was not {want}: {names or _content(answer)[:120]!r}")
        if at_most_one and len(calls) > 1:
            raise Verdict(FAIL, f"{len(calls)} tool calls despite parallel_tool_calls false")
        return f"called {', '.join(names)}" if names else "accepted; answered in text"

    return check


async def check_json_object(ctx: Context) -> str:
    body = ctx.chat(prompt="Give me a JSON object.", max_tokens=64, response_format={"type": "json_object"},
                    chat_template_kwargs=NO_THINKING)
    return _json_answer(await ctx.client.create_chat(body), None)


async def check_json_schema(ctx: Context) -> str:
    body = ctx.chat(prompt="Describe a person as JSON.", max_tokens=96, chat_template_kwargs=NO_THINKING,
                    response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}})
    return _json_answer(await ctx.client.create_chat(body), PERSON)


async def check_so_json(ctx: Context) -> str:
    body = ctx.chat(prompt="Describe a person as JSON.", max_tokens=96, chat_template_kwargs=NO_THINKING,
                    structured_outputs={"json": PERSON})
    return _json_answer(await ctx.client.create_chat(body), PERSON)


def _json_answer(answer: dict, schema: dict | None) -> str:
    text = _content(answer)
    try:
        value = json.loads(text)
    except ValueError:
        if _cut(answer):
            return "accepted (the JSON was cut at max_tokens)"
        raise Verdict(FAIL, f"the answer is not JSON: {text[:120]!r}") from None
    if not isinstance(value, dict):
        raise Verdict(FAIL, f"the answer is JSON but not an object: {text[:120]!r}")
    if schema is not None and not set(schema["required"]) <= set(value):
        raise Verdict(FAIL, f"the object lacks required keys: {text[:120]!r}")
    return f"conforming JSON: {text[:60]}"


async def _constrained_text(ctx: Context, prompt: str, max_tokens: int, constraint: dict) -> str:
    """The regex, choice and grammar checks' request: one prompt under one structured_outputs constraint, thinking off."""
    body = ctx.chat(prompt=prompt, max_tokens=max_tokens, chat_template_kwargs=NO_THINKING, structured_outputs=constraint)
    return _content(await ctx.client.create_chat(body))


async def check_so_regex(ctx: Context) -> str:
    text = await _constrained_text(ctx, "Give me a phone number.", 32, {"regex": PHONE})
    if not re.fullmatch(PHONE, text):
        raise Verdict(FAIL, f"the answer does not match the regex: {text[:80]!r}")
    return f"matches: {text}"


async def check_so_choice(ctx: Context) -> str:
    text = await _constrained_text(ctx, "Is the sky blue?", 16, {"choice": CHOICES})
    if text not in CHOICES:
        raise Verdict(FAIL, f"the answer is not one of the choices: {text[:80]!r}")
    return f"chose {text!r}"


async def check_so_grammar(ctx: Context) -> str:
    text = await _constrained_text(ctx, "Pick a color.", 16, {"grammar": 'root ::= "red" | "green" | "blue"'})
    if text not in COLORS:
        raise Verdict(FAIL, f"the answer does not follow the grammar: {text[:80]!r}")
    return f"follows the grammar: {text!r}"


async def check_logprobs(ctx: Context) -> str:
    body = ctx.chat(max_tokens=4, logprobs=True, top_logprobs=2, chat_template_kwargs=NO_THINKING)
    answer = await ctx.client.create_chat(body)
    entries = ((answer.get("choices") or [{}])[0].get("logprobs") or {}).get("content") or []
    if not entries:
        raise Verdict(FAIL, "no logprobs in the answer")
    if any(len(e.get("top_logprobs") or []) != 2 for e in entries):
        raise Verdict(FAIL, "top_logprobs did not list 2 alternatives per token")
    return f"{len(entries)} tokens with 2 alternatives each"


async def check_n2(ctx: Context) -> str:
    answer = await ctx.client.create_chat(ctx.chat(max_tokens=4, n=2, chat_template_kwargs=NO_THINKING))
    count = len(answer.get("choices") or [])
    if count != 2:
        raise Verdict(FAIL, f"{count} choice(s) came back")
    return "2 choices"


async def check_stream_usage(ctx: Context) -> str:
    body = ctx.chat(max_tokens=4, stream=True, stream_options={"include_usage": True}, chat_template_kwargs=NO_THINKING)
    usage = None
    async for event in ctx.client.stream_chat(body):
        if isinstance(event, UsageReport):
            usage = event.usage
    if not usage:
        raise Verdict(FAIL, "the stream ended without a usage chunk")
    return f"usage chunk: {usage.get('prompt_tokens')} in, {usage.get('completion_tokens')} out"


async def check_image(ctx: Context) -> str:
    content = [{"type": "text", "text": "What is in this image?"}, {"type": "image_url", "image_url": {"url": PIXEL}}]
    body = {"model": ctx.model, "messages": [{"role": "user", "content": content}], "max_tokens": 8,
            "chat_template_kwargs": NO_THINKING}
    await ctx.client.create_chat(body)
    return "accepted an image_url part"


Check = Callable[[Context], Awaitable[str]]

# key, label, check, and what a 400 saying the feature is off looks like (→ unsupported).
CHECKS: list[tuple[str, str, Check, str | None]] = [
    ("models", "/v1/models", check_models, None),
    ("version", "/version", check_version, None),
    ("tokenize", "/tokenize", check_tokenize, None),
    ("reasoning", "Reasoning parser", check_reasoning, None),
    ("tools_auto", "Tools: auto", _tool_check("auto"), r"auto.*tool choice|enable-auto-tool-choice"),
    ("tools_required", "Tools: required", _tool_check("required", want="any"), r"tool.?call.?parser|tool choice"),
    ("tools_named", "Tools: named", _tool_check({"type": "function", "function": {"name": "get_weather"}}, want="get_weather"), r"tool.?call.?parser"),
    ("parallel_tool_calls", "parallel_tool_calls false", _tool_check("required", want="any", at_most_one=True, prompt="Weather in Paris and Tokyo?"), r"tool.?call.?parser|tool choice"),
    ("json_object", "response_format json_object", check_json_object, None),
    ("json_schema", "response_format json_schema", check_json_schema, None),
    ("so_json", "structured_outputs json", check_so_json, None),
    ("so_regex", "structured_outputs regex", check_so_regex, None),
    ("so_choice", "structured_outputs choice", check_so_choice, None),
    ("so_grammar", "structured_outputs grammar", check_so_grammar, None),
    ("logprobs", "logprobs + top_logprobs", check_logprobs, None),
    ("n2", "n = 2", check_n2, None),
    ("stream_usage", "Stream usage chunk", check_stream_usage, None),
    ("image", "Image input", check_image, r"not a multimodal model|image"),
]
LABELS = {key: label for key, label, _, _ in CHECKS}


async def _one(ctx: Context, key: str, label: str, check: Check, off: str | None, gate: asyncio.Semaphore) -> Cell:
    async with gate:
        started = time.perf_counter()
        try:
            message = await check(ctx)
            status = PASS
        except Verdict as verdict:
            status, message = verdict.status, verdict.message
        except UpstreamError as error:
            status, message = _classify(error, off)
        latency = round((time.perf_counter() - started) * 1000, 1)
        return Cell(key, label, status, message, latency)


def _classify(error: UpstreamError, off: str | None) -> tuple[str, str]:
    text = f"HTTP {error.status}: {error.message}" if error.status else error.message
    if error.status == 404 and error.type != "NotFoundError":
        return UNSUPPORTED, f"no such route on this server ({text})"
    if error.status in (400, 422) and off and re.search(off, error.message, re.IGNORECASE):
        return UNSUPPORTED, text
    if error.status == 501:
        return UNSUPPORTED, text
    return FAIL, text


async def run_probe(client, model: str, *, only: list[str] | None = None) -> tuple[list[Cell], dict]:
    """Every check (or those keyed in `only`) against `client` for `model`; (cells, facts)."""
    ctx = Context(client, model, {})
    gate = asyncio.Semaphore(PARALLEL)
    chosen = [c for c in CHECKS if only is None or c[0] in only]
    cells = await asyncio.gather(*(_one(ctx, key, label, check, off, gate) for key, label, check, off in chosen))
    return list(cells), ctx.facts
