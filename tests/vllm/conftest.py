"""A real vLLM server (VLLM_TEST_BASE_URL) and the simulator beside it.

Tests marked `vllm` are skipped unless VLLM_TEST_BASE_URL is set, e.g.
`VLLM_TEST_BASE_URL=http://127.0.0.1:8011/v1` for the server that
../shared/realvllm/serve.sh starts (model `tiny-qwen3`, max_model_len 2048).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx
import pytest

from chat.simulator import ModelSpec, make_simulator
from tests.servers import serve_asgi

REAL_MODEL = "tiny-qwen3"
SIM_MODEL = "sim/qwen3"

# sim/qwen3 with the real server's limits (--max-model-len 2048, the tiny model's
# vocabulary), so length and token-id errors happen at the same values.
TINY = ModelSpec(SIM_MODEL, family="qwen", max_model_len=2048, vocab_size=2112)

SKIP_REASON = (
    "VLLM_TEST_BASE_URL is not set: these tests need a real vLLM server serving "
    f"{REAL_MODEL!r} (see ../shared/realvllm/README.md; e.g. VLLM_TEST_BASE_URL=http://127.0.0.1:8011/v1)"
)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("VLLM_TEST_BASE_URL"):
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


@dataclass(frozen=True)
class Upstream:
    """A server to test: its /v1 base URL and the model name to send."""

    name: str
    base_url: str
    model: str


@pytest.fixture(scope="session")
def real() -> Upstream:
    base_url = os.environ["VLLM_TEST_BASE_URL"].rstrip("/")
    try:
        models = httpx.get(base_url + "/models", timeout=10).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError) as error:
        pytest.fail(f"VLLM_TEST_BASE_URL={base_url} does not answer GET /models like vLLM: {error!r}")
    served = [m["id"] for m in models]
    if REAL_MODEL not in served:
        pytest.fail(f"{base_url} serves {served}, not {REAL_MODEL!r}")
    return Upstream("vllm", base_url, REAL_MODEL)


@pytest.fixture(scope="session")
def sim() -> Upstream:
    with serve_asgi(make_simulator(models=[TINY])) as url:
        yield Upstream("simulator", url + "/v1", SIM_MODEL)
