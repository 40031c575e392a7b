"""build_payload rebuilds every request of the pages and of the transcripts,
and refuses what vLLM would refuse, with a message naming the field."""

from __future__ import annotations

import json

import pytest

from chat.upstream.options import OPTIONS
from chat.upstream.payload import PayloadError, build_payload, check_image_url, parse_data_url, validate_messages

from .conftest import page_examples, transcripts

REGISTRY_ORDER = ["model", "messages", *(o.name for o in OPTIONS)]
EXAMPLES = page_examples()


def split_body(body: dict) -> tuple[str, list, dict]:
    values = {k: v for k, v in body.items() if k not in ("model", "messages")}
    return body["model"], body["messages"], values


def merged(body: dict) -> dict:
    """What the generic page says the server receives: extra_body merged in."""
    out = {k: v for k, v in body.items() if k != "extra_body"}
    out.update(body.get("extra_body", {}))
    return out


def strict(value) -> str:
    """JSON text that tells 0 from 0.0 and true from 1 (== would not)."""
    return json.dumps(value, sort_keys=True)


def test_the_pages_have_forty_request_examples():
    counts = {}
    for example in EXAMPLES:
        counts[example.page] = counts.get(example.page, 0) + 1
    assert counts == {"gemma4": 7, "generic": 1, "llama": 10, "mistral": 12, "qwen": 10}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_every_page_example_rebuilds_exactly(example):
    built = build_payload(*split_body(example.body))
    expected = merged(example.body)
    assert strict(built) == strict(expected)
    extra = list(example.body.get("extra_body", {}))
    own = [k for k in built if k not in extra]
    assert own == sorted(own, key=REGISTRY_ORDER.index)
    assert list(built) == own + extra  # extra_body's keys come last
    if example.body.get("stream") is not False and "extra_body" not in example.body:
        # Same key order too. (The pages put "stream": false in different places; we keep one order.)
        assert json.dumps(built) == json.dumps(expected)


CHAT_REQUESTS = [
    t for t in transcripts().values() if t.path == "/v1/chat/completions" and isinstance(t.request, dict)
]
# vLLM refused these (or, for 08i, accepted nonsense): we refuse them before sending.
REFUSED = {
    "08d_err_invalid_tool_choice_name": "tool_choice",
    "08e_err_top_logprobs_too_large": "top_logprobs",
    "08g_err_missing_messages": "messages",
    "08h_err_tool_choice_required_no_tools": "tool_choice",
    "08i_err_bad_role": "messages[0].role",
    "08j_err_temperature_negative": "temperature",
}


@pytest.mark.parametrize("transcript", CHAT_REQUESTS, ids=lambda t: t.name)
def test_every_transcript_request_rebuilds_or_is_refused_like_vllm_did(transcript):
    request = transcript.request
    values = {k: v for k, v in request.items() if k not in ("model", "messages")}
    if transcript.name in REFUSED:
        with pytest.raises(PayloadError) as caught:
            build_payload(request["model"], request.get("messages"), values)
        assert caught.value.field == REFUSED[transcript.name]
    else:
        built = build_payload(request["model"], request["messages"], values)
        assert strict(built) == strict(request)


def test_transcripts_cover_both_outcomes():
    # Of 72: four GETs (08l, 09a-c), 08c, whose body is broken JSON, and issue 17's 11a-e and 11g (other
    # routes); 11f is a chat request (the completion of what 11b tokenized).
    assert len(CHAT_REQUESTS) == 61
    assert set(REFUSED) <= {t.name for t in CHAT_REQUESTS}


USER = [{"role": "user", "content": "Hi"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def test_unset_options_are_omitted_never_null():
    body = build_payload("m", USER, {"temperature": None, "top_p": 0.9, "stop": None})
    assert body == {"model": "m", "messages": USER, "top_p": 0.9}


def test_extra_body_is_merged_at_the_end_and_may_carry_unknown_keys():
    body = build_payload("m", USER, {"extra_body": {"ignore_eos": True, "priority": 3, "guided": None}, "seed": 1})
    assert list(body.items())[2:] == [("seed", 1), ("ignore_eos", True), ("priority", 3)]


@pytest.mark.parametrize(
    "model, messages, values, field, message",
    [
        ("", USER, {}, "model", "is required"),
        ("m", USER, {"temprature": 1}, "temprature", "unknown option"),
        ("m", USER, {"top_p": 2}, "top_p", "must be at most 1"),
        ("m", USER, {"top_logprobs": 2}, "top_logprobs", "needs logprobs: true"),
        ("m", USER, {"top_logprobs": 2, "logprobs": False}, "top_logprobs", "needs logprobs: true"),
        ("m", USER, {"stream_options": {"include_usage": True}}, "stream_options", "only applies when stream is true"),
        ("m", USER, {"tool_choice": "auto"}, "tool_choice", "needs tools"),
        ("m", USER, {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
         "tool_choice", "names 'get_time', which is not among the tools"),
        ("m", USER, {"function_call": "auto"}, "function_call", "needs functions"),
        ("m", USER, {"functions": [{"name": "f"}], "function_call": {"name": "g"}}, "function_call", "not among the functions"),
        ("m", USER, {"top_k": 20, "extra_body": {"top_k": 40}}, "extra_body.top_k", "already set"),
        ("m", USER, {"extra_body": {"top_k": -5}}, "extra_body.top_k", "must be at least -1"),
        ("m", USER, {"tools": TOOLS + TOOLS}, "tools[1].function.name", "duplicate tool name"),
        ("m", USER, {"min_tokens": 50, "max_tokens": 10}, "min_tokens", "more than the token limit (10)"),
        ("m", USER, {"min_tokens": 50, "max_tokens": 100, "max_completion_tokens": 20}, "min_tokens", "(20)"),
    ],
)
def test_invalid_requests_name_the_field(model, messages, values, field, message):
    with pytest.raises(PayloadError) as caught:
        build_payload(model, messages, values)
    assert caught.value.field == field
    assert message in caught.value.message
    assert str(caught.value) == f"{field}: {caught.value.message}"
    assert isinstance(caught.value, ValueError)


PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="


def test_messages_of_every_role_and_shape_pass():
    validate_messages(
        [
            {"role": "system", "content": "s"},
            {"role": "developer", "content": [{"type": "text", "text": "d"}]},
            {"role": "user", "name": "ann", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://cdn.example.com/a.jpg"}},
            ]},
            {"role": "assistant", "content": None, "reasoning": "hm",
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"ok\": true}"},
            {"role": "assistant", "content": "Done."},
        ]
    )


@pytest.mark.parametrize(
    "messages, field, message",
    [
        ([], "messages", "needs at least one message"),
        (None, "messages", "needs at least one message"),
        (["hi"], "messages[0]", "must be an object with a role"),
        ([{"role": "wizard", "content": "hi"}], "messages[0].role", "must be one of system, developer, user, assistant, tool"),
        ([{"role": "user"}], "messages[0].content", "is required"),
        ([{"role": "user", "content": 3}], "messages[0].content", "must be a string or a list of content parts"),
        ([{"role": "user", "content": "x", "tool_call_id": "c"}], "messages[0].tool_call_id", "not allowed in a user message"),
        ([{"role": "user", "name": 1, "content": "x"}], "messages[0].name", "must be a string"),
        ([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}],
         "messages[0].content[0].type", "a system message takes parts of type text, not 'image_url'"),
        ([{"role": "user", "content": [{"type": "audio"}]}], "messages[0].content[0].type", "text or image_url"),
        ([{"role": "user", "content": [{"type": "text", "text": None}]}], "messages[0].content[0].text", "must be a string"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": "http://x"}]}],
         "messages[0].content[0].image_url", 'must be {"url": "..."}'),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG, "detail": "max"}}]}],
         "messages[0].content[0].image_url.detail", "must be one of auto, low, high"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://127.0.0.1/a.png"}}]}],
         "messages[0].content[0].image_url.url", "points at a loopback address"),
        ([{"role": "assistant"}], "messages[0].content", "is required unless the message has tool_calls"),
        ([{"role": "assistant", "content": "x", "reasoning": 1}], "messages[0].reasoning", "must be a string"),
        ([{"role": "assistant", "tool_calls": {}}], "messages[0].tool_calls", "must be a list"),
        ([{"role": "assistant", "tool_calls": [{"type": "function"}]}], "messages[0].tool_calls[0]", '"type": "function"'),
        ([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}],
         "messages[0].tool_calls[0].id", "is required"),
        ([{"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}],
         "messages[0].tool_calls[0].function.name", "is required"),
        ([{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}],
         "messages[0].tool_calls[0].function.arguments", "JSON-encoded string"),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id", "is required in a tool message"),
    ],
)
def test_invalid_messages_name_the_field(messages, field, message):
    with pytest.raises(PayloadError) as caught:
        validate_messages(messages)
    assert caught.value.field == field
    assert message in caught.value.message


def test_data_urls_are_decoded():
    image = parse_data_url(PNG)
    assert image.media_type == "image/png" and image.data.startswith(b"\x89PNG")
    assert parse_data_url("data:,a%20b").data == b"a b"
    assert parse_data_url("data:text/plain;charset=utf-8,hi").media_type == "text/plain"


@pytest.mark.parametrize(
    "url, message",
    [
        ("data:image/png;base64,@@@", "invalid base64"),
        ("data:nothing", "not a valid data: URL"),
        ("data:text/plain,hello", "must hold an image"),
        ("ftp://example.com/a.png", "must be an http(s) or data: URL"),
        ("file:///etc/passwd", "must be an http(s) or data: URL"),
        ("https:///a.png", "has no host"),
        ("http://localhost:8000/a.png", "localhost"),
        ("http://10.0.0.8/a.png", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]/a.png", "loopback"),
        ("http://[::ffff:192.168.0.1]/a.png", "private"),
        ("http://0.0.0.0/a.png", "unspecified"),
        ("http://224.0.0.1/a.png", "multicast"),
    ],
)
def test_unsafe_image_urls_are_refused(url, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_image_url(url)


# Spellings of loopback, private and metadata addresses that URL fetchers accept (the probe's 16
# and a few more); each names the rule that refused it.
SSRF_SPELLINGS = [
    ("http://127.0.0.1/a.png", "loopback"),
    ("http://2130706433/a.png", "loopback"),  # 127.0.0.1 as one integer
    ("http://0x7f000001/a.png", "loopback"),  # as hex
    ("http://017700000001/a.png", "loopback"),  # as octal
    ("http://0177.0.0.1/a.png", "loopback"),  # an octal part
    ("http://0x7f.0x0.0x0.0x1/a.png", "loopback"),
    ("http://127.1/a.png", "loopback"),  # short dotted form
    ("http://127.000.000.001/a.png", "loopback"),
    ("http://127.0.0.1./a.png", "loopback"),  # trailing dot
    ("http://%31%32%37.0.0.1/a.png", "loopback"),  # percent-encoded
    ("http://0/a.png", "unspecified"),
    ("http://2852039166/latest/meta-data", "link-local"),  # 169.254.169.254
    ("http://0xa9fea9fe/latest/meta-data", "link-local"),
    ("http://169.254.169.254./latest/meta-data", "link-local"),
    ("http://[::ffff:7f00:1]/a.png", "loopback"),  # IPv4-mapped IPv6, hex form
    ("http://[::ffff:169.254.169.254]/a.png", "link-local"),
    ("http://[fe80::1%25eth0]/a.png", "link-local"),
    ("http://[::]/a.png", "unspecified"),
    ("http://[2002:7f00:1::]/a.png", "loopback"),  # 6to4 of 127.0.0.1
    ("http://localhost./a.png", "this machine"),
    ("http://LOCALHOST/a.png", "this machine"),
    ("http://app.localhost/a.png", "this machine"),
    ("http://user@10.1.2.3/a.png", "private"),
    ("http://192.168.1.1:8080/a.png", "private"),
    ("http://172.16.0.1/a.png", "private"),
    ("http://127.0.0.1\\@example.com/a.png", "backslash"),  # read as 127.0.0.1 by WHATWG fetchers
    ("http://256.0.0.1/a.png", "out of range"),
    ("http://1.2.3.4.5/a.png", "neither a name nor"),
]


@pytest.mark.parametrize("url, rule", SSRF_SPELLINGS)
def test_every_spelling_of_a_local_address_is_refused_with_its_rule(url, rule):
    with pytest.raises(ValueError, match=rule):
        check_image_url(url)


def test_private_image_hosts_can_be_allowed_but_never_this_machine_or_metadata(monkeypatch):
    from chat.upstream import payload

    monkeypatch.setattr(payload, "ALLOW_PRIVATE_IMAGE_HOSTS", True)
    check_image_url("http://10.0.0.8/a.png")
    check_image_url("http://192.168.1.1/a.png")
    for url in ("http://127.1/a.png", "http://2852039166/", "http://localhost./a.png", "http://0/a.png"):
        with pytest.raises(ValueError):
            check_image_url(url)


def test_public_image_urls_pass():
    check_image_url("http://0x8.8.8.8/a.png")  # 8.8.8.8 in another spelling is still public
    check_image_url("http://example.com./a.png")
    check_image_url("https://cdn.britannica.com/61/93061-050-99147DCE/Statue-of-Liberty-Island-New-York-Bay.jpg")
    check_image_url("http://8.8.8.8/a.png")


def test_min_tokens_up_to_the_limit_is_accepted():
    assert build_payload("m", USER, {"min_tokens": 10, "max_tokens": 10})["min_tokens"] == 10
    assert build_payload("m", USER, {"min_tokens": 10})["min_tokens"] == 10  # no limit set: vLLM's own
