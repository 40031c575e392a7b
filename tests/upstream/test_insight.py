"""Issue 17's protocol layer: custom headers, /tokenize, /detokenize, /version, /metrics, the meter's
fit and the capability probe, against the real transcripts (served as recorded) and the simulator."""

from __future__ import annotations

import base64

import pytest

from chat.simulator import DEFAULT_MODELS, ModelSpec, make_simulator
from chat.upstream.client import UpstreamClient, get_client
from chat.upstream.errors import UpstreamHTTPError, UpstreamProtocolError
from chat.upstream.headers import HeaderError, check_headers, masked, merged, parse_lines
from chat.upstream.metrics import parse_load
from chat.upstream.probe import CHECKS, FAIL, PASS, UNSUPPORTED, run_probe
from chat.upstream.prompt import fit, tokenize_body
from tests.servers import serve_asgi

from .conftest import transcripts


# --- header rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Authorization", "authorization", "Proxy-Authorization", "Connection", "Keep-Alive",
                                  "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Cookie"])
def test_authorization_and_hop_by_hop_headers_are_refused(name):
    with pytest.raises(HeaderError, match=f"{name} cannot be set here"):
        check_headers([(name, "x")])


@pytest.mark.parametrize("pair, message", [
    (("X Bad", "v"), "not a valid header name"),
    (("", "v"), "needs a name"),
    (("X-Ok", "a\r\nX-Injected: 1"), "cannot carry"),
    (("X-Ok", "caf\u00e9"), "cannot carry"),
    (("X-Ok", "x" * 5000), "longer than"),
])
def test_bad_names_and_values_are_refused_with_the_reason(pair, message):
    with pytest.raises(HeaderError, match=message):
        check_headers([pair])


def test_lines_parse_in_order_and_a_repeated_name_is_refused():
    assert parse_lines("X-A: 1\n\n  x-b :  two words \n") == {"X-A": "1", "x-b": "two words"}
    with pytest.raises(HeaderError, match="Line 2 is not 'Name: value'"):
        parse_lines("X-A: 1\nnot a header")
    with pytest.raises(HeaderError, match="given twice"):
        parse_lines("X-A: 1\nx-a: 2")


def test_the_endpoint_header_wins_a_clash_and_secrets_are_masked():
    assert merged({"X-Route": "admin"}, {"x-route": "user", "X-Trace": "t"}) == {"X-Trace": "t", "X-Route": "admin"}
    assert masked({"X-Token": "s3cret", "X-Plain": "p"}, ["x-token"]) == {"X-Token": "••••", "X-Plain": "p"}


# --- headers through the client ------------------------------------------------------------------

KEY = "sk-hexgrid-key-5f8a9c0d1e2f"
SECRET = "gw-secret-9b8a7c6d5e4f3a2b"


@pytest.fixture(scope="module")
def sim():
    app = make_simulator(api_key=KEY, record=50)
    with serve_asgi(app) as url:
        yield app, url


async def test_endpoint_and_request_headers_reach_the_server_with_every_call(sim):
    app, url = sim
    client = UpstreamClient(url, KEY, headers={"X-Route": "pool-a", "X-Gateway-Token": SECRET}, secret_headers=("X-Gateway-Token",))
    async with client:
        await client.create_chat({"model": "sim/qwen3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
                                 headers={"X-Trace-Id": "t-1", "x-route": "overridden?"})
        await client.tokenize({"model": "sim/qwen3", "messages": [{"role": "user", "content": "hi"}]}, headers={"X-Trace-Id": "t-2"})
        await client.metrics_text(headers={"X-Trace-Id": "t-3"})
        await client.version()
    seen = list(app.requests)[-4:]
    assert [r.path for r in seen] == ["/v1/chat/completions", "/tokenize", "/metrics", "/version"]
    for request in seen:
        assert request.headers["x-route"] == "pool-a"  # the admin's value, not the conversation's
        assert request.headers["x-gateway-token"] == SECRET
    assert [r.headers.get("x-trace-id") for r in seen] == ["t-1", "t-2", "t-3", None]
    with pytest.raises(HeaderError, match="Authorization cannot be set"):
        async with UpstreamClient(url, KEY) as other:
            await other.version(headers={"Authorization": "Bearer stolen"})


async def test_a_fault_header_from_a_request_reaches_the_simulator(sim):
    _, url = sim
    async with UpstreamClient(url, KEY) as client:
        with pytest.raises(UpstreamHTTPError) as caught:
            await client.create_chat({"model": "sim/qwen3", "messages": [{"role": "user", "content": "hi"}]},
                                     headers={"x-sim-status": "500"})
    assert caught.value.status == 500 and "x-sim-status: 500" in caught.value.message


async def test_a_secret_header_value_echoed_by_an_upstream_is_redacted():
    async def echo(scope, receive, send):
        if scope["type"] != "http":
            return
        headers = dict((k.decode(), v.decode()) for k, v in scope["headers"])
        token = headers.get("x-gateway-token", "")
        page = f"denied {token} / {base64.b64encode(token.encode()).decode()} / {headers.get('x-plain')}".encode()
        await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": page})

    with serve_asgi(echo) as url:
        client = UpstreamClient(url, None, headers={"X-Gateway-Token": SECRET, "X-Plain": "visible-value"},
                                secret_headers=("X-Gateway-Token",))
        async with client:
            for call in (client.version(), client.metrics_text(), client.tokenize({"model": "m", "prompt": "x"})):
                with pytest.raises(UpstreamHTTPError) as caught:
                    await call
                text = str(caught.value)
                assert SECRET[:8] not in text and "visible-value" in text, text
                assert not any(SECRET[i : i + 8] in text for i in range(len(SECRET) - 7))
        assert SECRET not in repr(client)


def test_clients_with_other_headers_are_other_pools():
    one = get_client("http://127.0.0.1:9/v1", None, headers={"X-A": "1"})
    two = get_client("http://127.0.0.1:9/v1", None, headers={"X-A": "2"})
    assert one is not two and one is get_client("http://127.0.0.1:9/v1", None, headers={"X-A": "1"})


# --- /tokenize, /detokenize, /version, /metrics as real vLLM answers them ------------------------


@pytest.fixture(scope="module")
def recorded():
    """A server answering each route with real vLLM's recorded body."""
    bodies = {name: t for name, t in transcripts().items() if name.startswith(("11", "09c"))}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        name = {"/version": "09c_version", "/detokenize": "11d_detokenize", "/metrics": "11g_metrics"}.get(scope["path"])
        if scope["path"] == "/tokenize":
            name = "11b_tokenize_messages_tools_no_thinking_token_strs" if b"token_strs" in body else "11a_tokenize_messages"
            if b"no-such-model" in body:
                name = "11e_tokenize_unknown_model"
        t = bodies[name]
        await send({"type": "http.response.start", "status": t.status,
                    "headers": [(b"content-type", t.headers["content-type"].encode())]})
        await send({"type": "http.response.body", "body": t.body})

    with serve_asgi(app) as url:
        yield url


async def test_the_client_reads_real_vllm_answers(recorded):
    t = transcripts()
    async with UpstreamClient(recorded + "/v1") as client:
        plain = await client.tokenize(t["11a_tokenize_messages"].request)
        assert (plain["count"], plain["max_model_len"], plain["token_strs"]) == (30, 2048, None)
        assert plain["tokens"][:2] == [2049, 1229]
        strs = await client.tokenize(t["11b_tokenize_messages_tools_no_thinking_token_strs"].request)
        assert strs["count"] == 210 and strs["token_strs"][0] == "<|im_start|>"
        assert await client.detokenize("tiny-qwen3", [2049, 1229, 198, 2050]) == "<|im_start|>system\n<|im_end|>"
        assert await client.version() == "0.32.0"
        with pytest.raises(UpstreamHTTPError) as caught:
            await client.tokenize({"model": "no-such-model", "prompt": "hi"})
        assert caught.value.status == 404 and caught.value.type == "NotFoundError"
        load = parse_load(await client.metrics_text(), "tiny-qwen3")
    assert (load.running, load.waiting, load.kv_cache_usage, load.prefix_cache_queries) == (0, 0, 0.0, 399)
    assert load.prefix_cache_hit_rate == 0.0


def test_the_tokenize_body_is_the_completion_prompt():
    """11f's completion sent what 11b tokenized: its prompt_tokens is 11b's count (210)."""
    t = transcripts()
    completion = t["11f_tokenize_then_completion_same_body"]
    body = tokenize_body(completion.request, token_strs=True)
    expected = dict(t["11b_tokenize_messages_tools_no_thinking_token_strs"].request)
    expected.pop("add_generation_prompt")  # vLLM's default, as in the completion
    assert body == expected
    assert completion.json()["usage"]["prompt_tokens"] == t["11b_tokenize_messages_tools_no_thinking_token_strs"].json()["count"]
    assert "max_tokens" not in body and "temperature" not in tokenize_body({"model": "m", "messages": [], "temperature": 1})


def test_metrics_of_one_model_and_of_an_older_vllm():
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="a"} 3.0\nvllm:num_requests_running{model_name="b"} 5.0\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{model_name="a"} 1.0\n'
        "# TYPE vllm:gpu_cache_usage_perc gauge\n"
        'vllm:gpu_cache_usage_perc{model_name="a"} 0.25\n'
        "# TYPE vllm:prefix_cache_queries counter\n"
        'vllm:prefix_cache_queries_total{model_name="a"} 200.0\n'
        "# TYPE vllm:prefix_cache_hits counter\n"
        'vllm:prefix_cache_hits_total{model_name="a"} 50.0\n'
    )
    load = parse_load(text, "a")
    assert (load.running, load.waiting, load.kv_cache_usage, load.prefix_cache_hit_rate) == (3, 1, 0.25, 0.25)
    assert parse_load(text, "unknown").running == 8  # no sample names it: the whole server
    assert parse_load("# just a comment\n", "a").empty
    with pytest.raises(UpstreamProtocolError, match="not Prometheus text"):
        parse_load("<html>not metrics</html>", "a")


def test_the_meter_flags_what_vllm_would_refuse():
    assert fit(100, 2048, {"max_tokens": 50}) == {"count": 100, "max_model_len": 2048, "room": 1948, "max_tokens": 50,
                                                  "fits": True, "reason": "", "note": ""}
    too_long = fit(2048, 2048, {})
    assert not too_long["fits"] and "nothing is left" in too_long["reason"]
    over = fit(10, 2048, {"max_tokens": 5000})
    assert not over["fits"] and "more than the model's whole context" in over["reason"]
    clamped = fit(2000, 2048, {"max_completion_tokens": 100, "max_tokens": 10})
    assert clamped["fits"] and "stops at 48 tokens" in clamped["note"]
    assert fit(5, None, {})["fits"]


# --- the simulator answers the same routes, consistently ------------------------------------------


@pytest.mark.parametrize("model", [m.id for m in DEFAULT_MODELS])
async def test_simulator_tokenize_count_is_the_completion_prompt_tokens(model):
    app = make_simulator()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    body = {"model": model, "max_tokens": 2, "tools": tools, "chat_template_kwargs": {"enable_thinking": False},
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris, please?"},
                         {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "22 C"}]}
    with serve_asgi(app) as url:
        async with UpstreamClient(url + "/v1") as client:
            counted = await client.tokenize(tokenize_body(body, token_strs=True))
            answer = await client.create_chat(body)
            text = await client.detokenize(model, counted["tokens"])
    assert counted["count"] == answer["usage"]["prompt_tokens"] == len(counted["tokens"]) == len(counted["token_strs"])
    assert "Weather in Paris, please?" in text and "22 C" in text


# --- the capability probe -------------------------------------------------------------------------

EVERYTHING = {key: PASS for key, *_ in CHECKS}
# What each simulated model really does (chat/simulator/specs.py): the cells that differ from a pass.
EXPECTED = {
    "sim/qwen3": {"image": UNSUPPORTED},
    "sim/qwen3-no-parser": {"reasoning": UNSUPPORTED, "image": UNSUPPORTED},
    "sim/qwen3-legacy": {"image": UNSUPPORTED},
    "sim/llama-3.3": {"reasoning": UNSUPPORTED, "image": UNSUPPORTED},
    "sim/mistral-small": {"reasoning": UNSUPPORTED, "image": UNSUPPORTED},
    "sim/magistral": {"image": UNSUPPORTED},
    "sim/gemma-4": {},
    "sim/no-auto-tools": {"tools_auto": UNSUPPORTED, "image": UNSUPPORTED, "reasoning": UNSUPPORTED},
}
NO_AUTO = ModelSpec("sim/no-auto-tools", family="llama", auto_tools=False)


@pytest.fixture(scope="module")
def probe_sim():
    with serve_asgi(make_simulator(models=[*DEFAULT_MODELS, NO_AUTO])) as url:
        yield url


@pytest.mark.parametrize("model", list(EXPECTED))
async def test_the_probe_matrix_of_each_simulated_model(probe_sim, model):
    async with UpstreamClient(probe_sim + "/v1") as client:
        cells, facts = await run_probe(client, model)
    got = {c.key: c.status for c in cells}
    assert got == {**EVERYTHING, **EXPECTED[model]}, {c.key: c.message for c in cells if c.status != PASS}
    assert [c.key for c in cells] == [key for key, *_ in CHECKS]
    assert facts == {"max_model_len": 32768, "version": "0.32.0+simulator"}
    assert all(c.latency_ms is not None and c.latency_ms >= 0 and c.message for c in cells)
    by_key = {c.key: c for c in cells}
    if model == "sim/qwen3-no-parser":
        assert "without --reasoning-parser" in by_key["reasoning"].message
    if model == "sim/qwen3-legacy":
        assert "reasoning_content" in by_key["reasoning"].message
    if model == "sim/no-auto-tools":
        assert "--enable-auto-tool-choice" in by_key["tools_auto"].message
    if by_key["image"].status == UNSUPPORTED:
        assert by_key["image"].message == f"HTTP 400: {model} is not a multimodal model"


async def test_the_probe_of_a_model_that_is_not_served_and_a_server_without_routes(probe_sim):
    async with UpstreamClient(probe_sim + "/v1") as client:
        cells, _ = await run_probe(client, "sim/absent", only=["models", "n2"])
    assert [(c.key, c.status) for c in cells] == [("models", FAIL), ("n2", FAIL)]
    assert "not served here" in cells[0].message and "does not exist" in cells[1].message

    async def bare(scope, receive, send):  # an OpenAI-compatible server that is not vLLM
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})

    with serve_asgi(bare) as url:
        async with UpstreamClient(url + "/v1") as client:
            cells, _ = await run_probe(client, "m", only=["version", "tokenize"])
    assert [(c.key, c.status) for c in cells] == [("version", UNSUPPORTED), ("tokenize", UNSUPPORTED)]
    assert all("no such route" in c.message for c in cells)
