"""Streamed `chat.completion.chunk` objects -> events -> one final response.

Events are the contract between this layer and everything above it (the
consumer, the fragments, the simulator's tests), so each one documents its
fields. They are frozen dataclasses; don't subclass them. `choice` is always
the choice's `index` (several choices stream interleaved when `n` > 1).

    parser = StreamParser()            # sans-I/O: bytes in, events out
    acc = StreamAccumulator()
    for piece in pieces:
        for event in parser.feed(piece):
            acc.feed(event)
    for event in parser.close():       # StreamTruncated if [DONE] never came
        acc.feed(event)
    acc.result()                       # shaped like vLLM's non-stream response

Errors are exceptions, not events: an error object inside the stream raises
UpstreamStreamError, undecodable data raises UpstreamProtocolError, in
stream order (after the events that came before them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import orjson

from .errors import UpstreamError, UpstreamProtocolError, UpstreamStreamError, error_from_object
from .sse import DONE, SSEDecoder

__all__ = [
    "ChoiceFinished",
    "ContentDelta",
    "Event",
    "LogprobsDelta",
    "ReasoningDelta",
    "RoleDelta",
    "StreamAccumulator",
    "StreamDone",
    "StreamMeta",
    "StreamParser",
    "StreamTruncated",
    "ToolCallDelta",
    "UsageReport",
    "check_response",
    "parse_chunk",
]


@dataclass(frozen=True)
class StreamMeta:
    """Identity of the completion; opens the events of every chunk, so counting
    them counts the stream's chunks (the accumulator's `chunks`).

    id: vLLM's completion id ("chatcmpl-..."); model: the served model name as
    the server reports it (may differ from the requested alias); created: Unix
    seconds. Any may be None when an imitation server omits it.
    """

    id: str | None
    model: str | None
    created: int | None


@dataclass(frozen=True)
class RoleDelta:
    """The choice's author role, sent once at the start ("assistant")."""

    choice: int
    role: str


@dataclass(frozen=True)
class ContentDelta:
    """More answer text for a choice; append `text` to what came before."""

    choice: int
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """More reasoning ("thinking") text for a choice, parsed out by vLLM's
    reasoning parser; read from `delta.reasoning` or the older
    `delta.reasoning_content`. Text left inline as <think> is ContentDelta:
    see thinking.py."""

    choice: int
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call. Pieces with the same (choice, index) belong
    together: the first carries `id`, `type` and `name` (arguments usually
    None), later ones only `arguments` fragments (a few characters each) to be
    concatenated. A second call in the same turn has index 1, and so on."""

    choice: int
    index: int
    id: str | None
    type: str | None
    name: str | None
    arguments: str | None


@dataclass(frozen=True)
class LogprobsDelta:
    """Token log probabilities for the text in the same chunk.

    content: vLLM's `logprobs.content` entries, one per token:
    {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}.
    field: which text they belong to: "content", "reasoning", or None when the
    chunk carried no text (e.g. a tag token swallowed by the reasoning parser);
    the accumulator then files them with the neighbouring text.
    """

    choice: int
    content: list[dict]
    field: str | None


@dataclass(frozen=True)
class ChoiceFinished:
    """The choice is complete.

    finish_reason: "stop" (natural end or a stop string), "length"
    (max_tokens), "tool_calls", "abort", ... ; note that vLLM reports "stop",
    not "tool_calls", when a named tool_choice forced the call.
    stop_reason: vLLM extension: the stop string or token id that ended it,
    or None for EOS.
    """

    choice: int
    finish_reason: str
    stop_reason: str | int | None = None


@dataclass(frozen=True)
class UsageReport:
    """Token usage: {"prompt_tokens", "completion_tokens", "total_tokens", ...}.

    Sent once in a final chunk with `choices: []` when
    `stream_options.include_usage` is on, or in every chunk with vLLM's
    `continuous_usage_stats` (running totals: the last one wins).
    """

    usage: dict


@dataclass(frozen=True)
class StreamDone:
    """`data: [DONE]` arrived: the stream ended normally."""


@dataclass(frozen=True)
class StreamTruncated:
    """The stream ended without `[DONE]`. Only StreamParser.close() emits it;
    the client raises UpstreamProtocolError(truncated=True) instead."""


Event = (
    StreamMeta
    | RoleDelta
    | ContentDelta
    | ReasoningDelta
    | ToolCallDelta
    | LogprobsDelta
    | ChoiceFinished
    | UsageReport
    | StreamDone
    | StreamTruncated
)


def parse_chunk(obj: dict, previous: StreamMeta | None = None) -> list[Event]:
    """Events carried by one decoded chunk: its StreamMeta, then the rest in wire order.

    Tolerant of missing fields (OpenAI imitations omit some), strict about types: a value of
    the wrong type raises UpstreamProtocolError naming it, so nothing above this layer ever
    meets a number where text belongs. Raises UpstreamStreamError for an in-stream error object.
    `previous`: the stream's last StreamMeta, reused when this chunk's identity is the same.
    """
    if not isinstance(obj, dict):
        raise UpstreamProtocolError(
            f"expected a JSON object in the stream, got {type(obj).__name__}", phase="stream"
        )
    error = error_from_object(obj)
    if error is not None:
        raise UpstreamStreamError(
            error.message, status=error.status, type=error.type, param=error.param, code=error.code
        )
    get = obj.get
    choices = _typed(get("choices") or [], list, "choices")
    ident = (_typed(get("id"), str, "id"), _typed(get("model"), str, "model"), _typed(get("created"), int, "created"))
    # A stream's chunks share their identity: the previous chunk's (immutable) StreamMeta is reused.
    if previous is not None and (previous.id, previous.model, previous.created) == ident:
        meta = previous
    else:
        meta = StreamMeta(*ident)
    events: list[Event] = [meta]
    for position, choice in enumerate(choices):
        events.extend(_parse_choice(_typed(choice, dict, "choices[", position, "]"), position))
    usage = get("usage")
    if usage is not None:
        events.append(UsageReport(check_usage(usage)))
    return events


_TYPE_NAMES = {str: "text", int: "a whole number", dict: "an object", list: "a list", float: "a number"}


def _typed(value, kind, *path, phase: str = "stream", allow_none: bool = True):
    """`value` if it is of `kind` (None allowed); else UpstreamProtocolError naming the field.
    The field's path comes in pieces, joined only for the message (a chunk checks about 15 fields)."""
    if type(value) is kind or value is None and allow_none:
        return value
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        shown = json.dumps(value, ensure_ascii=True)[:40]
        where = "".join(str(part) for part in path)
        raise UpstreamProtocolError(
            f"the server sent `{where}` as {shown}, expected {_TYPE_NAMES.get(kind, kind.__name__)}", phase=phase
        )
    return value


def check_usage(usage, *, phase: str = "stream") -> dict:
    """A `usage` object whose counts are whole numbers (details objects are kept as they are)."""
    _typed(usage, dict, "usage", phase=phase, allow_none=False)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        _typed(usage.get(key), int, "usage.", key, phase=phase)
    return usage


def check_text(text: str, path: str, *, phase: str = "stream") -> str:
    """Text that can be stored and shown: JSON escapes can make lone UTF-16 surrogates (refused)
    and NUL characters, which PostgreSQL cannot store (shown as U+FFFD)."""
    if not text.isascii():  # (ASCII holds no surrogate: the common case costs no encoding)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UpstreamProtocolError(f"the server sent `{path}` with an invalid character (a lone UTF-16 surrogate)", phase=phase) from None
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _string(value, *path) -> str | None:
    if value is None:
        return None
    value = _typed(value, str, *path)
    if value.isascii():  # check_text's common case, without building the path
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    return check_text(value, "".join(str(part) for part in path))


def _parse_choice(choice: dict, position: int) -> list[Event]:
    # The field paths of error messages are built only when one is needed (see _typed).
    where = ("choices[", position, "]")
    index = choice.get("index", position)
    if type(index) is not int:
        index = _typed(index, int, *where, ".index", allow_none=False)
    delta = _typed(choice.get("delta") or {}, dict, *where, ".delta")
    events: list[Event] = []
    role = _string(delta.get("role"), *where, ".delta.role")
    if role:
        events.append(RoleDelta(index, role))
    reasoning = _string(delta.get("reasoning"), *where, ".delta.reasoning")
    if reasoning is None:
        reasoning = _string(delta.get("reasoning_content"), *where, ".delta.reasoning_content")  # vLLM < 0.10's name
    if reasoning:
        events.append(ReasoningDelta(index, reasoning))
    content = _string(delta.get("content"), *where, ".delta.content")
    if content:
        events.append(ContentDelta(index, content))
    calls = delta.get("tool_calls")
    for position_in_list, call in enumerate(_typed(calls, list, *where, ".delta.tool_calls") if calls else ()):
        at = (*where, ".delta.tool_calls[", position_in_list, "]")
        call = _typed(call, dict, *at, allow_none=False)
        function = _typed(call.get("function") or {}, dict, *at, ".function")
        events.append(
            ToolCallDelta(
                choice=index,
                index=_typed(call.get("index", position_in_list), int, *at, ".index", allow_none=False),
                id=_string(call.get("id"), *at, ".id"),
                type=_string(call.get("type"), *at, ".type"),
                name=_string(function.get("name"), *at, ".function.name"),
                arguments=_string(function.get("arguments"), *at, ".function.arguments"),
            )
        )
    logprobs = choice.get("logprobs")
    if logprobs is not None:
        logprobs = _typed(logprobs, dict, *where, ".logprobs")
        if logprobs.get("content"):
            tokens = _typed(logprobs["content"], list, *where, ".logprobs.content")
            for i, token in enumerate(tokens):
                _typed(token, dict, *where, ".logprobs.content[", i, "]", allow_none=False)
            field = "content" if content else "reasoning" if reasoning else None
            events.append(LogprobsDelta(index, list(tokens), field))
    finish_reason = _string(choice.get("finish_reason"), *where, ".finish_reason")
    if finish_reason:
        stop_reason = choice.get("stop_reason")
        if stop_reason is not None and not isinstance(stop_reason, str | int) or isinstance(stop_reason, bool):
            _typed(stop_reason, str, *where, ".stop_reason")
        events.append(ChoiceFinished(index, finish_reason, stop_reason))
    return events


def check_response(obj) -> dict:
    """A non-streamed answer with every field the playground reads of the right type (the
    same rules as the stream's); UpstreamProtocolError names the first that is not."""
    phase = "request"
    _typed(obj, dict, "response", phase=phase, allow_none=False)
    for key in ("id", "model"):
        _typed(obj.get(key), str, key, phase=phase)
    for position, choice in enumerate(_typed(obj.get("choices") or [], list, "choices", phase=phase)):
        where = f"choices[{position}]"
        _typed(choice, dict, where, phase=phase, allow_none=False)
        _typed(choice.get("index", position), int, f"{where}.index", phase=phase, allow_none=False)
        message = _typed(choice.get("message") or {}, dict, f"{where}.message", phase=phase)
        for key in ("content", "reasoning", "reasoning_content", "role"):
            value = _typed(message.get(key), str, f"{where}.message.{key}", phase=phase)
            if value is not None:
                check_text(value, f"{where}.message.{key}", phase=phase)
        for i, call in enumerate(_typed(message.get("tool_calls") or [], list, f"{where}.message.tool_calls", phase=phase)):
            at = f"{where}.message.tool_calls[{i}]"
            _typed(call, dict, at, phase=phase, allow_none=False)
            function = _typed(call.get("function") or {}, dict, f"{at}.function", phase=phase)
            for key in ("name", "arguments"):
                value = _typed(function.get(key), str, f"{at}.function.{key}", phase=phase)
                if value is not None:
                    check_text(value, f"{at}.function.{key}", phase=phase)
        _typed(choice.get("logprobs"), dict, f"{where}.logprobs", phase=phase)
        _typed(choice.get("finish_reason"), str, f"{where}.finish_reason", phase=phase)
    if obj.get("usage") is not None:
        check_usage(obj["usage"], phase=phase)
    return obj


def _not_json(name: str):
    """NaN and Infinity: Python's parser takes them, JSON (and PostgreSQL) do not."""
    raise ValueError(f"{name} is not JSON")


# One decoder for every chunk: json.loads with an option builds a new decoder (and its scanner)
# per call, a third of the cost of decoding a token's chunk.
_decode = json.JSONDecoder(parse_constant=_not_json).decode
_fast_decode = orjson.loads


def decode_chunk(data: str):
    """One chunk's JSON. orjson first (a quarter of the json module's cost); what it refuses (lone
    surrogates, numbers beyond a double, NaN and Infinity, anything malformed) goes to the json
    module, whose answer or error is the one the checks above are written for. (orjson reads a
    whole number beyond 64 bits as a float: such a count or id is then refused as not whole.)"""
    try:
        return _fast_decode(data)
    except ValueError:  # orjson.JSONDecodeError is one
        return _decode(data)


class StreamParser:
    """Sans-I/O: raw SSE bytes (any split) in, events out.

    Emits StreamMeta first for every chunk, StreamDone at `[DONE]`, and
    StreamTruncated from close() if `[DONE]` never came. Anything after
    `[DONE]` is ignored.

    Errors keep their place in the stream: when a piece holds good chunks
    and then an error, feed() returns the good events and the error is
    raised by the next feed(), check() or close(). Call check() after
    handling each batch.
    """

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._error: UpstreamError | None = None
        self._meta: StreamMeta | None = None
        self.done = False

    def feed(self, piece: bytes | str) -> list[Event]:
        self.check()
        if self.done:
            return []
        return self._events(self._decoder.feed(piece))

    def check(self) -> None:
        """Raise the error that ended the last batch, if any."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> list[Event]:
        """End of input. An event left without its blank line still counts;
        a half-received chunk is dropped (the stream was cut: truncated)."""
        self.check()
        if self.done:
            return []
        try:
            events = self._events(self._decoder.flush())  # at most one event
        except UpstreamStreamError:
            raise
        except UpstreamProtocolError:
            events = []  # a half-received chunk: the stream was cut
        if not self.done:
            events.append(StreamTruncated())
        return events

    def _events(self, datas) -> list[Event]:
        events: list[Event] = []
        for data in datas:
            if self.done:
                break
            try:
                events.extend(self._parse(data))
            except UpstreamError as error:
                if not events:
                    raise
                self._error = error
                break
        return events

    def _parse(self, data) -> list[Event]:
        if data is DONE:
            self.done = True
            return [StreamDone()]
        try:
            obj = decode_chunk(data)
        except ValueError:
            raise UpstreamProtocolError(f"undecodable data in the stream: {data[:120]!r}", phase="stream") from None
        events = parse_chunk(obj, self._meta)
        self._meta = events[0]
        return events


@dataclass
class _ToolCall:
    id: str | None = None
    type: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Choice:
    role: str = "assistant"
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCall] = field(default_factory=dict)
    logprobs: dict[str, list[dict]] = field(default_factory=lambda: {"content": [], "reasoning": []})
    pending_logprobs: list[dict] = field(default_factory=list)  # no text seen yet
    last_field: str | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None


class StreamAccumulator:
    """Folds events into the final response, as vLLM would have answered
    without streaming. Pure; feed it events in order, call result() any time
    (a partial result is what to save when a stream is stopped or fails)."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.created: int | None = None
        self.usage: dict | None = None
        self.chunks = 0  # JSON chunks received (the SSE data events other than [DONE]), for the inspector
        self.done = False
        self.truncated = False
        self._choices: dict[int, _Choice] = {}

    def feed(self, event: Event) -> None:
        if isinstance(event, StreamMeta):  # one per chunk
            self.chunks += 1
            self.id = event.id or self.id
            self.model = event.model or self.model
            self.created = event.created if event.created is not None else self.created
        elif isinstance(event, UsageReport):
            self.usage = event.usage
        elif isinstance(event, StreamDone):
            self.done = True
        elif isinstance(event, StreamTruncated):
            self.truncated = True
        else:
            self._feed_choice(self._choice(event.choice), event)

    def _choice(self, index: int) -> _Choice:
        choice = self._choices.get(index)  # (setdefault would build a _Choice for every event)
        if choice is None:
            choice = self._choices[index] = _Choice()
        return choice

    def _feed_choice(self, choice: _Choice, event: Event) -> None:
        if isinstance(event, RoleDelta):
            choice.role = event.role
        elif isinstance(event, ContentDelta):
            self._text(choice, "content", event.text)
        elif isinstance(event, ReasoningDelta):
            self._text(choice, "reasoning", event.text)
        elif isinstance(event, ToolCallDelta):
            call = choice.tool_calls.setdefault(event.index, _ToolCall())
            call.id = call.id or event.id
            call.type = call.type or event.type
            call.name += event.name or ""
            if event.arguments:
                call.arguments.append(event.arguments)
        elif isinstance(event, LogprobsDelta):
            where = event.field or choice.last_field
            if where is None:
                choice.pending_logprobs.extend(event.content)
            else:
                choice.logprobs[where].extend(event.content)
        elif isinstance(event, ChoiceFinished):
            choice.finish_reason = event.finish_reason
            choice.stop_reason = event.stop_reason

    @staticmethod
    def _text(choice: _Choice, where: str, text: str) -> None:
        getattr(choice, where).append(text)
        choice.last_field = where
        if choice.pending_logprobs:  # tokens before the first text belong to it
            choice.logprobs[where][:0] = choice.pending_logprobs
            choice.pending_logprobs = []

    def text(self, choice: int = 0) -> str:
        """The content received so far for one choice."""
        return "".join(self._choices[choice].content) if choice in self._choices else ""

    def result(self) -> dict:
        """The response as vLLM's non-stream shape (`object: chat.completion`).

        message.content / message.reasoning are None when nothing arrived;
        message.tool_calls is always a list; logprobs is None or
        {"content": [...]} plus "reasoning": [...] when reasoning tokens had
        logprobs (vLLM's non-stream answer mixes both into "content").
        """
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [self._choice_result(i, c) for i, c in sorted(self._choices.items())],
            "usage": self.usage,
        }

    @staticmethod
    def _choice_result(index: int, choice: _Choice) -> dict:
        logprobs = None
        content_lp = choice.logprobs["content"] + choice.pending_logprobs
        if content_lp or choice.logprobs["reasoning"]:
            logprobs = {"content": content_lp}
            if choice.logprobs["reasoning"]:
                logprobs["reasoning"] = choice.logprobs["reasoning"]
        return {
            "index": index,
            "message": {
                "role": choice.role,
                "content": "".join(choice.content) if choice.content else None,
                "reasoning": "".join(choice.reasoning) if choice.reasoning else None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": call.type or "function",
                        "function": {"name": call.name, "arguments": "".join(call.arguments)},
                    }
                    for _, call in sorted(choice.tool_calls.items())
                ],
            },
            "logprobs": logprobs,
            "finish_reason": choice.finish_reason,
            "stop_reason": choice.stop_reason,
        }
