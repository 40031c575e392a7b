"""Shape comparison against real vLLM 0.32: each recorded request is replayed
against the simulator (model renamed) and the answer must have the same keys,
in the same order, with the same JSON types, as the real one. Values differ
(the simulator's text is its own), shapes may not.
"""

from __future__ import annotations

import json

import httpx
import pytest

from chat.simulator import ModelSpec, make_simulator
from tests.servers import serve_asgi
from tests.shapes import shape, sse_shapes

from .conftest import transcripts

REAL_MODEL = "tiny-qwen3"
SIM_MODEL = "sim/qwen3"

# The real server's context length (--max-model-len 2048), so 08b and 08f fail alike.
TINY = ModelSpec(SIM_MODEL, family="qwen", max_model_len=2048)

CASES = [t for t in transcripts() if t.status == 200 or 400 <= t.status < 500]


@pytest.fixture(scope="module")
def tiny_url():
    with serve_asgi(make_simulator(models=[TINY])) as url:
        yield url


def test_every_transcript_is_covered():
    # 72 recorded cases (the folder also holds INDEX.md and perf.json); all are 200 or 4xx.
    # 11a..11g: /tokenize, /detokenize, /metrics (issue 17).
    assert len(transcripts()) == 72
    assert len(CASES) == len(transcripts())


def _replay(t, url: str) -> httpx.Response:
    text = t.request_text.replace(REAL_MODEL, SIM_MODEL)
    request = t.request
    if request is not None and t.name == "07d_stop":
        # The stop string must occur in the simulator's own text for the
        # stop_reason to be a string, as it is in the real answer.
        request = {**request, "model": SIM_MODEL, "stop": ["reply"]}
        text = json.dumps(request)
    with httpx.Client(base_url=url, timeout=10) as client:
        if t.name == "11d_detokenize":
            # Token ids are the tokenizer's own: detokenize what the simulator's /tokenize gave.
            tokens = client.post("/tokenize", json={"model": SIM_MODEL, "messages": [{"role": "system", "content": ""}],
                                                    "add_generation_prompt": False}).json()["tokens"]
            text = json.dumps({"model": SIM_MODEL, "tokens": tokens})
        if t.method == "GET":
            return client.get(t.path)
        return client.post(t.path, content=text.encode(), headers={"content-type": "application/json"})


METRICS_READ = {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                "vllm:prefix_cache_queries", "vllm:prefix_cache_hits"}


def _metric_types(text: str) -> dict[str, tuple]:
    """Family name -> (type, sample names, label names) as prometheus_client parses them."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        f.name: (f.type, sorted({s.name for s in f.samples}), sorted({k for s in f.samples for k in s.labels}))
        for f in text_string_to_metric_families(text) if f.name in METRICS_READ
    }


@pytest.mark.parametrize("t", CASES, ids=[t.name for t in CASES])
def test_same_shape_as_real_vllm(t, tiny_url):
    response = _replay(t, tiny_url)
    assert response.status_code == t.status, response.text
    real_type = t.headers.get("content-type")
    if real_type is None:
        assert "content-type" not in response.headers
    else:
        assert response.headers["content-type"] == real_type
    if t.is_stream:
        real, ours = sse_shapes(t.body), sse_shapes(response.text)
        for name in real._fields:  # first, finish, usage, every
            assert getattr(ours, name) == getattr(real, name), f"{name} chunk shapes differ"
    elif t.body == "":
        assert response.content == b""
    elif real_type.startswith("text/plain"):  # /metrics: the families the playground reads, typed alike
        assert _metric_types(response.text) == {k: v for k, v in _metric_types(t.body).items() if k in METRICS_READ}
    else:
        assert shape(response.json()) == shape(json.loads(t.body))


def test_error_messages_match_real_wording(tiny_url):
    """Where the situation is the same, so is vLLM's message."""
    for t in CASES:
        if t.status < 400 or t.name == "08l_err_wrong_path":
            continue
        real = json.loads(t.body)["error"]
        ours = _replay(t, tiny_url).json()["error"]
        if t.name == "08c_err_malformed_json":  # the renamed model moves the decode error by a character
            shift = len(SIM_MODEL) - len(REAL_MODEL)
            pos = int(real["param"].split(".")[1])
            real = {**real, "param": f"body.{pos + shift}",
                    "message": real["message"].replace(f"body.{pos}", f"body.{pos + shift}")}
        assert (ours["type"], ours["param"], ours["code"]) == (real["type"], real["param"], real["code"]), t.name
        assert ours["message"] == real["message"].replace(REAL_MODEL, SIM_MODEL), t.name
