"""A lean fake vLLM upstream for bench/relay.py: OpenAI-compatible streamed chat completions that
cost almost no CPU, so the two cores go to the relay and the clients, not to the upstream.

    .venv/bin/python bench/upstream.py --port 8001 [--delay 0.02]

One asyncio Protocol per connection on uvloop, HTTP/1.1 keep-alive, no framework. Every answer is
`max_tokens` tokens (" hex") of the requested model, in vLLM's chunk shape (a role chunk at once,
then one `data:` event per token, each in its own write, `delay` seconds apart on an absolute
schedule, then the finish chunk, the usage chunk when `stream_options.include_usage`, `[DONE]`).
Each token is one pre-encoded write from a timer callback: no coroutine, no JSON per token.

- POST /v1/chat/completions: paced (`--delay` per token, first token after one delay too);
- POST /fast/v1/chat/completions: no delay (max chunks/s);
- GET /bench/peak: the most requests in flight at once since the last call (then reset).
A request that does not ask for a stream gets the whole answer as one JSON body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n")
END = b"0\r\n\r\n"
TOKEN = " hex"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(obj) -> bytes:
    return _chunk(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


class Answer:
    """The pre-encoded pieces of one model's streamed answer."""

    def __init__(self, model: str) -> None:
        base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def choice(delta, finish=None):
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        self.model = model
        self.role = _event(choice({"role": "assistant", "content": ""}))
        self.token = _event(choice({"content": TOKEN}))
        self.finish = _event(choice({}, "length"))
        self.base = base
        self.done = _chunk(b"data: [DONE]\n\n") + END

    def usage(self, tokens: int) -> bytes:
        return _event({**self.base, "choices": [], "usage": {"prompt_tokens": 12, "total_tokens": 12 + tokens,
                                                             "completion_tokens": tokens}})

    def whole(self, tokens: int) -> bytes:
        body = json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": self.base["created"], "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": TOKEN * tokens}, "logprobs": None,
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 12, "total_tokens": 12 + tokens, "completion_tokens": tokens},
        }).encode()
        return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


class Stats:
    inflight = 0
    peak = 0


_answers: dict[str, Answer] = {}


class Connection(asyncio.Protocol):
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.busy = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def connection_lost(self, exc) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.busy:
            self.busy = False
            Stats.inflight -= 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def _next(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            self._respond(method, path, body)

    def _respond(self, method: str, path: str, body: bytes) -> None:
        if path == "/bench/peak":
            data = json.dumps({"peak": Stats.peak}).encode()
            Stats.peak = Stats.inflight
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(data), data))
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            return
        request = json.loads(body or b"{}")
        model = str(request.get("model") or "bench")
        answer = _answers.get(model) or _answers.setdefault(model, Answer(model))
        tokens = int(request.get("max_tokens") or request.get("max_completion_tokens") or 16)
        if not request.get("stream"):
            self.transport.write(answer.whole(tokens))
            return
        self.busy = True
        Stats.inflight += 1
        Stats.peak = max(Stats.peak, Stats.inflight)
        self.answer, self.tokens, self.sent = answer, tokens, 0
        self.usage = bool((request.get("stream_options") or {}).get("include_usage"))
        self.transport.write(HEAD + answer.role)
        if path.startswith("/fast/") or self.delay <= 0:
            self.transport.write(answer.token * tokens)
            self._end()
        else:
            self.start = self.loop.time()
            self.timer = self.loop.call_at(self.start + self.delay, self._tick)

    def _tick(self) -> None:
        if self.transport is None:
            return
        self.transport.write(self.answer.token)
        self.sent += 1
        if self.sent >= self.tokens:
            self.timer = None
            self._end()
        else:  # an absolute schedule: a late tick does not push every later token back
            self.timer = self.loop.call_at(self.start + (self.sent + 1) * self.delay, self._tick)

    def _end(self) -> None:
        self.transport.write(self.answer.finish + (self.answer.usage(self.tokens) if self.usage else b"") + self.answer.done)
        self.busy = False
        Stats.inflight -= 1
        if self.buffer:
            self._next()


async def serve(host: str, port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(delay), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between tokens (default 0.02: 50 tokens/s)")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(args.host, args.port, args.delay))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
