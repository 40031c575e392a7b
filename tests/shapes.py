"""JSON shapes: keys (in order) and JSON types, values aside.

Two answers "have the same shape" when they differ only in values: the
simulator against the recorded transcripts (tests/simulator) and against a
live vLLM server (tests/vllm). Pure helpers, no pytest or Django.
"""

from __future__ import annotations

import json
from typing import NamedTuple


# Fields whose JSON type depends on what happened, by vLLM's own schema: stop_reason is null (end of
# sequence), an integer (a stop token id; e.g. a grammar that ends on <|im_end|>) or a string (a stop string).
UNION_FIELDS = {"stop_reason": "null|integer|string"}


def shape(value):
    """Keys (in order) and JSON types, values aside; a list's shape is the set of its items' shapes."""
    if isinstance(value, dict):
        return ("object", tuple((k, UNION_FIELDS.get(k) or shape(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", tuple(sorted({shape(v) for v in value}, key=repr)))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(type(value))


def parse_sse(text: str) -> list[str]:
    """The data payloads of an SSE body (vLLM frames every event as `data: …\\n\\n`)."""
    events = []
    for block in text.split("\n\n"):
        lines = [line[len("data:"):].lstrip(" ") for line in block.split("\n") if line.startswith("data:")]
        if lines:
            events.append("\n".join(lines))
    return events


class StreamShapes(NamedTuple):
    """What must match between two streams: chunk counts and text differ, these may not."""

    first: tuple  # the role chunk
    finish: frozenset  # chunks carrying a finish_reason
    usage: frozenset  # chunks with `choices: []` (the include_usage chunk)
    every: frozenset  # every chunk


def sse_shapes(text: str) -> StreamShapes:
    """The shapes of an SSE body that ends with [DONE]."""
    events = parse_sse(text)
    assert events and events[-1] == "[DONE]", "the stream does not end with [DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    return StreamShapes(
        first=shape(chunks[0]),
        finish=frozenset(shape(c) for c in chunks if any(ch.get("finish_reason") for ch in c["choices"])),
        usage=frozenset(shape(c) for c in chunks if not c["choices"]),
        every=frozenset(shape(c) for c in chunks),
    )
