"""Chunks -> events -> accumulated response, on every real vLLM stream.

The oracle for the real transcripts is vLLM itself: the non-stream answer to
the same request (STREAM_PAIRS) and the recorder's summary in INDEX.md.
Synthetic streams (built in this file) cover what the server did not do
while recording: errors inside a stream, a cut stream, n=2, the legacy
`reasoning_content` field.
"""

from __future__ import annotations

import ast
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.upstream.chunks import (
    ChoiceFinished,
    ContentDelta,
    LogprobsDelta,
    ReasoningDelta,
    RoleDelta,
    StreamAccumulator,
    StreamDone,
    StreamMeta,
    StreamParser,
    StreamTruncated,
    ToolCallDelta,
    UsageReport,
    parse_chunk,
)
from chat.upstream.errors import UpstreamProtocolError, UpstreamStreamError

from .conftest import STREAM_PAIRS, TRANSCRIPTS, split_at, stream_transcripts, transcripts

STREAMS = {t.name: t for t in stream_transcripts()}


def parse(pieces) -> list:
    parser = StreamParser()
    events = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.close()


def accumulate(events) -> StreamAccumulator:
    acc = StreamAccumulator()
    for event in events:
        acc.feed(event)
    return acc


def sse(*chunks: dict, done: bool = True) -> bytes:
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    return (text + ("data: [DONE]\n\n" if done else "")).encode()


def chunk(*choices: dict, usage: dict | None = None) -> dict:
    obj = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": list(choices)}
    if usage is not None:
        obj["usage"] = usage
    return obj


def choice(index=0, finish=None, logprobs=None, **delta) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def summary(choice_obj: dict) -> dict:
    """What must agree between a streamed and a non-streamed run.

    Tool call ids are random per run. With a tool call, vLLM's non-stream
    answer drops the whitespace content the stream sends ("\\n\\n" after
    </think>) and says null or "" for it, so content is compared stripped.
    """
    message = choice_obj["message"]
    calls = message.get("tool_calls") or []
    content = message.get("content") or ""
    return {
        "content": content.strip() if calls else content,
        "reasoning": message.get("reasoning") or None,
        "tool_calls": [(c["type"], c["function"]["name"], c["function"]["arguments"]) for c in calls],
        "finish_reason": choice_obj["finish_reason"],
        "stop_reason": choice_obj.get("stop_reason"),
    }


# -- every real stream ---------------------------------------------------------


def test_there_are_thirteen_stream_transcripts():
    assert len(STREAMS) == 13


def data_chunks(body) -> int:
    """The JSON chunks of a raw stream: its `data:` events other than [DONE] (vLLM sends one line each)."""
    text = body.decode() if isinstance(body, bytes) else body
    return sum(1 for line in text.splitlines() if line.startswith("data:") and line[5:].strip() != "[DONE]")


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_stream_transcript_parses_to_done(name):
    events = parse([STREAMS[name].body])
    assert isinstance(events[-1], StreamDone)
    assert not any(isinstance(e, StreamTruncated) for e in events)
    # Every chunk opens with its StreamMeta, and the accumulator counts them: the inspector's
    # chunk count (it once counted only changes of id/model, so always 1).
    chunks = data_chunks(STREAMS[name].body)
    assert chunks > 1
    assert sum(isinstance(e, StreamMeta) for e in events) == chunks
    assert accumulate(events).chunks == chunks


def index_summaries() -> dict[str, dict]:
    """The recorder's one-line summaries of the stream cases in INDEX.md."""
    found = {}
    pattern = re.compile(
        r"- `(\w+)`: HTTP 200; (\d+) chunks \+ \[DONE\]; content=(.*?); reasoning=(.*?); "
        r"tool_call deltas=(\d+); usage in chunk idx (\[.*?\]); finish=(\[.*?\])$"
    )
    for line in (TRANSCRIPTS / "INDEX.md").read_text().splitlines():
        match = pattern.match(line)
        if match:
            name, chunks, content, reasoning, deltas, usage_at, finish = match.groups()
            found[name] = {
                "chunks": int(chunks),
                "content": ast.literal_eval(content),
                "reasoning": ast.literal_eval(reasoning),
                "tool_call_deltas": int(deltas),
                "usage_at": ast.literal_eval(usage_at),
                "finish": ast.literal_eval(finish),
            }
    return found


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_stream_accumulates_as_the_recorder_summarised_it(name):
    expected = index_summaries()[name]
    events = parse([STREAMS[name].body])
    result = accumulate(events).result()
    message = result["choices"][0]["message"]
    assert (message["content"] or "").startswith(expected["content"])
    assert (message["reasoning"] or "").startswith(expected["reasoning"])
    assert sum(isinstance(e, ToolCallDelta) for e in events) == expected["tool_call_deltas"]
    assert [c["finish_reason"] for c in result["choices"]] == expected["finish"]
    assert sum(isinstance(e, UsageReport) for e in events) == len(expected["usage_at"])
    assert (result["usage"] is not None) == bool(expected["usage_at"])


@pytest.mark.parametrize("stream_name", sorted(STREAM_PAIRS))
def test_accumulated_stream_equals_the_non_stream_answer(stream_name):
    whole = transcripts()[STREAM_PAIRS[stream_name]].json()
    result = accumulate(parse([STREAMS[stream_name].body])).result()
    assert result["object"] == "chat.completion"
    assert result["model"] == whole["model"]
    assert [summary(c) for c in result["choices"]] == [summary(c) for c in whole["choices"]]
    assert [c["logprobs"] for c in result["choices"]] == [c["logprobs"] for c in whole["choices"]]
    if result["usage"] is not None:  # only when the request asked for it
        assert result["usage"] == {k: v for k, v in whole["usage"].items() if k != "prompt_tokens_details"}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_split_of_a_transcript_gives_the_same_events(data):
    transcript = data.draw(st.sampled_from(sorted(STREAMS.values(), key=lambda t: t.name)), label="transcript")
    cuts = data.draw(st.lists(st.integers(0, len(transcript.body)), max_size=60), label="cuts")
    assert parse(split_at(transcript.body, cuts)) == parse([transcript.body])


def test_tool_calls_merge_by_index():
    result = accumulate(parse([STREAMS["04h_tools_auto_two_calls_stream"].body])).result()
    calls = result["choices"][0]["message"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Tokyo"}),
    ]
    assert all(c["id"].startswith("chatcmpl-tool-") and c["type"] == "function" for c in calls)


def test_first_tool_call_delta_carries_id_and_name_without_arguments():
    events = parse([STREAMS["04b_tools_auto_stream"].body])
    first = next(e for e in events if isinstance(e, ToolCallDelta))
    assert first.name == "get_weather" and first.id and first.arguments is None
    later = [e for e in events if isinstance(e, ToolCallDelta)][1:]
    assert all(e.name is None and e.id is None and e.arguments for e in later)


def test_continuous_usage_comes_in_every_chunk_and_the_last_wins():
    events = parse([STREAMS["03d_stream_continuous_usage"].body])
    usages = [e.usage for e in events if isinstance(e, UsageReport)]
    assert [u["completion_tokens"] for u in usages[:3]] == [0, 1, 2]
    assert accumulate(events).usage == usages[-1] == {
        "prompt_tokens": 27, "total_tokens": 43, "completion_tokens": 16,
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_text_and_finish_in_the_same_chunk_come_in_that_order():
    events = parse([STREAMS["03d_stream_continuous_usage"].body])
    last_text = max(i for i, e in enumerate(events) if isinstance(e, ContentDelta))
    assert events[last_text] == ContentDelta(0, "?")
    assert events[last_text + 1] == ChoiceFinished(0, "length", None)


def test_usage_chunk_without_choices():
    events = parse([STREAMS["03a_stream_include_usage"].body])
    assert isinstance(events[-2], UsageReport) and isinstance(events[-1], StreamDone)
    assert events[-2].usage["total_tokens"] == 44


def test_logprobs_stream_token_by_token():
    events = parse([STREAMS["07g_logprobs_stream"].body])
    deltas = [e for e in events if isinstance(e, LogprobsDelta)]
    assert [d.content[0]["token"] for d in deltas] == ["Hello", "!", " I", " am", " a", " tiny", " test", " model"]
    assert {d.field for d in deltas} == {"content"}


def test_role_and_meta_events():
    events = parse([STREAMS["03a_stream_include_usage"].body])
    assert events[0] == StreamMeta("chatcmpl-a228c41195ad8d31", "tiny-qwen3", 1795300919)
    assert events[1] == RoleDelta(0, "assistant")
    assert not any(isinstance(e, ContentDelta) and not e.text for e in events)  # "" is not news


# -- synthetic streams ---------------------------------------------------------


def test_reasoning_content_is_read_like_reasoning():
    # vLLM < 0.10 called the field reasoning_content.
    body = STREAMS["03b_stream_reasoning"].body
    legacy = body.replace(b'"reasoning":', b'"reasoning_content":')
    assert legacy != body
    assert accumulate(parse([legacy])).result() == accumulate(parse([body])).result()


def test_reasoning_is_not_doubled_when_both_fields_are_sent():
    events = parse_chunk(chunk(choice(reasoning="a", reasoning_content="a")))
    assert [e for e in events if isinstance(e, ReasoningDelta)] == [ReasoningDelta(0, "a")]


def test_error_inside_the_stream_raises_after_the_text_so_far():
    body = sse(
        chunk(choice(role="assistant", content="Hel")),
        {"error": {"message": "engine died", "type": "InternalServerError", "param": None, "code": 500}},
    )
    parser = StreamParser()
    events = parser.feed(body)  # one read holding both: the good events come first
    assert ContentDelta(0, "Hel") in events
    with pytest.raises(UpstreamStreamError) as caught:
        parser.check()
    error = caught.value
    assert (error.message, error.status, error.type, error.phase) == ("engine died", 500, "InternalServerError", "stream")
    parser.check()  # raised once


@pytest.mark.parametrize("then", ["feed", "close"])
def test_a_pending_error_is_raised_by_the_next_call(then):
    parser = StreamParser()
    assert parser.feed(sse(chunk(choice(content="a")), {"error": "Unauthorized"}, done=False))
    with pytest.raises(UpstreamStreamError, match="Unauthorized"):
        getattr(parser, then)(*([b""] if then == "feed" else []))


def test_an_error_alone_in_a_read_raises_at_once():
    with pytest.raises(UpstreamStreamError):
        StreamParser().feed(sse({"error": {"message": "x"}}))
    with pytest.raises(UpstreamStreamError):
        parser = StreamParser()
        parser.feed(b'data: {"error": {"message": "x"}}')
        parser.close()


def test_old_flat_error_inside_the_stream_raises_too():
    with pytest.raises(UpstreamStreamError, match="old style"):
        parse_chunk({"object": "error", "message": "old style", "type": "BadRequestError", "code": 400})


def test_stream_without_done_is_flagged_truncated():
    body = STREAMS["03a_stream_include_usage"].body
    cut = body[: body.index(b"data: [DONE]")]
    events = parse([cut[:-7]])  # also lose the end of the usage chunk
    assert isinstance(events[-1], StreamTruncated)
    acc = accumulate(events)
    assert acc.truncated and not acc.done
    assert acc.text() == "Hello! I am a tiny test model. How can I help you today?"
    assert acc.usage is None


def test_a_last_event_without_its_blank_line_still_counts():
    body = sse(chunk(choice(content="a")), done=False) + b'data: {"choices": [{"delta": {"content": "b"}}]}'
    assert accumulate(parse([body])).text() == "ab"
    assert accumulate(parse([body + b"\n\ndata: [DONE]"])).done


def test_interleaved_choices_accumulate_by_index():
    body = sse(
        chunk(choice(0, role="assistant", content=""), choice(1, role="assistant", content="")),
        chunk(choice(1, content="B1")),
        chunk(choice(0, content="A1")),
        chunk(choice(0, content="A2", finish="stop")),
        chunk(choice(1, content="B2"), choice(1, finish="length")),
        chunk(usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    )
    result = accumulate(parse([body])).result()
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in result["choices"]] == [
        (0, "A1A2", "stop"),
        (1, "B1B2", "length"),
    ]
    assert result["usage"]["total_tokens"] == 7


def test_logprobs_are_kept_apart_for_reasoning_and_content():
    def lp(token):
        return {"content": [{"token": token, "logprob": -0.1, "bytes": list(token.encode()), "top_logprobs": []}]}

    body = sse(
        chunk(choice(role="assistant", content="")),
        chunk(choice(logprobs=lp("<think>"))),  # swallowed by the reasoning parser: no text
        chunk(choice(reasoning="hm", logprobs=lp("hm"))),
        chunk(choice(logprobs=lp("</think>"))),
        chunk(choice(content="Hi", logprobs=lp("Hi"), finish="stop")),
    )
    events = parse([body])
    assert [e.field for e in events if isinstance(e, LogprobsDelta)] == [None, "reasoning", None, "content"]
    logprobs = accumulate(events).result()["choices"][0]["logprobs"]
    assert [t["token"] for t in logprobs["reasoning"]] == ["<think>", "hm", "</think>"]
    assert [t["token"] for t in logprobs["content"]] == ["Hi"]


def test_logprobs_before_any_text_stay_in_content_if_no_text_comes():
    lp = {"content": [{"token": "x", "logprob": 0.0}]}
    result = accumulate(parse([sse(chunk(choice(logprobs=lp, finish="length")))])).result()
    assert result["choices"][0]["logprobs"] == {"content": [{"token": "x", "logprob": 0.0}]}


def test_result_of_nothing_is_an_empty_response():
    result = StreamAccumulator().result()
    assert result == {"id": None, "object": "chat.completion", "created": None, "model": None, "choices": [], "usage": None}
    assert StreamAccumulator().text(3) == ""


def test_stop_reason_is_kept():
    events = parse_chunk(chunk(choice(content="a", finish="stop") | {"stop_reason": "</answer>"}))
    assert events[-1] == ChoiceFinished(0, "stop", "</answer>")


def test_data_after_done_is_ignored():
    parser = StreamParser()
    events = parser.feed(b'data: [DONE]\n\ndata: {"error": {"message": "late"}}\n\n')
    assert events == [StreamDone()]
    assert parser.feed(b"data: nonsense\n\n") == [] and parser.close() == []


@pytest.mark.parametrize(
    "data, message",
    [
        (b"data: not json\n\n", "undecodable"),
        (b"data: [1, 2]\n\n", "expected a JSON object"),
        (b'data: {"choices": {"0": {}}}\n\n', "expected a list"),
    ],
)
def test_malformed_chunks_raise_protocol_errors(data, message):
    with pytest.raises(UpstreamProtocolError, match=message) as caught:
        StreamParser().feed(data)
    assert caught.value.phase == "stream"


def test_tolerates_missing_fields():
    # Imitations of the OpenAI API leave out index, delta, ids...
    events = parse_chunk({"choices": [{"delta": {"content": "a"}}, {"finish_reason": "stop"}]})
    assert events == [StreamMeta(None, None, None), ContentDelta(0, "a"), ChoiceFinished(1, "stop", None)]


# The probe's wrong-type cases and their neighbours: each is a protocol error naming the field,
# never a value of the wrong type handed to the layers above.
WRONG_TYPES = [
    ({"choices": [{"delta": {"content": 42}}]}, "choices[0].delta.content"),
    ({"choices": [{"delta": {"content": ["a", "b"]}}]}, "choices[0].delta.content"),
    ({"choices": [{"index": "0", "delta": {"content": "a"}}]}, "choices[0].index"),
    ({"choices": [{"index": True, "delta": {}}]}, "choices[0].index"),
    ({"choices": [], "usage": {"prompt_tokens": "12", "completion_tokens": 3}}, "usage.prompt_tokens"),
    ({"choices": [], "usage": "lots"}, "usage"),
    ({"choices": [{"delta": {"content": "bad \ud800 text"}}]}, "invalid character"),
    ({"choices": [{"delta": {"reasoning": {"text": "x"}}}]}, "choices[0].delta.reasoning"),
    ({"choices": [{"delta": {"tool_calls": {"0": {}}}}]}, "choices[0].delta.tool_calls"),
    ({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": {"city": "Oslo"}}}]}}]}, "function.arguments"),
    ({"choices": [{"delta": {}, "finish_reason": 1}]}, "choices[0].finish_reason"),
    ({"choices": [{"delta": {}, "logprobs": {"content": "tokens"}}]}, "choices[0].logprobs.content"),
    ({"choices": ["junk"]}, "choices[0]"),
    ({"id": 7, "choices": []}, "`id`"),
]


@pytest.mark.parametrize("chunk, field", WRONG_TYPES)
def test_values_of_the_wrong_type_are_protocol_errors(chunk, field):
    obj = json.loads(json.dumps(chunk).replace("\\\\ud800", "\\ud800"))
    with pytest.raises(UpstreamProtocolError, match=re.escape(field)):
        parse_chunk(obj)


@pytest.mark.parametrize("chunk, field", WRONG_TYPES[:12])
def test_a_non_streamed_answer_is_checked_the_same_way(chunk, field):
    from chat.upstream.chunks import check_response

    choices = [
        {"index": c.get("index", 0), "message": c.get("delta", {}), "finish_reason": c.get("finish_reason"), "logprobs": c.get("logprobs")}
        for c in chunk.get("choices", []) if isinstance(c, dict)
    ]
    answer = json.loads(json.dumps({**chunk, "choices": choices}).replace("\\\\ud800", "\\ud800"))
    if field.endswith("logprobs.content") or "tool_calls" in field and "arguments" not in field:
        return  # the non-stream shape keeps those as they come (only their container type is read)
    with pytest.raises(UpstreamProtocolError, match=re.escape(field.replace("delta", "message"))):
        check_response(answer)
