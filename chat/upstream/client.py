"""The only I/O of the protocol layer: async HTTP to a vLLM server with httpx.

One pooled `httpx.AsyncClient` per endpoint configuration (`get_client`),
never following redirects (the bearer token must not travel to another host)
and ignoring proxy/netrc environment variables (`trust_env=False`).
Every failure leaves this module as an UpstreamError (see errors.py).

    client = get_client(base_url, api_key, verify=True, ca_bundle=None, timeout=120)
    async with contextlib.aclosing(client.stream_chat(body)) as events:
        async for event in events:
            ...

Cancelling the task that iterates, or closing the generator, closes the
upstream connection, so vLLM stops generating.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from .chunks import Event, StreamParser, StreamTruncated, check_response
from .errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
    error_from_object,
    parse_error_body,
    text_excerpt,
)
from .headers import check_headers, merged
from .redact import redact, redact_bytes
from .transport import Transport
from .urls import normalize_base_url, server_root

__all__ = ["UpstreamClient", "close_clients", "get_client", "normalize_base_url"]

USER_AGENT = "hexgrid-playground"
MAX_ERROR_BODY = 64 * 1024  # enough for any error message; gateways can send big pages
MAX_METRICS_BODY = 4 * 1024 * 1024  # vLLM's is ~60 KB; a histogram-heavy server stays far below
MAX_CACHED_CLIENTS = 32
MAX_CONNECTIONS = 2000  # per endpoint: one per concurrent stream
# A read at least this large means the stream is ahead of its consumer: no pause before the next
# (stream_chat's pace). Paced tokens are ~200 bytes each; the transport reads up to 16 KB at once.
PACE_BELOW = 4096


class UpstreamClient:
    """Talks to one vLLM endpoint. Safe to share between tasks of one event loop."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        verify: bool = True,
        ca_bundle: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        secret_headers: tuple[str, ...] = (),
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self._api_key = api_key or None
        # The endpoint's own headers go with every request; the values of `secret_headers` are
        # redacted from upstream text like the key.
        self._headers = check_headers((headers or {}).items())
        hidden = {name.lower() for name in secret_headers}
        self._secrets = tuple(
            s for s in (self._api_key, *(v for n, v in self._headers.items() if n.lower() in hidden)) if s
        )
        self.verify = verify
        self.ca_bundle = ca_bundle or None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._verify = _ssl_verify(verify, self.ca_bundle)
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"<UpstreamClient {self.base_url} key={key} verify={self.verify}>"

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None and self._loop is asyncio.get_running_loop():
            await http.aclose()

    async def list_models(self, *, headers: dict[str, str] | None = None) -> list[dict]:
        """The served models: the `data` list of GET /v1/models."""
        answer = await self._request_json("GET", "/models", headers=headers)
        models = answer.get("data")
        if not isinstance(models, list):
            raise UpstreamProtocolError('/models answered without a "data" list')
        return models

    async def create_chat(self, body: dict, *, headers: dict[str, str] | None = None) -> dict:
        """POST a non-streaming chat completion; return the decoded response."""
        if body.get("stream"):
            raise ValueError("create_chat() sends non-streaming requests; use stream_chat() for stream: true")
        answer = await self._request_json("POST", "/chat/completions", body, headers=headers)
        if not isinstance(answer.get("choices"), list):
            raise UpstreamProtocolError('the completion has no "choices" list')
        try:
            return check_response(answer)
        except UpstreamError as error:
            raise self._redacted(error)

    async def version(self, *, headers: dict[str, str] | None = None) -> str:
        """vLLM's GET /version (at the server root)."""
        answer = await self._request_json("GET", "/version", root=True, headers=headers)
        version = answer.get("version")
        if not isinstance(version, str):
            raise UpstreamProtocolError('/version answered without a "version" string')
        return version

    async def tokenize(self, body: dict, *, headers: dict[str, str] | None = None) -> dict:
        """vLLM's POST /tokenize (at the server root): {"count", "max_model_len", "tokens", "token_strs"}."""
        answer = await self._request_json("POST", "/tokenize", body, root=True, headers=headers)
        tokens, count = answer.get("tokens"), answer.get("count")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise UpstreamProtocolError('/tokenize answered without a "tokens" list of integers')
        if not isinstance(count, int) or isinstance(count, bool):
            raise UpstreamProtocolError('/tokenize answered without an integer "count"')
        limit, strs = answer.get("max_model_len"), answer.get("token_strs")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise UpstreamProtocolError('/tokenize: "max_model_len" is not an integer')
        if strs is not None and (not isinstance(strs, list) or not all(isinstance(t, str) for t in strs)):
            raise UpstreamProtocolError('/tokenize: "token_strs" is not a list of strings')
        return {"count": count, "max_model_len": limit, "tokens": tokens, "token_strs": strs}

    async def detokenize(self, model: str, tokens: list[int], *, headers: dict[str, str] | None = None) -> str:
        """vLLM's POST /detokenize: the text of `tokens`, special tokens included."""
        answer = await self._request_json("POST", "/detokenize", {"model": model, "tokens": tokens}, root=True, headers=headers)
        prompt = answer.get("prompt")
        if not isinstance(prompt, str):
            raise UpstreamProtocolError('/detokenize answered without a "prompt" string')
        return prompt

    async def metrics_text(self, *, headers: dict[str, str] | None = None) -> str:
        """vLLM's Prometheus GET /metrics (at the server root), as text (parsed in metrics.py)."""
        try:
            response = await self._send(self._build("GET", server_root(self.base_url) + "/metrics", accept="text/plain", headers=headers))
            try:
                if not response.is_success:
                    raise await self._status_error(response)
                raw = await _read_body(response, limit=MAX_METRICS_BODY)
            except httpx.HTTPError as error:
                raise self._mapped(error, "request") from None
            finally:
                await response.aclose()
            return raw.decode("utf-8", "replace")
        except UpstreamError as error:
            raise self._redacted(error)

    async def health(self) -> bool:
        """Whether vLLM's GET /health answers 200. Never raises."""
        try:
            response = await self._send(self._build("GET", server_root(self.base_url) + "/health"))
            await response.aclose()
        except UpstreamError:
            return False
        return response.status_code == 200

    async def stream_chat(
        self, body: dict, *, headers: dict[str, str] | None = None, pace: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[Event]:
        """POST a streaming chat completion; yield its events (see chunks.py).

        Ends after StreamDone. Raises UpstreamProtocolError(truncated=True)
        if the stream stops before `[DONE]`, UpstreamStreamError for an error
        inside the stream, and the other UpstreamErrors as usual.

        `pace`, if given, is awaited after the events of a read, before the next read: a
        consumer that shows tokens in batches reads them in batches (whatever arrived meanwhile
        waits in the connection's buffer), and each read's fixed cost is paid once per batch.
        Not after a large read (PACE_BELOW bytes or more): the upstream is ahead of the consumer,
        and a pause per read would cap a fast stream at one read's worth per batch.
        """
        if body.get("stream") is not True:
            raise ValueError('stream_chat() needs "stream": true in the body; use create_chat() otherwise')
        try:
            request = self._build("POST", self.base_url + "/chat/completions", body, "text/event-stream", headers)
            response = await self._send(request)
            try:
                await self._check_stream_response(response)
                parser = StreamParser()
                try:
                    async for piece in response.aiter_bytes():
                        for event in parser.feed(piece):
                            yield event
                        parser.check()  # an error after this batch's good events
                        if parser.done:
                            return
                        if pace is not None and len(piece) < PACE_BELOW:
                            await pace()
                except httpx.HTTPError as error:
                    raise self._mapped(error, "stream") from None
                for event in parser.close():
                    if isinstance(event, StreamTruncated):
                        raise UpstreamProtocolError(
                            "the stream ended before [DONE]; the answer may be incomplete",
                            truncated=True,
                            phase="stream",
                        )
                    yield event
            finally:
                await response.aclose()
        except UpstreamError as error:
            raise self._redacted(error)

    # -- plumbing -------------------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        # A pool is bound to the event loop that opened its connections; a new
        # loop (tests, sync_to_async threads) gets a fresh pool.
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop or self._http.is_closed:
            # Every open stream holds a connection: a cap of 100 would queue the 101st.
            limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=100)
            self._http = httpx.AsyncClient(
                transport=Transport(verify=self._verify, trust_env=False, limits=limits),
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout, pool=self.connect_timeout),
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            )
            self._loop = loop
        return self._http

    def _build(self, method: str, url: str, body: dict | None = None, accept: str = "application/json",
               headers: dict[str, str] | None = None):
        # A request's own headers (a conversation's) under the endpoint's; never Authorization.
        sent = {"Accept": accept, **merged(self._headers, check_headers((headers or {}).items()))}
        if self._api_key:
            sent["Authorization"] = f"Bearer {self._api_key}"
        return self._http_client().build_request(method, url, json=body, headers=sent)

    def _redacted(self, error: UpstreamError) -> UpstreamError:
        for secret in self._secrets:
            error.redact(secret)
        return error

    def _redact_bytes(self, raw: bytes) -> bytes:
        for secret in self._secrets:
            raw = redact_bytes(raw, secret)
        return raw

    def redact_text(self, text: str) -> str:
        """`text` without the key or a secret header value, in any form (redact.py)."""
        for secret in self._secrets:
            text = redact(text, secret)
        return text

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._http_client().send(request, stream=True)
        except httpx.HTTPError as error:
            raise self._redacted(self._mapped(error, "request")) from None

    async def _request_json(self, method: str, path: str, body: dict | None = None, *, root: bool = False,
                            headers: dict[str, str] | None = None) -> dict:
        """`path` under the base URL (…/v1), or under the server root for vLLM's own routes."""
        url = (server_root(self.base_url) if root else self.base_url) + path
        try:
            response = await self._send(self._build(method, url, body, headers=headers))
            try:
                if not response.is_success:
                    raise await self._status_error(response)
                raw = await _read_body(response, limit=None)
            except httpx.HTTPError as error:
                raise self._mapped(error, "request") from None
            finally:
                await response.aclose()
            try:
                answer = json.loads(raw, parse_constant=_not_json)
            except ValueError:
                raise _unexpected(response, self._redact_bytes(raw[:MAX_ERROR_BODY]), "JSON") from None
            if not isinstance(answer, dict):
                raise UpstreamProtocolError(f"expected a JSON object, got {type(answer).__name__}")
            error = error_from_object(answer, status=response.status_code)
            if error is not None:
                raise error
            return answer
        except UpstreamError as error:
            raise self._redacted(error)

    async def _check_stream_response(self, response: httpx.Response) -> None:
        """vLLM answers a failing stream request with a plain JSON error."""
        try:
            if not response.is_success:
                raise await self._status_error(response)
            if "text/event-stream" not in response.headers.get("content-type", ""):
                raw = self._redact_bytes(await _read_body(response))
                try:
                    answer = json.loads(raw)
                except ValueError:
                    answer = None
                error = error_from_object(answer, status=response.status_code) if isinstance(answer, dict) else None
                raise error or _unexpected(response, raw, "an event stream")
        except httpx.HTTPError as error:
            raise self._mapped(error, "request") from None

    async def _status_error(self, response: httpx.Response) -> UpstreamHTTPError:
        if response.is_redirect:
            target = response.headers.get("location", "?")
            return UpstreamHTTPError(
                f"the server redirects to {target}; redirects are not followed, check the base URL",
                status=response.status_code,
            )
        # Redacted before it is parsed, cut or stripped of markup: no piece of the key survives.
        raw = self._redact_bytes(await _read_body(response))
        return parse_error_body(response.status_code, raw, response.headers.get("content-type"))

    def _mapped(self, error: httpx.HTTPError, phase: str) -> UpstreamError:
        host = urlsplit(self.base_url).netloc
        detail = str(error) or type(error).__name__
        if isinstance(error, httpx.PoolTimeout):
            return UpstreamTimeout(
                f"all {MAX_CONNECTIONS} connections to {host} are busy; none freed up within {self.connect_timeout:g}s",
                phase="connect",
            )
        if isinstance(error, httpx.ConnectTimeout):
            return UpstreamTimeout(f"connecting to {host} took longer than {self.connect_timeout:g}s", phase="connect")
        if isinstance(error, httpx.TimeoutException):
            return UpstreamTimeout(f"{host} sent nothing for {self.timeout:g}s", phase=phase)
        if isinstance(error, httpx.ConnectError):
            hint = ""
            if "CERTIFICATE" in detail.upper():
                hint = " (for a self-signed certificate, add its CA bundle or turn off TLS verification)"
            return UpstreamConnectError(f"could not connect to {host}: {detail}{hint}")
        if phase == "stream" and isinstance(error, (httpx.RemoteProtocolError, httpx.NetworkError)):
            return UpstreamProtocolError(
                f"the connection broke before the stream finished ({detail})", truncated=True, phase="stream"
            )
        if isinstance(error, (httpx.RemoteProtocolError, httpx.NetworkError)):
            return UpstreamProtocolError(f"{host} closed the connection without a complete answer ({detail})")
        return UpstreamError(f"request to {host} failed: {detail}", phase=phase)


async def _read_body(response: httpx.Response, limit: int | None = MAX_ERROR_BODY) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size >= limit:
            break
    return b"".join(chunks)


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")


def _unexpected(response: httpx.Response, raw: bytes, wanted: str) -> UpstreamProtocolError:
    content_type = response.headers.get("content-type") or "no content type"
    excerpt = text_excerpt(raw.decode("utf-8", "replace"), content_type)
    return UpstreamProtocolError(
        f"expected {wanted}, got {content_type.split(';')[0]}: {excerpt or '(empty body)'}",
        status=response.status_code,
    )


def _ssl_verify(verify: bool, ca_bundle: str | None) -> bool | ssl.SSLContext:
    """httpx's `verify`: False, True (system CAs), or a context trusting a CA
    bundle given as a file path or as PEM text."""
    if not verify:
        return False
    if not ca_bundle:
        return True
    try:
        if "-----BEGIN" in ca_bundle:
            return ssl.create_default_context(cadata=ca_bundle)
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"The CA bundle could not be loaded: {error}") from None


_CLIENTS: dict[tuple, UpstreamClient] = {}
_KEY_SALT = os.urandom(16)  # cache keys hold an HMAC of the API key, never the key


def get_client(
    base_url: str,
    api_key: str | None = None,
    *,
    verify: bool = True,
    ca_bundle: str | None = None,
    timeout: float = 120.0,
    connect_timeout: float = 10.0,
    headers: dict[str, str] | None = None,
    secret_headers: tuple[str, ...] = (),
) -> UpstreamClient:
    """The shared client for one endpoint configuration (one pool per config)."""
    secret_part = json.dumps([api_key, sorted((headers or {}).items()), sorted(secret_headers)]) if api_key or headers else ""
    fingerprint = hmac.new(_KEY_SALT, secret_part.encode(), hashlib.sha256).hexdigest() if secret_part else None
    key = (normalize_base_url(base_url), fingerprint, bool(verify), ca_bundle or None, float(timeout), float(connect_timeout))
    client = _CLIENTS.pop(key, None)
    if client is None:
        client = UpstreamClient(
            base_url, api_key, verify=verify, ca_bundle=ca_bundle, timeout=timeout, connect_timeout=connect_timeout,
            headers=headers, secret_headers=secret_headers,
        )
        while len(_CLIENTS) >= MAX_CACHED_CLIENTS:  # e.g. keys rotated: drop the oldest
            _CLIENTS.pop(next(iter(_CLIENTS)))
    _CLIENTS[key] = client  # (re)insert as the most recently used
    return client


async def close_clients() -> None:
    """Close every cached client (at shutdown, or between tests)."""
    clients = list(_CLIENTS.values())
    _CLIENTS.clear()
    for client in clients:
        await client.aclose()
