"""Model + messages + option values -> the request body for /v1/chat/completions.

Rules (the pages' and vLLM's):
- an unset option (absent or None) is omitted, never sent as null;
- keys come in order: model, messages, then options in registry order;
- `extra_body` is merged into the top level (the generic page: "the platform
  merges this object into the request body"), after the other options;
- everything is validated first, with messages that name the field.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from . import hosts
from .options import OPTIONS, OPTIONS_BY_NAME, OptionError, validate_value

__all__ = [
    "CONTENT_PART_KEYS",
    "MESSAGE_KEYS",
    "ROLES",
    "DataURL",
    "PayloadError",
    "build_payload",
    "check_image_url",
    "parse_data_url",
    "validate_messages",
]

ROLES = ("system", "developer", "user", "assistant", "tool")
# Keys each role may carry besides role and content.
MESSAGE_KEYS = {
    "system": {"name"},
    "developer": {"name"},
    "user": {"name"},
    "assistant": {"name", "tool_calls", "reasoning", "reasoning_content"},
    "tool": {"tool_call_id", "name"},
}
CONTENT_PART_KEYS = ("type", "text", "image_url")
IMAGE_DETAILS = ("auto", "low", "high")


class PayloadError(ValueError):
    """A request that cannot be built. `field` names the culprit
    ("temperature", "messages[2].content[1].image_url.url")."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def build_payload(model: str, messages: list[dict], values: dict) -> dict:
    """The request body. Raises PayloadError for any invalid part."""
    if not isinstance(model, str) or not model.strip():
        raise PayloadError("model", "is required")
    validate_messages(messages)
    unknown = sorted(set(values) - set(OPTIONS_BY_NAME))
    if unknown:
        raise PayloadError(unknown[0], "unknown option (put server-specific ones in extra_body)")
    body: dict = {"model": model, "messages": messages}
    try:
        for option in OPTIONS:
            value = validate_value(option.name, values.get(option.name))
            if value is not None and option.name != "extra_body":
                body[option.name] = value
        _merge_extra_body(body, values.get("extra_body"))
    except OptionError as error:
        raise PayloadError(error.field, error.message) from None
    _check_combinations(body)
    return body


def _merge_extra_body(body: dict, extra: dict | None) -> None:
    for key, value in (extra or {}).items():
        if value is None:
            continue
        if key in body:
            raise PayloadError(f"extra_body.{key}", f"{key} is already set as an option")
        if key in OPTIONS_BY_NAME:
            try:
                validate_value(key, value)
            except OptionError as error:
                raise PayloadError(f"extra_body.{error.field}", error.message) from None
        body[key] = value


def _check_combinations(body: dict) -> None:
    """Rules that involve more than one option."""
    if "top_logprobs" in body and body.get("logprobs") is not True:
        raise PayloadError("top_logprobs", "needs logprobs: true")
    if "stream_options" in body and body.get("stream") is not True:
        raise PayloadError("stream_options", "only applies when stream is true")
    # vLLM refuses this with a 400 ("min_tokens must be less than or equal to max_tokens"): say it first.
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if "min_tokens" in body and limit is not None and body["min_tokens"] > limit:
        raise PayloadError("min_tokens", f"is more than the token limit ({limit})")
    tool_names = [t["function"]["name"] for t in body.get("tools", [])]
    choice = body.get("tool_choice")
    if choice is not None and not tool_names:
        raise PayloadError("tool_choice", "needs tools")
    if isinstance(choice, dict) and choice["function"]["name"] not in tool_names:
        name = choice["function"]["name"]
        raise PayloadError("tool_choice", f"names {name!r}, which is not among the tools")
    function_names = [f["name"] for f in body.get("functions", [])]
    call = body.get("function_call")
    if call is not None and not function_names:
        raise PayloadError("function_call", "needs functions")
    if isinstance(call, dict) and call["name"] not in function_names:
        raise PayloadError("function_call", f"names {call['name']!r}, which is not among the functions")


def validate_messages(messages: list[dict]) -> None:
    """Check roles, content shapes, tool calls and image URLs."""
    if not isinstance(messages, list) or not messages:
        raise PayloadError("messages", "needs at least one message")
    for i, message in enumerate(messages):
        _check_message(message, f"messages[{i}]")


def _check_message(message, where: str) -> None:
    if not isinstance(message, dict):
        raise PayloadError(where, "must be an object with a role")
    role = message.get("role")
    if role not in ROLES:
        raise PayloadError(f"{where}.role", f"must be one of {', '.join(ROLES)}, not {role!r}")
    extra = set(message) - {"role", "content"} - MESSAGE_KEYS[role]
    if extra:
        raise PayloadError(f"{where}.{sorted(extra)[0]}", f"is not allowed in a {role} message")
    if "name" in message and not isinstance(message["name"], str):
        raise PayloadError(f"{where}.name", "must be a string")
    content = message.get("content")
    if role == "assistant":
        if message.get("tool_calls") is not None:
            _check_tool_calls(message["tool_calls"], f"{where}.tool_calls")
        elif content is None:
            raise PayloadError(f"{where}.content", "is required unless the message has tool_calls")
        for key in ("reasoning", "reasoning_content"):
            if message.get(key) is not None and not isinstance(message[key], str):
                raise PayloadError(f"{where}.{key}", "must be a string")
    elif role == "tool":
        if not isinstance(message.get("tool_call_id"), str) or not message["tool_call_id"]:
            raise PayloadError(f"{where}.tool_call_id", "is required in a tool message")
    if content is None and role != "assistant":
        raise PayloadError(f"{where}.content", "is required")
    if content is not None:
        _check_content(content, role, f"{where}.content")


def _check_content(content, role: str, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise PayloadError(where, "must be a string or a list of content parts")
    allowed = ("text", "image_url") if role == "user" else ("text",)
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise PayloadError(
                f"{at}.type", f"a {role} message takes parts of type {' or '.join(allowed)}, not {kind!r}"
            )
        if kind == "text" and not isinstance(part.get("text"), str):
            raise PayloadError(f"{at}.text", "must be a string")
        if kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise PayloadError(f"{at}.image_url", 'must be {"url": "..."}')
            if image.get("detail", "auto") not in IMAGE_DETAILS:
                raise PayloadError(f"{at}.image_url.detail", f"must be one of {', '.join(IMAGE_DETAILS)}")
            try:
                check_image_url(image["url"])
            except ValueError as error:
                raise PayloadError(f"{at}.image_url.url", str(error)) from None


def _check_tool_calls(calls, where: str) -> None:
    if not isinstance(calls, list):
        raise PayloadError(where, "must be a list")
    for k, call in enumerate(calls):
        at = f"{where}[{k}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise PayloadError(at, 'must be {"id", "type": "function", "function": {"name", "arguments"}}')
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise PayloadError(f"{at}.id", "is required")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise PayloadError(f"{at}.function.name", "is required")
        if not isinstance(function.get("arguments"), str):
            raise PayloadError(f"{at}.function.arguments", "must be a JSON-encoded string")


@dataclass(frozen=True)
class DataURL:
    """A decoded `data:` URL."""

    media_type: str
    data: bytes


_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,(?P<data>.*)$", re.S)


def parse_data_url(url: str) -> DataURL:
    """Decode `data:image/png;base64,....`; raise ValueError if malformed."""
    match = _DATA_URL.match(url)
    if match is None:
        raise ValueError("is not a valid data: URL")
    media_type = (match["type"] or "text/plain").lower()
    if match["b64"]:
        try:
            data = base64.b64decode(match["data"], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("has invalid base64 data") from None
    else:
        data = unquote_to_bytes(match["data"])
    return DataURL(media_type, data)


# Set from the IMAGE_URLS_ALLOW_PRIVATE setting (chat.apps) for deployments whose images are internal.
ALLOW_PRIVATE_IMAGE_HOSTS = False


def check_image_url(url: str) -> None:
    """Refuse image URLs vLLM should not fetch: only http(s) and data:image/*, and no host that
    is this machine, a private, link-local, reserved or unspecified address in any spelling a
    URL fetcher accepts (vLLM fetches image URLs itself, see CVE-2025-6242; `hosts`)."""
    if url.startswith("data:"):
        if not parse_data_url(url).media_type.startswith("image/"):
            raise ValueError("a data: URL must hold an image (data:image/...)")
        return
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("must be an http(s) or data: URL")
    hosts.check_host(url, allow_private=ALLOW_PRIVATE_IMAGE_HOSTS)