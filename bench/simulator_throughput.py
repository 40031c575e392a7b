"""How fast one simulated stream is, so the simulator never limits a benchmark.

    .venv/bin/python bench/simulator_throughput.py [--tokens 50000] [--runs 3]

Serves the simulator with uvicorn (+ httptools) on 127.0.0.1, streams one long
completion (ignore_eos + max_tokens, zero token delay) with httpx over the
real socket, parses the SSE lines, and prints chunks per second from sending the
request to [DONE]. Target: >= 20,000 chunks/s.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chat.simulator import ModelSpec, make_simulator  # noqa: E402

TARGET = 20_000


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_stream(client: httpx.Client, tokens: int) -> tuple[int, float, int]:
    body = {
        "model": "sim/qwen3",
        "messages": [{"role": "user", "content": "Count to a very large number."}],
        "stream": True, "ignore_eos": True, "max_tokens": tokens,
        "chat_template_kwargs": {"enable_thinking": False},
        "stream_options": {"include_usage": True},
    }
    chunks, done, usage = 0, False, 0
    started = time.perf_counter()  # the request is sent: generation time counts too
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            payload = line[6:]
            if payload == "[DONE]":
                done = True
                break
            chunks += 1
            if payload.startswith('{"id"') and '"choices":[]' in payload:
                usage = json.loads(payload)["usage"]["completion_tokens"]
    elapsed = time.perf_counter() - started
    assert done, "stream ended without [DONE]"
    return chunks, elapsed, usage


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    port = _free_port()
    # A long context so one stream can be as long as asked.
    app = make_simulator(models=[ModelSpec("sim/qwen3", family="qwen", max_model_len=10_000_000)], record=0)
    config = uvicorn.Config(app, host="127.0.0.1", port=port,
                            log_level="warning", lifespan="off", http="httptools")
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        best = 0.0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            one_stream(client, 1000)  # warm-up
            for run in range(1, args.runs + 1):
                chunks, elapsed, usage = one_stream(client, args.tokens)
                rate = chunks / elapsed
                best = max(best, rate)
                print(f"run {run}: {chunks} chunks ({usage} completion tokens) in {elapsed:.3f} s "
                      f"= {rate:,.0f} chunks/s")
        verdict = "OK" if best >= TARGET else "BELOW TARGET"
        print(f"simulator, one stream, zero delay: {best:,.0f} chunks/s (target >= {TARGET:,}) {verdict}")
        return 0 if best >= TARGET else 1
    finally:
        server.should_exit = True
        thread.join(timeout=5)


if __name__ == "__main__":
    raise SystemExit(main())
