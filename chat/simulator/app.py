"""The raw ASGI application: routing, auth, fault injection, recording, streaming."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .compose import generate
from .render import completion_body, dumps, stream_events
from .specs import DEFAULT_MODELS, ModelSpec
from .template import METRICS_CONTENT_TYPE, Gauges, ids, render, text_of, token_str
from .tokens import tokenize
from .validate import SimError, bad_request, count_prompt_tokens, parse_json, parse_request

VLLM_VERSION = "0.32.0"
VERSION = f"{VLLM_VERSION}+simulator"
FINGERPRINT = f"vllm-{VLLM_VERSION}-simulator"
OWNER = "hexgrid-simulator"

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_LABEL = [(b"x-simulator", b"hexgrid")]
_BATCH_BYTES = 1 << 16

GATEWAY_HTML = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
            413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
MALFORMED_EVENT = 'data: {"id":"chatcmpl-malformed","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\n\n'


@dataclass
class RecordedRequest:
    """One request as the simulator received it (Authorization removed)."""

    id: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Faults:
    """Per-request fault injection, read from x-sim-* headers (see the package docstring)."""

    delay_first: float = 0.0
    delay_token: float | None = None
    status: int | None = None
    body: str = "json"
    cut_after: int | None = None
    malformed_after: int | None = None
    error_after: int | None = None
    reset_after: int | None = None

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> Faults:
        faults = cls()
        try:
            if "x-sim-delay-first" in headers:
                faults.delay_first = max(0.0, float(headers["x-sim-delay-first"]))
            if "x-sim-delay-token" in headers:
                faults.delay_token = max(0.0, float(headers["x-sim-delay-token"]))
            if "x-sim-status" in headers:
                faults.status = int(headers["x-sim-status"])
                if not 100 <= faults.status <= 599:
                    raise ValueError
            for name in ("cut_after", "malformed_after", "error_after"):
                header = "x-sim-" + name.replace("_", "-")
                if header in headers:
                    setattr(faults, name, max(0, int(headers[header])))
            if "x-sim-reset" in headers:
                value = headers["x-sim-reset"].strip().lower()
                faults.reset_after = 0 if value in ("", "true", "yes", "now") else max(0, int(value))
        except ValueError:
            raise SimError(400, "Invalid x-sim-* fault header value", "BadRequestError", None) from None
        faults.body = headers.get("x-sim-body", "json").strip().lower()
        return faults


class _Reset(Exception):
    """Raised to make the server drop the connection when no socket is reachable."""


class SimulatorApp:
    """An honest vLLM 0.32 OpenAI-compatible server, in process. See the package docstring."""

    def __init__(self, *, api_key: str | None = None, models: list[ModelSpec] | None = None,
                 token_delay: float = 0.0, record: int = 50):
        specs = list(models) if models else list(DEFAULT_MODELS)
        self.models: dict[str, ModelSpec] = {m.id: m for m in specs}
        if not self.models:
            raise ValueError("the simulator needs at least one model")
        self.api_key = api_key
        self.token_delay = max(0.0, float(token_delay))
        self.requests: deque[RecordedRequest] = deque(maxlen=max(0, record))
        self.disconnects: list[str] = []
        self.started = int(time.time())
        self._permissions = {m: f"modelperm-{secrets.token_hex(8)}" for m in self.models}
        self.gauges = Gauges(list(self.models))

    # ------------------------------------------------------------------ ASGI entry
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        path = scope.get("path") or "/"
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        body = await self._read_body(receive)
        if body is None:
            return
        rid = "chatcmpl-" + (headers.get("x-request-id") or secrets.token_hex(8))
        if self.requests.maxlen:
            shown = {k: v for k, v in headers.items() if k != "authorization"}
            self.requests.append(RecordedRequest(rid, scope["method"], path, shown, body))
        try:
            await self._handle(scope["method"], path, headers, body, rid, receive, send)
        except SimError as exc:
            await self._json(send, exc.status, exc.body(), rid)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _read_body(receive) -> bytes | None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    # ------------------------------------------------------------------ routing
    async def _handle(self, method, path, headers, body, rid, receive, send) -> None:
        faults = Faults.from_headers(headers)
        if faults.reset_after == 0 and faults.status is None:
            await self._reset(send)
            return
        if faults.delay_first and (faults.status is not None or path != "/v1/chat/completions"):
            if await self._wait(receive, faults.delay_first):
                self.disconnects.append(rid)
                return
        if faults.status is not None:
            await self._fault_status(send, faults, rid)
            return
        if path.startswith("/v1") and self.api_key is not None:
            given = headers.get("authorization", "").encode()
            if not secrets.compare_digest(given, f"Bearer {self.api_key}".encode()):
                await self._json(send, 401, {"error": "Unauthorized"}, rid)
                return
        routes = {
            "/health": ("GET", self._health),
            "/version": ("GET", self._version),
            "/v1/models": ("GET", self._list_models),
            "/v1/chat/completions": ("POST", self._chat),
            "/tokenize": ("POST", self._tokenize),
            "/detokenize": ("POST", self._detokenize),
            "/metrics": ("GET", self._metrics),
        }
        route = routes.get(path.rstrip("/") or "/")
        if route is None:
            await self._json(send, 404, {"detail": "Not Found"}, rid)
        elif method != route[0] and not (method == "HEAD" and route[0] == "GET"):
            await self._json(send, 405, {"detail": "Method Not Allowed"}, rid, extra=[(b"allow", route[0].encode())])
        else:
            await route[1](body=body, rid=rid, faults=faults, receive=receive, send=send)

    async def _health(self, send, rid, **_) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"0"), *_LABEL]})
        await send({"type": "http.response.body", "body": b""})

    async def _version(self, send, rid, **_) -> None:
        await self._json(send, 200, {"version": VERSION}, rid)

    async def _list_models(self, send, rid, **_) -> None:
        data = [{
            "id": spec.id, "object": "model", "created": self.started, "owned_by": OWNER, "root": spec.id,
            "parent": None, "max_model_len": spec.max_model_len,
            "permission": [{
                "id": self._permissions[spec.id], "object": "model_permission", "created": self.started,
                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                "organization": "*", "group": None, "is_blocking": False,
            }],
        } for spec in self.models.values()]
        await self._json(send, 200, {"object": "list", "data": data}, rid)

    def _spec(self, name) -> ModelSpec:
        if name is None:
            return next(iter(self.models.values()))
        if name not in self.models:
            aliases = ", ".join(self.models)
            raise SimError(404, f"The model `{name}` does not exist. Valid aliases: {aliases}.", "NotFoundError", "model")
        return self.models[name]

    async def _tokenize(self, body, rid, send, **_) -> None:
        """vLLM's /tokenize: a chat (messages, tools, chat_template_kwargs) or a prompt; 11a-11c."""
        data = parse_json(body)
        if not isinstance(data, dict):
            raise bad_request("Expected a JSON object")
        spec = self._spec(data.get("model"))
        if "messages" in data:
            messages = data.get("messages")
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise bad_request("messages must be a list of message objects")
            tools = data.get("tools") or []
            kwargs = data.get("chat_template_kwargs") or {}
            pieces = render(spec, messages, tools if isinstance(tools, list) else [],
                            thinking=spec.thinks(kwargs if isinstance(kwargs, dict) else {}),
                            add_generation_prompt=data.get("add_generation_prompt", True) is not False)
        elif isinstance(data.get("prompt"), str):
            pieces = tokenize(data["prompt"])
        else:
            raise bad_request("Either `prompt` or `messages` must be given")
        answer = {"count": len(pieces), "max_model_len": spec.max_model_len, "tokens": ids(pieces),
                  "token_strs": [token_str(p) for p in pieces] if data.get("return_token_strs") else None}
        await self._json(send, 200, answer, rid)

    async def _detokenize(self, body, rid, send, **_) -> None:
        data = parse_json(body)
        if not isinstance(data, dict):
            raise bad_request("Expected a JSON object")
        self._spec(data.get("model"))
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise bad_request("tokens must be a list of integers")
        try:
            prompt = text_of(tokens)
        except KeyError as missing:
            raise bad_request(f"Token id {missing.args[0]} is out of vocabulary") from None
        await self._json(send, 200, {"prompt": prompt}, rid)

    async def _metrics(self, send, rid, **_) -> None:
        await self._raw(send, 200, self.gauges.page(), [(b"content-type", METRICS_CONTENT_TYPE)], rid)

    async def _chat(self, body, rid, faults: Faults, receive, send) -> None:
        req = parse_request(parse_json(body), self.models)
        prefix = count_prompt_tokens(req.messages[:-1], req.tools, req.spec, req.thinking) - 3
        self.gauges.started(req.model, req.messages, req.prompt_tokens, prefix)
        try:
            await self._answer(req, rid, faults, receive, send)
        finally:
            self.gauges.finished(req.model)

    async def _answer(self, req, rid, faults: Faults, receive, send) -> None:
        created = int(time.time())
        try:
            gens = [generate(req, i) for i in range(req.n)]
            events = list(stream_events(req, gens, rid, created, FINGERPRINT)) if req.stream else None
        except Exception as exc:  # a simulator bug: answer like vLLM's 500, not a bare traceback
            raise SimError(500, f"Simulator failure: {exc!r}", "InternalServerError") from exc
        delay = self.token_delay if faults.delay_token is None else faults.delay_token
        if events is not None:
            first_token = req.n  # events before this index are the role chunks
            tokens_end = len(events) - 1 - (1 if req.include_usage else 0)
            await self._stream(events, first_token, tokens_end, delay, faults, rid, receive, send)
            return
        wait = faults.delay_first + delay * max(g.completion_tokens for g in gens)
        if wait and await self._wait(receive, wait):
            self.disconnects.append(rid)
            return
        if faults.error_after is not None:
            raise SimError(500, "Simulated engine failure (x-sim-error-after)", "InternalServerError")
        payload = completion_body(req, gens, rid, created, FINGERPRINT)
        if faults.malformed_after is not None:
            payload = payload[: max(1, len(payload) // 2)]
        if faults.cut_after is not None or faults.reset_after is not None:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [*_JSON, (b"content-length", str(len(payload)).encode()), *_LABEL]})
            await send({"type": "http.response.body", "body": payload[: len(payload) // 2], "more_body": True})
            await asyncio.sleep(0.05)
            await self._reset(send)
            return
        await self._raw(send, 200, payload, _JSON, rid)

    # ------------------------------------------------------------------ streaming
    async def _stream(self, events, first_token, tokens_end, delay, faults: Faults, rid, receive, send) -> None:
        disconnected = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        watcher = asyncio.create_task(watch())
        batch: list[str] = []
        size = 0

        async def flush(more: bool = True) -> bool:
            nonlocal batch, size
            if disconnected.is_set():
                return False
            try:
                await send({"type": "http.response.body", "body": "".join(batch).encode(), "more_body": more})
            except (OSError, RuntimeError):  # the server refuses to send: the client is gone
                disconnected.set()
                return False
            batch, size = [], 0
            return True

        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [*_SSE, (b"x-request-id", rid.encode("latin-1", "replace")), *_LABEL]})
            if faults.delay_first and await self._wait_event(disconnected, faults.delay_first):
                self.disconnects.append(rid)
                return
            for k, event in enumerate(events):
                if k == faults.cut_after:
                    await flush(more=False)
                    return
                if k == faults.reset_after:
                    if await flush():
                        await asyncio.sleep(0.05)
                    await self._reset(send)
                    return
                if k == faults.error_after:
                    error = {"error": {"message": "Simulated engine failure (x-sim-error-after)",
                                       "type": "InternalServerError", "param": None, "code": 500}}
                    batch.append("data: " + dumps(error) + "\n\n")
                    batch.append("data: [DONE]\n\n")
                    await flush(more=False)
                    return
                if k == faults.malformed_after:
                    batch.append(MALFORMED_EVENT)
                if delay and first_token <= k < tokens_end:
                    if batch and not await flush():
                        break
                    if await self._wait_event(disconnected, delay):
                        break
                batch.append(event)
                size += len(event)
                if size >= _BATCH_BYTES or (delay and k < first_token) or disconnected.is_set():
                    if not await flush():
                        break
                    await asyncio.sleep(0)
            else:
                if await flush(more=False):
                    return
            self.disconnects.append(rid)
        finally:
            watcher.cancel()

    @staticmethod
    async def _wait_event(event: asyncio.Event, seconds: float) -> bool:
        """Sleep `seconds`; True if `event` got set meanwhile."""
        try:
            await asyncio.wait_for(event.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    async def _wait(self, receive, seconds: float) -> bool:
        """Sleep `seconds` while watching for the client going away."""
        disconnected = asyncio.Event()

        async def watch() -> None:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()

        watcher = asyncio.create_task(watch())
        try:
            return await self._wait_event(disconnected, seconds)
        finally:
            watcher.cancel()

    # ------------------------------------------------------------------ responses
    async def _json(self, send, status: int, obj: Any, rid: str, extra=()) -> None:
        await self._raw(send, status, dumps(obj).encode(), _JSON, rid, extra)

    @staticmethod
    async def _raw(send, status: int, payload: bytes, content_type, rid: str, extra=()) -> None:
        headers = [*content_type, (b"content-length", str(len(payload)).encode()), *extra, *_LABEL]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _fault_status(self, send, faults: Faults, rid: str) -> None:
        status = faults.status
        extra = [(b"retry-after", b"1")] if status in (429, 503) else []
        reason = _REASONS.get(status, "Error")
        if faults.body == "html":
            page = GATEWAY_HTML.format(status=status, reason=reason).encode()
            await self._raw(send, status, page, [(b"content-type", b"text/html")], rid, extra)
        elif faults.body == "text":
            text = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
            await self._raw(send, status, text, [(b"content-type", b"text/plain")], rid, extra)
        elif faults.body == "empty":
            await self._raw(send, status, b"", [(b"content-type", b"text/plain")], rid, extra)
        elif status == 401:
            await self._json(send, 401, {"error": "Unauthorized"}, rid, extra)
        else:
            message = f"Simulated {reason} (x-sim-status: {status})"
            error = SimError(status, message)
            if faults.body == "flat":
                flat = {"object": "error", "message": message, "type": error.type, "param": None, "code": status}
                await self._json(send, status, flat, rid, extra)
            else:
                await self._json(send, status, error.body(), rid, extra)

    @staticmethod
    async def _reset(send) -> None:
        """Drop the connection abruptly: a TCP RST when the server's transport
        is reachable (uvicorn), otherwise an exception that makes the server
        close the connection."""
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is None:
            raise _Reset("x-sim-reset")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()
        await asyncio.sleep(0)


def make_simulator(*, api_key: str | None = None, models: list[ModelSpec] | None = None,
                   token_delay: float = 0.0, record: int = 50) -> SimulatorApp:
    """Build the simulator ASGI app (see the package docstring for everything it does)."""
    return SimulatorApp(api_key=api_key, models=models, token_delay=token_delay, record=record)
