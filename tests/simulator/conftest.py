"""Fixtures for the simulator tests: a simulator on a real socket, httpx
clients, and readers for the real vLLM transcripts and the vendor pages.

Nothing here needs Django or a database; the tests also run with
`pytest tests/simulator --confcutdir=tests/simulator -p no:django`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
import pytest

from chat.simulator import make_simulator
from tests.servers import serve_asgi
from tests.shapes import parse_sse, shape  # noqa: F401 (the simulator tests import them from here)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TRANSCRIPTS = FIXTURES / "vllm-transcripts"
PAGES = FIXTURES / "api-docs"


# --------------------------------------------------------------------------- servers and clients

@pytest.fixture(scope="session")
def sim_app():
    """The default simulator (all seven models, no key, no delay), shared by the session."""
    return make_simulator(record=200)


@pytest.fixture(scope="session")
def sim_url(sim_app):
    with serve_asgi(sim_app) as url:
        yield url


@pytest.fixture(scope="session")
def client(sim_url):
    with httpx.Client(base_url=sim_url, timeout=10) as c:
        yield c


def chat(client: httpx.Client, **body) -> dict:
    """POST a non-streamed completion; assert 200; return the JSON body."""
    body.setdefault("model", "sim/qwen3")
    body.setdefault("messages", [{"role": "user", "content": "Hello!"}])
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------------- SSE

@dataclass
class Stream:
    events: list[str]  # raw `data:` payloads, [DONE] included
    response: httpx.Response

    @property
    def chunks(self) -> list[dict]:
        return [json.loads(e) for e in self.events if e != "[DONE]"]

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"


def stream(client: httpx.Client, headers: dict | None = None, **body) -> Stream:
    body.setdefault("model", "sim/qwen3")
    body.setdefault("messages", [{"role": "user", "content": "Hello!"}])
    body["stream"] = True
    response = client.post("/v1/chat/completions", json=body, headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    return Stream(parse_sse(response.text), response)


def accumulate(chunks: list[dict]) -> dict:
    """Fold stream chunks into {index: message-ish dict} (content, reasoning, tool_calls, finish, logprobs)."""
    out: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            acc = out.setdefault(choice["index"], {"content": "", "reasoning": "", "reasoning_content": "",
                                                   "tool_calls": {}, "finish_reason": None, "logprobs": []})
            delta = choice["delta"]
            for key in ("content", "reasoning", "reasoning_content"):
                if delta.get(key):
                    acc[key] += delta[key]
            for call in delta.get("tool_calls") or []:
                slot = acc["tool_calls"].setdefault(call["index"], {"id": None, "name": "", "arguments": ""})
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
            if choice.get("logprobs"):
                acc["logprobs"] += choice["logprobs"]["content"]
            if choice.get("finish_reason"):
                acc["finish_reason"] = choice["finish_reason"]
    return out


# --------------------------------------------------------------------------- transcripts

@dataclass(frozen=True)
class Transcript:
    name: str
    note: str
    method: str
    path: str
    request_text: str
    status: int
    headers: dict
    body: str

    @property
    def request(self):
        try:
            return json.loads(self.request_text)
        except ValueError:
            return None

    @property
    def is_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")


_TRANSCRIPT = re.compile(
    r"### CASE (?P<name>\S+)\n(?:### NOTE (?P<note>.*?)\n)?### REQUEST (?P<method>\w+) (?P<path>\S+)\n"
    r"(?P<request>.*?)### RESPONSE HTTP (?P<status>\d+).*?\n(?P<headers>.*?)"
    r"### BODY \(raw, exactly as received\)\n(?P<body>.*)",
    re.DOTALL,
)


@cache
def transcripts() -> tuple[Transcript, ...]:
    found = []
    for path in sorted(TRANSCRIPTS.glob("*.txt")):
        match = _TRANSCRIPT.match(path.read_text())
        assert match, path
        headers = dict(line.split(": ", 1) for line in match["headers"].strip().splitlines() if ": " in line)
        body = match["body"]
        if body.endswith("\n") and not headers.get("content-type", "").startswith("text/event-stream"):
            body = body[:-1]
        found.append(Transcript(match["name"], match["note"] or "", match["method"], match["path"],
                                match["request"].rstrip("\n"), int(match["status"]), headers, body))
    return tuple(found)


# --------------------------------------------------------------------------- vendor pages

PAGE_MODELS = {"qwen": "sim/qwen3", "llama": "sim/llama-3.3", "mistral": "sim/mistral-small",
               "gemma4": "sim/gemma-4", "generic": "sim/qwen3"}


@dataclass(frozen=True)
class PageExample:
    page: str
    number: int
    request: dict
    responses: tuple  # documented non-streamed bodies (dicts) or streams (tuples of payloads)

    @property
    def id(self) -> str:
        return f"{self.page}-{self.number}"


_CURL_BODY = re.compile(r"-d '(\{.*?\})'\s*$", re.DOTALL | re.MULTILINE)


@cache
def page_examples() -> tuple[PageExample, ...]:
    examples = []
    for path in sorted(PAGES.glob("*.txt")):
        text = re.sub(r"'\"(\$\w+)\"'", r"\1", path.read_text())
        starts = [m.start() for m in re.finditer(r"curl ", text)] + [len(text)]
        number = 0
        for start, end in zip(starts, starts[1:]):
            segment = text[start:end]
            match = _CURL_BODY.search(segment)
            if not match:
                continue
            request = json.loads(match.group(1))
            rest = segment[match.end():]
            responses: list = []
            data_lines = [ln.strip()[len("data: "):] for ln in rest.splitlines() if ln.strip().startswith("data: ")]
            if data_lines:
                responses.append(tuple(data_lines))
            else:
                decoder = json.JSONDecoder()
                for m in re.finditer(r"^\s*\{", rest, re.MULTILINE):
                    try:
                        obj, _ = decoder.raw_decode(rest[m.end() - 1:])
                    except ValueError:
                        continue
                    if isinstance(obj, dict) and "choices" in obj:
                        responses.append(obj)
            number += 1
            examples.append(PageExample(path.stem, number, request, tuple(responses)))
    return tuple(examples)
