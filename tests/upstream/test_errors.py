"""parse_error_body understands every error shape vLLM (and what sits in
front of it) sends; base URLs normalise or fail with a clear message."""

from __future__ import annotations

import pytest

from chat.upstream.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamStreamError,
    UpstreamTimeout,
    parse_error_body,
    text_excerpt,
)
from chat.upstream.urls import normalize_base_url, server_root

from .conftest import transcripts

ERRORS = [t for t in transcripts().values() if t.status >= 400]


@pytest.mark.parametrize("transcript", ERRORS, ids=lambda t: t.name)
def test_every_error_transcript_parses(transcript):
    error = parse_error_body(transcript.status, transcript.body, transcript.headers["content-type"])
    assert isinstance(error, UpstreamHTTPError)
    assert error.status == transcript.status and error.phase == "request"
    document = transcript.json()
    if "error" in document:
        assert (error.message, error.type, error.param, error.code) == (
            document["error"]["message"], document["error"]["type"], document["error"]["param"], document["error"]["code"]
        )
    else:
        assert error.message == document["detail"] == "Not Found"


def test_the_transcripts_have_these_errors():
    assert len(ERRORS) == 13  # 08a-h, 08j-l, 10a (08i got a 200), 11e (/tokenize of an unknown model)
    error = parse_error_body(400, transcripts()["08j_err_temperature_negative"].body)
    assert str(error) == "HTTP 400: temperature must be non-negative, got -1.0. (parameter=temperature, value=-1.0)"
    assert error.param == "temperature" and error.type == "BadRequestError"


@pytest.mark.parametrize(
    "status, body, content_type, message, kind",
    [
        (400, b'{"object":"error","message":"old shape","type":"BadRequestError","param":null,"code":400}', "application/json",
         "old shape", "BadRequestError"),
        (401, b'{"error":"Unauthorized"}', "application/json", "Unauthorized", None),
        (422, b'{"detail":[{"loc":["body","messages",0,"role"],"msg":"Input should be user"},{"msg":"x"}, "y"]}', "application/json",
         "messages.0.role: Input should be user; x; y", None),
        (422, b'{"detail": {"odd": true}}', "application/json", '{"odd": true}', None),
        (400, b'{"message":"flat without object","type":"BadRequestError"}', "application/json", "flat without object", "BadRequestError"),
        (400, b'{"error":{"type":"BadRequestError"}}', "application/json", '{"type": "BadRequestError"}', "BadRequestError"),
        (500, b'{"unexpected": 1}', "application/json", '{"unexpected": 1}', None),
        (502, b"<html><head><title>502 Bad Gateway</title><style>h1{}</style></head><body><center><h1>502 Bad Gateway</h1>"
              b"</center><hr><center>nginx</center><script>x()</script></body></html>", "text/html",
         "502 Bad Gateway 502 Bad Gateway nginx", None),
        (503, b"upstream connect error &amp; reset", "text/plain", "upstream connect error &amp; reset", None),
        (504, b"", None, "HTTP 504 with an empty body", None),
        (500, "Über<br>fail".encode("latin-1"), "text/html", "�ber fail", None),
    ],
)
def test_error_shapes(status, body, content_type, message, kind):
    error = parse_error_body(status, body, content_type)
    assert (error.status, error.message, error.type) == (status, message, kind)


def test_html_excerpts_are_short_and_plain():
    page = "<html><body>" + "<p>Service &lt;unavailable&gt;</p>" * 100 + "</body></html>"
    excerpt = text_excerpt(page, "text/html; charset=utf-8")
    assert len(excerpt) == 300 and excerpt.endswith("…") and excerpt.startswith("Service <unavailable> Service")


def test_error_str_repr_and_redaction():
    error = UpstreamHTTPError("echo: Bearer sk-live-123", status=401, type="AuthError", param="x")
    assert repr(error) == "UpstreamHTTPError('echo: Bearer sk-live-123', phase='request', status=401, type='AuthError', param='x')"
    assert error.redact("sk-live-123") is error
    assert "sk-live" not in str(error) and "sk-live" not in repr(error) and error.args == ("echo: Bearer ***",)
    assert error.redact(None).message == "echo: Bearer ***"


def test_hierarchy_and_phases():
    assert UpstreamConnectError("x").phase == "connect"
    assert UpstreamTimeout("x", phase="stream").phase == "stream"
    assert UpstreamStreamError("x").phase == "stream"
    assert UpstreamProtocolError("x").truncated is False
    assert UpstreamProtocolError("x", truncated=True, phase="stream").truncated
    for cls in (UpstreamConnectError, UpstreamTimeout, UpstreamHTTPError, UpstreamProtocolError, UpstreamStreamError):
        assert issubclass(cls, UpstreamError)
    assert str(UpstreamTimeout("slow")) == "slow"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://h:8000", "http://h:8000/v1"),
        ("http://h:8000/", "http://h:8000/v1"),
        ("http://h:8000/v1", "http://h:8000/v1"),
        ("http://h:8000/v1/", "http://h:8000/v1"),
        (" HTTPS://GPU-1.Example.com:8443/v1/chat/completions ", "https://gpu-1.example.com:8443/v1"),
        ("https://10.0.0.5/proxy/qwen", "https://10.0.0.5/proxy/qwen/v1"),
        ("http://[::1]:8000/v1/models", "http://[::1]:8000/v1"),
    ],
)
def test_normalize_base_url(url, expected):
    assert normalize_base_url(url) == expected


@pytest.mark.parametrize(
    "url, message",
    [
        ("", "empty"),
        ("ftp://h/v1", "must start with http:// or https:// (got ftp://)"),
        ("h:8000/v1", "must start with http:// or https://"),
        ("localhost:8000", "must start with http:// or https://"),
        ("http:///v1", "no host name"),
        ("http://h:99999/v1", "not a valid URL"),
        ("http://user:pw@h/v1", "credentials"),
        ("http://h/v1?key=1", "query string"),
    ],
)
def test_normalize_base_url_refuses_with_a_reason(url, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalize_base_url(url)


def test_server_root_is_where_health_lives():
    assert server_root("http://h:8000/v1/") == "http://h:8000"
