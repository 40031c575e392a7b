"""Fault injection by header, recorded requests, noticed disconnects, delays."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from chat.simulator import make_simulator
from tests.servers import serve_asgi

from .conftest import parse_sse, stream

HELLO = [{"role": "user", "content": "Hello!"}]
BODY = {"model": "sim/qwen3", "messages": HELLO, "chat_template_kwargs": {"enable_thinking": False}}


def _stream_events(client, headers: dict, **extra) -> list[str]:
    response = client.post("/v1/chat/completions", json={**BODY, "stream": True, **extra}, headers=headers)
    assert response.status_code == 200
    return parse_sse(response.text)


def _wait_for(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --------------------------------------------------------------------------- status and bodies

@pytest.mark.parametrize("status", [400, 429, 500, 502, 503])
def test_status_with_a_vllm_error_body(client, status):
    for stream_it in (False, True):
        response = client.post("/v1/chat/completions", json={**BODY, "stream": stream_it},
                               headers={"x-sim-status": str(status)})
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert list(error) == ["message", "type", "param", "code"] and error["code"] == status
        assert ("retry-after" in response.headers) == (status in (429, 503))


def test_status_401_has_vllms_auth_shape(client):
    response = client.get("/v1/models", headers={"x-sim-status": "401"})
    assert response.status_code == 401 and response.json() == {"error": "Unauthorized"}


def test_gateway_pages_and_other_bodies(client):
    html = client.post("/v1/chat/completions", json=BODY, headers={"x-sim-status": "502", "x-sim-body": "html"})
    assert html.status_code == 502 and html.headers["content-type"] == "text/html"
    assert "<title>502 Bad Gateway</title>" in html.text
    text = client.get("/health", headers={"x-sim-status": "503", "x-sim-body": "text"})
    assert text.status_code == 503 and text.headers["content-type"] == "text/plain"
    flat = client.post("/v1/chat/completions", json=BODY, headers={"x-sim-status": "400", "x-sim-body": "flat"})
    assert flat.json()["object"] == "error" and flat.json()["code"] == 400
    empty = client.get("/v1/models", headers={"x-sim-status": "504", "x-sim-body": "empty"})
    assert empty.status_code == 504 and empty.content == b""


def test_bad_fault_header_is_400(client):
    assert client.get("/v1/models", headers={"x-sim-status": "abc"}).status_code == 400


# --------------------------------------------------------------------------- broken streams

def test_cut_after_n_events_without_done(client):
    full = _stream_events(client, {})
    cut = _stream_events(client, {"x-sim-cut-after": "4"})
    assert len(cut) == 4 and "[DONE]" not in cut
    assert [json.loads(e)["choices"] for e in cut] == [json.loads(e)["choices"] for e in full[:4]]
    everything_but_done = _stream_events(client, {"x-sim-cut-after": str(len(full) - 1)})
    assert everything_but_done[-1] != "[DONE]" and len(everything_but_done) == len(full) - 1


def test_malformed_event_then_the_rest(client):
    events = _stream_events(client, {"x-sim-malformed-after": "3"})
    with pytest.raises(ValueError):
        json.loads(events[3])
    assert all(json.loads(e) for e in events[:3] + events[4:-1]) and events[-1] == "[DONE]"


def test_error_event_then_done(client):
    events = _stream_events(client, {"x-sim-error-after": "5"}, stream_options={"include_usage": True})
    assert len(events) == 7 and events[-1] == "[DONE]"
    error = json.loads(events[5])["error"]
    assert list(error) == ["message", "type", "param", "code"] and error["code"] == 500


def test_reset_mid_stream(client, sim_url):
    seen = []
    with httpx.Client(base_url=sim_url, timeout=5) as fresh:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            with fresh.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True},
                              headers={"x-sim-reset": "3"}) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        seen.append(line)
    assert 0 < len(seen) <= 3


def test_reset_before_answering(sim_url):
    with httpx.Client(base_url=sim_url, timeout=5) as fresh:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
            fresh.post("/v1/chat/completions", json=BODY, headers={"x-sim-reset": "0"})


def test_non_streamed_faults(client, sim_url):
    assert client.post("/v1/chat/completions", json=BODY, headers={"x-sim-error-after": "0"}).status_code == 500
    broken = client.post("/v1/chat/completions", json=BODY, headers={"x-sim-malformed-after": "0"})
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    with httpx.Client(base_url=sim_url, timeout=5) as fresh:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            fresh.post("/v1/chat/completions", json=BODY, headers={"x-sim-cut-after": "1"})


# --------------------------------------------------------------------------- delays

def test_delay_first_and_per_token(client):
    started = time.monotonic()
    with client.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True, "max_tokens": 5},
                       headers={"x-sim-delay-first": "0.3", "x-sim-delay-token": "0.05"}) as response:
        arrivals = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - started)
    assert arrivals[0] >= 0.3
    assert arrivals[-1] - arrivals[0] >= 4 * 0.05  # 5 paced tokens (the first read may be late on a busy machine)
    started = time.monotonic()
    client.post("/v1/chat/completions", json={**BODY, "max_tokens": 4}, headers={"x-sim-delay-token": "0.05"})
    assert time.monotonic() - started >= 0.2


def test_token_delay_is_a_constructor_argument():
    app = make_simulator(token_delay=0.02)
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        started = time.monotonic()
        events = _stream_events(client, {}, max_tokens=10)
        assert time.monotonic() - started >= 10 * 0.02
        assert events[-1] == "[DONE]"
        fast = time.monotonic()
        _stream_events(client, {"x-sim-delay-token": "0"}, max_tokens=10)
        assert time.monotonic() - fast < 10 * 0.02


# --------------------------------------------------------------------------- recording and disconnects

def test_requests_are_recorded_without_the_key():
    app = make_simulator(api_key="k", record=3)
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        for i in range(5):
            client.post("/v1/chat/completions", json={**BODY, "seed": i},
                        headers={"authorization": "Bearer k", "x-request-id": f"req-{i}"})
    assert len(app.requests) == 3
    last = app.requests[-1]
    assert last.json == {**BODY, "seed": 4} and last.method == "POST" and last.path == "/v1/chat/completions"
    assert last.id == "chatcmpl-req-4" and "authorization" not in last.headers and last.headers["x-request-id"] == "req-4"


def test_request_id_header_names_the_completion(client):
    body = client.post("/v1/chat/completions", json=BODY, headers={"x-request-id": "abc123"}).json()
    assert body["id"] == "chatcmpl-abc123"


def test_disconnect_mid_stream_is_noticed():
    app = make_simulator(token_delay=0.05)
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=5) as client:
        with client.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True},
                           headers={"x-request-id": "gone"}) as response:
            for i, _line in enumerate(response.iter_lines()):
                if i > 4:
                    break
        assert _wait_for(lambda: "chatcmpl-gone" in app.disconnects)
        # A stream read to the end is not a disconnect.
        stream(client, headers={"x-request-id": "kept", "x-sim-delay-token": "0"}, **BODY)
        assert "chatcmpl-kept" not in app.disconnects


def test_disconnect_while_waiting_is_noticed():
    app = make_simulator()
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/chat/completions", json=BODY,
                        headers={"x-sim-delay-first": "2", "x-request-id": "impatient"})
        assert _wait_for(lambda: "chatcmpl-impatient" in app.disconnects)
