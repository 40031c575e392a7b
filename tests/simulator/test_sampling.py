"""Sampling options: logprobs, n, seed and temperature 0, stop strings,
length limits, min_tokens, ignore_eos."""

from __future__ import annotations

import math

import pytest

from .conftest import accumulate, chat, stream

HELLO = [{"role": "user", "content": "Hello!"}]
QUIET = {"chat_template_kwargs": {"enable_thinking": False}}


def _content(body: dict, index: int = 0) -> str:
    return body["choices"][index]["message"]["content"]


def check_logprobs(entries: list[dict], k: int) -> None:
    assert entries
    for entry in entries:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert entry["bytes"] == list(entry["token"].encode("utf-8"))
        assert isinstance(entry["logprob"], float) and entry["logprob"] < 0
        top = entry["top_logprobs"]
        assert len(top) == k
        if k:
            assert top[0] == {"token": entry["token"], "logprob": entry["logprob"], "bytes": entry["bytes"]}
            values = [t["logprob"] for t in top]
            assert values == sorted(values, reverse=True) and len(set(values)) == k
            assert len({t["token"] for t in top}) == k
            assert sum(math.exp(v) for v in values) <= 1.0
            assert all(t["bytes"] == list(t["token"].encode("utf-8")) for t in top)


@pytest.mark.parametrize("k", [0, 1, 5, 20])
def test_logprobs_per_token(client, k):
    body = chat(client, messages=HELLO, logprobs=True, top_logprobs=k, max_tokens=12, **QUIET)
    entries = body["choices"][0]["logprobs"]["content"]
    check_logprobs(entries, k)
    assert "".join(e["token"] for e in entries) == _content(body)
    assert len(entries) == body["usage"]["completion_tokens"] == 12


def test_logprobs_in_streams(client):
    chunks = stream(client, messages=HELLO, logprobs=True, top_logprobs=2, max_tokens=8, **QUIET).chunks
    for chunk in chunks[1:]:
        choice = chunk["choices"][0]
        assert len(choice["logprobs"]["content"]) == 1
        assert choice["logprobs"]["content"][0]["token"] == choice["delta"]["content"]
        check_logprobs(choice["logprobs"]["content"], 2)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_logprobs_cover_reasoning_and_markers(client):
    """Like 07k: the <think> token and the reasoning tokens have logprobs too."""
    body = chat(client, messages=HELLO, logprobs=True, top_logprobs=1, max_tokens=12,
                chat_template_kwargs={"enable_thinking": True})
    tokens = [e["token"] for e in body["choices"][0]["logprobs"]["content"]]
    assert tokens[0] == "<think>" and "".join(tokens[1:]) == body["choices"][0]["message"]["reasoning"]


def test_no_logprobs_unless_asked(client):
    assert chat(client, messages=HELLO)["choices"][0]["logprobs"] is None


def test_n_choices(client):
    body = chat(client, messages=HELLO, n=3, temperature=1.0, seed=11, **QUIET)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert len({_content(body, i) for i in range(3)}) > 1  # sampled independently
    greedy = chat(client, messages=HELLO, n=3, temperature=0, **QUIET)
    assert len({_content(greedy, i) for i in range(3)}) == 1


def test_n_choices_stream(client):
    streamed = stream(client, messages=HELLO, n=2, temperature=1.0, seed=3,
                      stream_options={"include_usage": True}, **QUIET)
    chunks = streamed.chunks
    assert [c["choices"][0]["index"] for c in chunks[:2]] == [0, 1]
    assert all(c["choices"][0]["delta"] == {"role": "assistant", "content": ""} for c in chunks[:2])
    folded = accumulate(chunks)
    full = chat(client, messages=HELLO, n=2, temperature=1.0, seed=3, **QUIET)
    assert [folded[i]["content"] for i in (0, 1)] == [_content(full, 0), _content(full, 1)]
    assert chunks[-1]["usage"]["completion_tokens"] == full["usage"]["completion_tokens"]


def test_seed_and_temperature_zero_determinism(client):
    def ask(**kw):
        return _content(chat(client, messages=HELLO, **QUIET, **kw))

    assert ask(temperature=1.0, seed=1234) == ask(temperature=1.0, seed=1234)
    assert len({ask(temperature=1.0, seed=s) for s in range(8)}) > 1
    assert len({ask(temperature=0, seed=s) for s in range(4)}) == 1
    assert ask() == ask()  # unseeded behaves as seed 0: reproducible by design


def test_logprobs_are_deterministic_too(client):
    def lp():
        return chat(client, messages=HELLO, logprobs=True, top_logprobs=3, seed=9, temperature=0.8)["choices"][0]["logprobs"]
    assert lp() == lp()


def test_stop_string_is_excluded(client):
    body = chat(client, messages=HELLO, stop=["reply"], **QUIET)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == "reply"
    assert "reply" not in _content(body) and _content(body).endswith("simulated ")
    folded = accumulate(stream(client, messages=HELLO, stop=["reply"], **QUIET).chunks)[0]
    assert folded["content"] == _content(body) and folded["finish_reason"] == "stop"

    kept = chat(client, messages=HELLO, stop="reply", include_stop_str_in_output=True, **QUIET)
    assert _content(kept).endswith("simulated reply")


def test_stop_string_spanning_tokens(client):
    body = chat(client, messages=HELLO, stop=["simulated rep", "nowhere"], **QUIET)
    assert _content(body).endswith("a ") and body["choices"][0]["stop_reason"] == "simulated rep"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_length_limit(client, field):
    body = chat(client, messages=HELLO, **{field: 5}, **QUIET)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


def test_min_tokens_keeps_generating(client):
    natural = chat(client, messages=HELLO, **QUIET)["usage"]["completion_tokens"]
    body = chat(client, messages=HELLO, min_tokens=natural + 20, max_tokens=natural + 40, **QUIET)
    assert body["usage"]["completion_tokens"] > natural + 20
    assert body["choices"][0]["finish_reason"] == "stop"


def test_ignore_eos_runs_to_max_tokens(client):
    body = chat(client, messages=HELLO, ignore_eos=True, max_tokens=300, **QUIET)
    assert body["usage"]["completion_tokens"] == 300 and body["choices"][0]["finish_reason"] == "length"
    raw = chat(client, messages=HELLO, ignore_eos=True, skip_special_tokens=False, max_tokens=40, **QUIET)
    assert "<|im_end|><|im_end|>" in _content(raw)
