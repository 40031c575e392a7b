"""One family of exceptions for everything that can go wrong upstream.

    UpstreamError                 message, status, type, param, code, phase
     ├── UpstreamConnectError     could not connect (DNS, refused, TLS)      phase="connect"
     ├── UpstreamTimeout          connect, read or write timed out           phase=any
     ├── UpstreamHTTPError        non-2xx answer; vLLM's message parsed      phase="request"
     ├── UpstreamProtocolError    malformed JSON/SSE, HTML where JSON was
     │                            expected, stream cut before [DONE]
     │                            (.truncated=True)                          phase="request"|"stream"
     └── UpstreamStreamError      an error object inside a 200 SSE stream    phase="stream"

Cancellation is deliberately *not* in this tree: when the consuming task is
cancelled, `asyncio.CancelledError` propagates unchanged (turning it into an
ordinary exception would break asyncio's cancellation) and the client closes
the upstream connection on the way out.

`client.py` maps httpx exceptions and bad responses into these at its
boundary only, so callers handle one family and render one error fragment.
Messages never contain the API key: the client redacts it before raising.
"""

from __future__ import annotations

import html
import json
import re

__all__ = [
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamHTTPError",
    "UpstreamProtocolError",
    "UpstreamStreamError",
    "UpstreamTimeout",
    "error_from_object",
    "parse_error_body",
    "text_excerpt",
]

from .redact import redact

EXCERPT_CHARS = 300


class UpstreamError(Exception):
    """Base class. `message` is fit to show a user (auto-escaped, never as markdown).

    status: HTTP status when there was one (None for connect errors and timeouts).
    type/param/code: vLLM's `error.type` ("BadRequestError", ...), `error.param`
    ("temperature", ...) and `error.code` (an int in vLLM, the HTTP status).
    phase: where it failed: "connect" (no connection), "request" (sending,
    or waiting for the status line and headers) or "stream" (reading a 200
    event stream; events may already have been yielded, keep them).
    """

    default_phase = "request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        param: str | None = None,
        code: int | str | None = None,
        phase: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.phase = phase or self.default_phase

    def __str__(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status}: {self.message}"
        return self.message

    def __repr__(self) -> str:
        fields = [f"{self.message!r}", f"phase={self.phase!r}"]
        for name in ("status", "type", "param"):
            value = getattr(self, name)
            if value is not None:
                fields.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"

    def redact(self, secret: str | None) -> UpstreamError:
        """Mask `secret` in the message in any form it can take (an echoing proxy could put the
        bearer token in an error page, encoded or cut; see redact.py). Returns self."""
        if secret:
            self.message = redact(self.message, secret)
            self.args = (self.message,)
        return self


class UpstreamConnectError(UpstreamError):
    """The connection could not be opened: DNS, refused, unreachable, TLS."""

    default_phase = "connect"


class UpstreamTimeout(UpstreamError):
    """Connecting, sending or waiting for the next bytes took too long."""


class UpstreamHTTPError(UpstreamError):
    """The server answered with a non-2xx status; `message` is its own words."""


class UpstreamProtocolError(UpstreamError):
    """The answer was not what the protocol promises.

    truncated: the SSE stream ended (EOF or broken connection) before `[DONE]`;
    what arrived until then is still valid and worth keeping.
    """

    def __init__(self, message: str, *, truncated: bool = False, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.truncated = truncated


class UpstreamStreamError(UpstreamError):
    """vLLM reported an error inside a 200 stream (`data: {"error": {...}}`)."""

    default_phase = "stream"


def parse_error_body(
    status: int, body: bytes | str, content_type: str | None = None
) -> UpstreamHTTPError:
    """Turn a non-2xx response body into an UpstreamHTTPError.

    Understands every shape vLLM and its neighbours send:
    `{"error": {"message","type","param","code"}}` (vLLM >= 0.10.1),
    the flat `{"object": "error", "message": ...}` (older vLLM),
    `{"error": "Unauthorized"}` (vLLM's --api-key middleware),
    FastAPI's `{"detail": "Not Found"}` or `{"detail": [{loc, msg}, ...]}`,
    and anything else (HTML or text from a gateway) as a short excerpt.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        error = error_from_object(obj, status=status)
        if error is not None:
            return error
    excerpt = text_excerpt(text, content_type)
    return UpstreamHTTPError(excerpt or f"HTTP {status} with an empty body", status=status)


def error_from_object(obj: dict, *, status: int | None = None) -> UpstreamHTTPError | None:
    """The error carried by a decoded JSON object, or None if it carries none."""
    inner = obj.get("error")
    if isinstance(inner, str) and inner:
        return UpstreamHTTPError(inner, status=status)
    if isinstance(inner, dict):
        return _from_fields(inner, status)
    if obj.get("object") == "error" or (isinstance(obj.get("message"), str) and "type" in obj):
        return _from_fields(obj, status)
    if "detail" in obj:
        return UpstreamHTTPError(_detail_text(obj["detail"]), status=status)
    return None


def _from_fields(fields: dict, status: int | None) -> UpstreamHTTPError:
    code = fields.get("code")
    if status is None and isinstance(code, int) and not isinstance(code, bool):
        status = code
    message = fields.get("message")
    if not isinstance(message, str) or not message:
        message = json.dumps(fields, ensure_ascii=False)[:EXCERPT_CHARS]
    return UpstreamHTTPError(
        message,
        status=status,
        type=_str_or_none(fields.get("type")),
        param=_str_or_none(fields.get("param")),
        code=code,
    )


def _detail_text(detail) -> str:
    """FastAPI puts a string, or a list of validation problems, in `detail`."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                msg = str(item.get("msg", ""))
                parts.append(f"{loc}: {msg}" if loc else msg)
            else:
                parts.append(str(item))
        return "; ".join(parts) or "validation error"
    return json.dumps(detail, ensure_ascii=False)[:EXCERPT_CHARS]


def _str_or_none(value) -> str | None:
    return value if isinstance(value, str) else None


_DROP_BLOCKS = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def text_excerpt(text: str, content_type: str | None = None) -> str:
    """A short, plain-text excerpt of a body: tags stripped, whitespace collapsed.

    Gateways answer 502/503/504 with HTML pages; users need the gist ("502 Bad
    Gateway"), not markup. The result is plain text (entities decoded), so the
    caller must still escape it when rendering.
    """
    looks_html = "html" in (content_type or "").lower() or text.lstrip()[:1] == "<"
    if looks_html:
        text = html.unescape(_TAGS.sub(" ", _DROP_BLOCKS.sub(" ", text)))
    text = _SPACE.sub(" ", text).strip()
    if len(text) > EXCERPT_CHARS:
        text = text[: EXCERPT_CHARS - 1].rstrip() + "…"
    return text
