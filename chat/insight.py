"""What the server says about a request before and after it runs: the token meter and the templated
prompt (vLLM's /tokenize and /detokenize), and the server's load (/metrics). Django glue around
chat.upstream.prompt / metrics; the views are chat/views_endpoint.py.

Every call carries the endpoint's headers (its client) and the conversation's (per request).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.core.cache import cache

from chat import probe
from chat.crypto import DecryptionError
from chat.upstream.errors import UpstreamError
from chat.upstream.metrics import parse_load
from chat.upstream.prompt import fit, tokenize_body

LOAD_SECONDS = 5  # /metrics is read at most this often per endpoint (a picker, a console, many tabs)
# A token string that is (or starts with) a template token: <|im_start|>, <start_of_turn>, [INST].
SPECIAL = re.compile(r"^(<\|[^|\s]+\|>|</?[a-z_]+>|\[/?[A-Z_]+\])")


class NoTokenize(Exception):
    """The server has no /tokenize route (not vLLM, or a gateway that hides it)."""


@dataclass
class Failure:
    message: str


def _describe(error: UpstreamError) -> str:
    return f"HTTP {error.status}: {error.message}" if error.status else error.message


def _missing_route(error: UpstreamError) -> bool:
    return error.status in (404, 405) and error.type != "NotFoundError"


def tokenize(endpoint, chat_body: dict, headers: dict | None = None, *, token_strs: bool = False) -> dict:
    """/tokenize for exactly the prompt of `chat_body`. Raises NoTokenize, UpstreamError, DecryptionError."""
    client = probe.client_for(endpoint)

    async def go():
        async with client:
            return await client.tokenize(tokenize_body(chat_body, token_strs=token_strs), headers=headers)

    try:
        return async_to_sync(go)()
    except UpstreamError as error:
        if _missing_route(error):
            raise NoTokenize from None
        raise


def meter(endpoint, chat_body: dict, headers: dict | None = None) -> dict:
    """The token meter's figures for the next request: {"count", "max_model_len", "room", "fits",
    "reason", "note"}, or {"absent": True} without /tokenize, or {"error": "..."}."""
    try:
        answer = tokenize(endpoint, chat_body, headers)
    except NoTokenize:
        return {"absent": True}
    except UpstreamError as error:
        return {"error": _describe(error)}
    except DecryptionError as error:
        return {"error": str(error)}
    limit = answer.get("max_model_len") or probe.max_model_len(endpoint)
    return fit(answer["count"], limit, chat_body)


def templated(endpoint, chat_body: dict, headers: dict | None = None) -> dict:
    """What the model saw: the prompt after the chat template, as segments [(text, special)],
    with the token count; {"absent": True} or {"error"} as meter()."""
    client = probe.client_for(endpoint)

    async def go():
        async with client:
            answer = await client.tokenize(tokenize_body(chat_body, token_strs=True), headers=headers)
            text = await client.detokenize(chat_body.get("model"), answer["tokens"], headers=headers)
            return answer, text

    try:
        answer, text = async_to_sync(go)()
    except UpstreamError as error:
        return {"absent": True} if _missing_route(error) else {"error": _describe(error)}
    except DecryptionError as error:
        return {"error": str(error)}
    found = (SPECIAL.match(s) for s in answer.get("token_strs") or [])
    specials = sorted({m.group(1) for m in found if m}, key=len, reverse=True)
    return {"count": answer["count"], "max_model_len": answer.get("max_model_len"), "segments": segments(text, specials),
            "text": text}


def segments(text: str, specials: list[str]) -> list[tuple[str, bool]]:
    """`text` cut into (piece, is_special_token) so the page can mark the template's tokens."""
    if not specials:
        return [(text, False)] if text else []
    pattern = re.compile("|".join(re.escape(s) for s in specials))
    out, at = [], 0
    for match in pattern.finditer(text):
        if match.start() > at:
            out.append((text[at : match.start()], False))
        out.append((match.group(), True))
        at = match.end()
    if at < len(text):
        out.append((text[at:], False))
    return out


def load(endpoint, headers: dict | None = None, *, fresh: bool = False) -> dict:
    """The server's load from /metrics (with a conversation's `headers` too, when asked from one: a
    gateway may route on them), read at most every LOAD_SECONDS per endpoint and headers:
    {"running", "waiting", "kv_cache_usage", "prefix_cache_hit_rate", ..., "at"}, {"absent": True}
    without /metrics, or {"error": "..."}."""
    routed = hashlib.sha256(json.dumps(sorted((headers or {}).items())).encode()).hexdigest()[:16]
    key = f"chat:load:{endpoint.pk}:{endpoint.updated_at.timestamp() if endpoint.updated_at else 0}:{routed}"
    if not fresh:
        cached = cache.get(key)
        if cached is not None:
            return cached
    try:
        client = probe.client_for(endpoint)

        async def go():
            async with client:
                return await client.metrics_text(headers=headers)

        figures = parse_load(async_to_sync(go)(), endpoint.model_id)
        result = {"absent": True} if figures.empty else {
            **figures.as_dict(), "at": time.time(),
            "kv_percent": None if figures.kv_cache_usage is None else round(figures.kv_cache_usage * 100, 1),
            "hit_percent": None if figures.prefix_cache_hit_rate is None else round(figures.prefix_cache_hit_rate * 100, 1),
        }
    except UpstreamError as error:
        result = {"absent": True} if _missing_route(error) else {"error": _describe(error)}
    except DecryptionError as error:
        result = {"error": str(error)}
    cache.set(key, result, LOAD_SECONDS)
    return result
