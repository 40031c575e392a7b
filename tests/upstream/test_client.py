"""UpstreamClient against real HTTP servers on 127.0.0.1 (no mocks of httpx).

FakeVLLM is a raw ASGI app. The first path segment of the base URL picks its
behaviour (`http://127.0.0.1:PORT/<mode>/<arg>/v1/...`): replaying a real
transcript byte for byte, streaming slowly until the client hangs up, cutting
a stream, answering with an HTML error page, and so on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from urllib.parse import quote

import pytest

from chat.upstream import client as client_module
from chat.upstream.chunks import ContentDelta, StreamDone
from chat.upstream.client import UpstreamClient, close_clients, get_client
from chat.upstream.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamStreamError,
    UpstreamTimeout,
)
from tests.servers import free_port, serve_asgi

from .conftest import serve_tls, stream_transcripts, transcripts
from .test_chunks import chunk, choice, parse, sse

BODY = {"model": "tiny-qwen3", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8}
STREAM_BODY = {**BODY, "stream": True}
KEY = "sk-test-0123456789"


class FakeVLLM:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.disconnected: dict[str, threading.Event] = {}

    async def __call__(self, scope, receive, send):
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append({"method": scope["method"], "path": scope["path"], "headers": headers, "body": body})
        mode, _, rest = scope["path"].strip("/").partition("/")
        arg = rest.split("/")[0]
        await getattr(self, "mode_" + mode)(arg, send, receive, headers)

    async def mode_replay(self, name, send, receive, headers):
        transcript = transcripts()[name]
        content_type = transcript.headers.get("content-type", "text/plain")
        await respond(send, transcript.status, transcript.body, content_type)

    async def mode_slow(self, token, send, receive, headers):
        """Streams a chunk every 20 ms until the client disconnects."""
        hung_up = self.disconnected.setdefault(token, threading.Event())

        async def watch():
            while (await receive())["type"] != "http.disconnect":
                pass
            hung_up.set()

        watcher = asyncio.create_task(watch())
        await start(send, 200, "text/event-stream")
        for _ in range(500):
            if hung_up.is_set():
                break
            await send_body(send, sse(chunk(choice(content="tick")), done=False), more=True)
            await asyncio.sleep(0.02)
        watcher.cancel()

    async def mode_flood(self, count, send, receive, headers):
        """`count` chunks as fast as the socket takes them, then [DONE]."""
        await start(send, 200, "text/event-stream")
        piece = sse(chunk(choice(content="token ")), done=False)
        for _ in range(int(count) // 100):
            await send_body(send, piece * 100, more=True)
        await send_body(send, b"data: [DONE]\n\n")

    async def mode_cut(self, _, send, receive, headers):
        """Ends the stream cleanly but without [DONE]."""
        body = transcripts()["03a_stream_include_usage"].body
        await respond(send, 200, body[: body.index(b"data: [DONE]")], "text/event-stream")

    async def mode_reset(self, _, send, receive, headers):
        """Dies mid-body: the chunked encoding never completes."""
        await start(send, 200, "text/event-stream")
        await send_body(send, sse(chunk(choice(content="par")), done=False), more=True)
        raise RuntimeError("worker died")

    async def mode_streamerror(self, _, send, receive, headers):
        error = {"error": {"message": "engine died", "type": "InternalServerError", "param": None, "code": 500}}
        await respond(send, 200, sse(chunk(choice(content="Hel")), error), "text/event-stream")

    async def mode_garbage(self, _, send, receive, headers):
        await respond(send, 200, b"data: <html>\n\n", "text/event-stream")

    async def mode_html(self, status, send, receive, headers):
        page = b"<html><head><title>Bad</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
        await respond(send, int(status), page, "text/html")

    async def mode_json(self, payload, send, receive, headers):
        bodies = {"list": b"[1, 2]", "nochoices": b'{"id": "x"}', "error": b'{"error": {"message": "nope", "type": "X"}}',
                  "nodata": b'{"object": "list"}', "plain": b'{"id": "x", "choices": []}', "broken": b'{"id": '}
        await respond(send, 200, bodies[payload], "application/json")

    async def mode_lastline(self, _, send, receive, headers):
        """[DONE] without its blank line: tolerated."""
        await respond(send, 200, sse(chunk(choice(content="a")), done=False) + b"data: [DONE]", "text/event-stream")

    async def mode_badgzip(self, status, send, receive, headers):
        """Claims gzip, sends garbage: httpx fails while decoding the body."""
        await send({"type": "http.response.start", "status": int(status),
                    "headers": [(b"content-type", b"text/event-stream"), (b"content-encoding", b"gzip")]})
        await send_body(send, b"not gzip at all")

    async def mode_big(self, _, send, receive, headers):
        await respond(send, 500, b"x" * 200_000, "text/plain")

    async def mode_redirect(self, _, send, receive, headers):
        await send({"type": "http.response.start", "status": 307,
                    "headers": [(b"location", b"http://elsewhere.example/v1/chat/completions"), (b"content-length", b"0")]})
        await send_body(send, b"")

    async def mode_echo(self, _, send, receive, headers):
        await respond(send, 500, f"proxy saw {headers.get('authorization')}".encode(), "text/plain")

    async def mode_echoed(self, form, send, receive, headers):
        """An upstream that repeats the Authorization header in some encoding, cut or split."""
        key = headers.get("authorization", "").removeprefix("Bearer ")
        pages = {
            "base64": ("text/plain", f"saw {base64.b64encode(('Bearer ' + key).encode()).decode()}"),
            "basic": ("text/plain", f"saw Basic {base64.b64encode(('user:' + key).encode()).decode()} (bad)"),
            "urlsafe": ("text/plain", f"saw {base64.urlsafe_b64encode(('xy' + key).encode()).decode()}"),
            "url": ("text/plain", f"saw {quote(key, safe='')}"),
            "html-entities": ("text/html", "<p>saw " + "".join(f"&#{ord(c)};" for c in key) + "</p>"),
            "split": ("text/html", f"<p>saw {key[:9]}<b></b>{key[9:]}</p>"),
            "cut": ("text/html", "<p>" + "x " * 143 + key + "</p>"),  # the 300-character excerpt ends inside the key
            "json-cut": ("application/json", json.dumps({"error": {"detail": "y" * 280 + key}})),
        }
        content_type, page = pages[form]
        await respond(send, 500, page.encode(), content_type)

    async def mode_stall(self, when, send, receive, headers):
        if when == "stream":
            await start(send, 200, "text/event-stream")
            await send_body(send, sse(chunk(choice(content="a")), done=False), more=True)
        await asyncio.sleep(0.3)  # longer than the client's 0.1 s timeout
        with contextlib.suppress(Exception):
            await send_body(send, b"")


async def start(send, status, content_type):
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type.encode())]})


async def send_body(send, body, more=False):
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def respond(send, status, body, content_type):
    await start(send, status, content_type)
    await send_body(send, body)


APP = FakeVLLM()


@pytest.fixture(scope="module")
def server():
    with serve_asgi(APP) as url:
        yield url


async def collect(client, body=STREAM_BODY) -> list:
    return [event async for event in client.stream_chat(body)]


# -- replaying real vLLM -------------------------------------------------------


@pytest.mark.parametrize("transcript", stream_transcripts(), ids=lambda t: t.name)
async def test_stream_chat_yields_the_events_of_every_transcript(server, transcript):
    async with UpstreamClient(f"{server}/replay/{transcript.name}", KEY) as client:
        events = await collect(client, transcript.request)
    assert events == parse([transcript.body])
    request = APP.requests[-1]
    assert json.loads(request["body"]) == transcript.request
    assert request["path"].endswith("/v1/chat/completions")
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["headers"]["accept"] == "text/event-stream"


async def test_create_chat_returns_the_response(server):
    transcript = transcripts()["04g_tools_auto_two_calls"]
    async with UpstreamClient(f"{server}/replay/{transcript.name}") as client:
        assert await client.create_chat(transcript.request) == transcript.json()
    assert "authorization" not in APP.requests[-1]["headers"]  # no key, no header


async def test_list_models_and_health(server):
    async with UpstreamClient(f"{server}/replay/09a_models") as client:
        models = await client.list_models()
    assert [m["id"] for m in models] == ["tiny-qwen3"]
    async with UpstreamClient(f"{server}/replay/09b_health") as client:
        assert await client.health() is True
    assert APP.requests[-1]["path"] == "/replay/09b_health/health"
    async with UpstreamClient(f"{server}/html/404") as client:
        assert await client.health() is False
    async with UpstreamClient(f"http://127.0.0.1:{free_port()}") as client:
        assert await client.health() is False


@pytest.mark.parametrize("name", ["08a_err_unknown_model", "08k_err_stream_unknown_model", "08j_err_temperature_negative"])
async def test_http_errors_carry_vllms_message(server, name):
    transcript = transcripts()[name]
    async with UpstreamClient(f"{server}/replay/{name}") as client:
        with pytest.raises(UpstreamHTTPError) as caught:
            if transcript.request.get("stream"):
                await collect(client, transcript.request)
            else:
                await client.create_chat(transcript.request)
    error = transcript.json()["error"]
    assert (caught.value.status, caught.value.message, caught.value.type) == (transcript.status, error["message"], error["type"])
    assert caught.value.phase == "request"


async def test_fastapi_404_detail(server):
    async with UpstreamClient(f"{server}/replay/08l_err_wrong_path") as client:
        with pytest.raises(UpstreamHTTPError, match="Not Found") as caught:
            await client.list_models()
    assert caught.value.status == 404


# -- streams that go wrong -----------------------------------------------------


async def test_cancelling_the_consumer_closes_the_upstream_connection(server):
    received = []

    async def consume(client):
        async for event in client.stream_chat(STREAM_BODY):
            received.append(event)

    async with UpstreamClient(f"{server}/slow/cancel") as client:
        task = asyncio.create_task(consume(client))
        while len([e for e in received if isinstance(e, ContentDelta)]) < 3:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(APP.disconnected["cancel"].wait, 5)


async def test_closing_the_generator_closes_the_upstream_connection(server):
    async with UpstreamClient(f"{server}/slow/aclose") as client:
        events = client.stream_chat(STREAM_BODY)
        assert isinstance(await anext(events), object)
        await anext(events)
        await events.aclose()
        assert await asyncio.to_thread(APP.disconnected["aclose"].wait, 5)


async def test_stream_without_done_raises_truncated_after_the_events(server):
    received = []
    async with UpstreamClient(f"{server}/cut") as client:
        with pytest.raises(UpstreamProtocolError) as caught:
            async for event in client.stream_chat(STREAM_BODY):
                received.append(event)
    assert caught.value.truncated and caught.value.phase == "stream"
    assert "".join(e.text for e in received if isinstance(e, ContentDelta)).startswith("Hello! I am")
    assert not any(isinstance(e, StreamDone) for e in received)


async def test_connection_dying_mid_stream_is_truncated(server):
    async with UpstreamClient(f"{server}/reset") as client:
        with pytest.raises(UpstreamProtocolError) as caught:
            await collect(client)
    assert caught.value.truncated and caught.value.phase == "stream"


async def test_error_inside_the_stream(server):
    received = []
    async with UpstreamClient(f"{server}/streamerror") as client:
        with pytest.raises(UpstreamStreamError) as caught:
            async for event in client.stream_chat(STREAM_BODY):
                received.append(event)
    assert ContentDelta(0, "Hel") in received
    assert (caught.value.message, caught.value.phase, caught.value.status) == ("engine died", "stream", 500)


async def test_garbage_in_the_stream(server):
    async with UpstreamClient(f"{server}/garbage") as client:
        with pytest.raises(UpstreamProtocolError, match="undecodable"):
            await collect(client)


@pytest.mark.parametrize("status", [200, 502])
async def test_html_where_json_or_sse_was_expected(server, status):
    async with UpstreamClient(f"{server}/html/{status}") as client:
        kind = UpstreamProtocolError if status == 200 else UpstreamHTTPError
        with pytest.raises(kind, match="502 Bad Gateway nginx") as caught:
            await client.create_chat(BODY)
        assert caught.value.status == status
        with pytest.raises(kind, match="Bad Gateway"):
            await collect(client)


@pytest.mark.parametrize(
    "payload, call, error, message",
    [
        ("list", "create_chat", UpstreamProtocolError, "expected a JSON object, got list"),
        ("nochoices", "create_chat", UpstreamProtocolError, 'no "choices" list'),
        ("broken", "create_chat", UpstreamProtocolError, "expected JSON, got application/json"),
        ("error", "create_chat", UpstreamHTTPError, "nope"),
        ("nodata", "list_models", UpstreamProtocolError, 'without a "data" list'),
        ("error", "stream_chat", UpstreamHTTPError, "nope"),
        ("plain", "stream_chat", UpstreamProtocolError, "expected an event stream, got application/json"),
    ],
)
async def test_answers_that_break_the_protocol(server, payload, call, error, message):
    async with UpstreamClient(f"{server}/json/{payload}") as client:
        with pytest.raises(error, match=message):
            if call == "stream_chat":
                await collect(client)
            elif call == "create_chat":
                await client.create_chat(BODY)
            else:
                await client.list_models()


async def test_done_without_its_blank_line_still_ends_the_stream(server):
    async with UpstreamClient(f"{server}/lastline") as client:
        events = await collect(client)
    assert events[-2:] == [ContentDelta(0, "a"), StreamDone()]


@pytest.mark.parametrize("status, call", [(200, "stream_chat"), (500, "stream_chat"), (200, "create_chat")])
async def test_undecodable_bodies_are_upstream_errors(server, status, call):
    async with UpstreamClient(f"{server}/badgzip/{status}") as client:
        with pytest.raises(UpstreamError, match="failed: ") as caught:
            await (collect(client) if call == "stream_chat" else client.create_chat(BODY))
    assert caught.value.phase == ("stream" if status == 200 and call == "stream_chat" else "request")


async def test_huge_error_bodies_are_cut(server):
    async with UpstreamClient(f"{server}/big") as client:
        with pytest.raises(UpstreamHTTPError) as caught:
            await client.create_chat(BODY)
    assert len(caught.value.message) == 300


@pytest.mark.parametrize("reply", [b"", b"HELLO\r\n\r\n"])
async def test_a_server_that_does_not_speak_http(reply):
    async def handle(reader, writer):
        await reader.read(1)
        writer.write(reply)
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    async with tcp, UpstreamClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(UpstreamProtocolError, match="closed the connection without a complete answer") as caught:
            await client.list_models()
    assert caught.value.phase == "request" and not caught.value.truncated


async def test_connect_timeout(server):
    async with UpstreamClient(server, connect_timeout=1e-9) as client:
        with pytest.raises(UpstreamTimeout, match="connecting to 127.0.0.1") as caught:
            await client.list_models()
    assert caught.value.phase == "connect"


async def test_redirects_are_not_followed(server):
    async with UpstreamClient(f"{server}/redirect", KEY) as client:
        with pytest.raises(UpstreamHTTPError, match="redirects to http://elsewhere.example") as caught:
            await client.create_chat(BODY)
    assert caught.value.status == 307


@pytest.mark.parametrize("call", ["create_chat", "stream_chat"])
async def test_the_key_never_appears_in_errors(server, call):
    async with UpstreamClient(f"{server}/echo", KEY) as client:
        assert KEY not in repr(client)
        with pytest.raises(UpstreamHTTPError) as caught:
            await (client.create_chat(BODY) if call == "create_chat" else collect(client))
    assert caught.value.message == "proxy saw Bearer ***"
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)


ECHOES = ["base64", "basic", "urlsafe", "url", "html-entities", "split", "cut", "json-cut"]


@pytest.mark.parametrize("form", ECHOES)
async def test_no_encoding_or_piece_of_the_key_appears_in_errors(server, form):
    async with UpstreamClient(f"{server}/echoed/{form}", KEY) as client:
        with pytest.raises(UpstreamHTTPError) as caught:
            await client.create_chat(BODY)
    message = caught.value.message
    assert caught.value.status == 500 and "***" in message
    # Nothing of 8 characters or more from the key or its usual encodings.
    forms = [KEY, quote(KEY, safe=""), base64.b64encode(("Bearer " + KEY).encode()).decode()[10:-4],
             base64.b64encode(("user:" + KEY).encode()).decode()[8:-4], base64.urlsafe_b64encode(("xy" + KEY).encode()).decode()[4:-4]]
    for text in forms:
        assert not any(text[i : i + 8] in message for i in range(len(text) - 7)), (form, message)


def test_redaction_leaves_ordinary_text_alone():
    from chat.upstream.redact import redact

    text = "HTTP 401: invalid API key (expected a key starting with sk-)"
    assert redact(text, KEY) == text
    assert redact("", KEY) == "" and redact(text, None) == text


@pytest.mark.parametrize("when, phase", [("headers", "request"), ("stream", "stream")])
async def test_read_timeouts(server, when, phase):
    async with UpstreamClient(f"{server}/stall/{when}", timeout=0.1) as client:
        with pytest.raises(UpstreamTimeout, match="sent nothing for 0.1s") as caught:
            await collect(client)
    assert caught.value.phase == phase


async def test_connection_refused():
    async with UpstreamClient(f"http://127.0.0.1:{free_port()}/v1") as client:
        with pytest.raises(UpstreamConnectError, match="could not connect to 127.0.0.1") as caught:
            await client.create_chat(BODY)
    assert caught.value.phase == "connect" and caught.value.status is None


async def test_proxy_environment_is_ignored(server, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    async with UpstreamClient(f"{server}/replay/09a_models") as client:
        assert await client.list_models()


async def test_body_must_match_the_call():
    client = UpstreamClient("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="use stream_chat"):
        await client.create_chat(STREAM_BODY)
    with pytest.raises(ValueError, match='needs "stream": true'):
        await collect(client, BODY)


def test_a_client_survives_a_new_event_loop(server):
    # Each asyncio.run() is a new loop; the pool of the old one cannot be reused.
    client = UpstreamClient(f"{server}/replay/09a_models")
    assert asyncio.run(client.list_models()) == asyncio.run(client.list_models())
    asyncio.run(client.aclose())


# -- TLS -----------------------------------------------------------------------


async def test_tls_verification(tls_server):
    url, ca_pem, ca_path = tls_server
    async with UpstreamClient(f"{url}/replay/09a_models") as client:
        with pytest.raises(UpstreamConnectError, match="add its CA bundle or turn off TLS verification"):
            await client.list_models()
    for options in ({"verify": False}, {"ca_bundle": ca_path}, {"ca_bundle": ca_pem}):
        async with UpstreamClient(f"{url}/replay/09a_models", **options) as client:
            assert await client.list_models()


def test_unreadable_ca_bundle_is_refused_up_front(tmp_path):
    with pytest.raises(ValueError, match="The CA bundle could not be loaded"):
        UpstreamClient("https://h/v1", ca_bundle=str(tmp_path / "missing.pem"))
    assert UpstreamClient("https://h/v1", verify=False, ca_bundle="ignored")._verify is False


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    with serve_tls(APP, tmp_path_factory.mktemp("tls")) as found:
        yield found


# -- the client cache ----------------------------------------------------------


async def test_get_client_pools_one_client_per_configuration():
    await close_clients()
    first = get_client("http://h:8000", KEY)
    assert get_client("http://h:8000/v1/", KEY) is first
    assert get_client("http://h:8000", KEY, timeout=5) is not first
    assert get_client("http://h:8000", "other-key") is not first
    assert get_client("http://h:8000", None, verify=False) is not first
    assert not any(KEY in str(key) for key in client_module._CLIENTS)
    assert repr(first) == "<UpstreamClient http://h:8000/v1 key=set verify=True>"
    await close_clients()
    assert client_module._CLIENTS == {}


async def test_get_client_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(client_module, "MAX_CACHED_CLIENTS", 3)
    await close_clients()
    clients = [get_client(f"http://h{i}:8000") for i in range(5)]
    assert len(client_module._CLIENTS) == 3
    assert get_client("http://h4:8000") is clients[4]
    await close_clients()


async def test_closed_client_reopens_and_errors_are_upstream_errors(server):
    client = UpstreamClient(f"{server}/replay/09a_models")
    await client.aclose()  # nothing open yet
    assert await client.list_models()
    await client.aclose()
    assert await client.list_models()  # a fresh pool
    await client.aclose()
    assert issubclass(UpstreamTimeout, UpstreamError)



async def test_pace_is_skipped_while_the_stream_is_ahead_of_its_reader(server):
    """A fast upstream (large reads) is read on without pausing: a pause per read capped a
    16,000-token stream at one 16 KB read per batch, about 2,000 tokens/s."""
    paces = []

    async def pace():
        paces.append(1)
        await asyncio.sleep(0.04)

    async with UpstreamClient(f"{server}/flood/10000") as client:
        deltas = [e async for e in client.stream_chat(STREAM_BODY, pace=pace) if isinstance(e, ContentDelta)]
    assert len(deltas) == 10000
    assert len(paces) < 10  # only after the odd small read (a 16 KB read holds ~100 tokens: 100 reads)


async def test_pace_between_reads_batches_the_tokens_and_a_cancel_there_closes_the_connection(server):
    """stream_chat(pace=): awaited after each read's events; what arrives meanwhile (a chunk every
    20 ms here) is read together afterwards, and a stop while pacing still hangs up at once."""
    received, paces, pausing = [], [], asyncio.Event()

    async def pace():
        paces.append(len(received))
        pausing.set()
        await asyncio.sleep(0.1)
        pausing.clear()

    async def consume(client):
        async for event in client.stream_chat(STREAM_BODY, pace=pace):
            received.append(event)

    async with UpstreamClient(f"{server}/slow/pace") as client:
        task = asyncio.create_task(consume(client))
        while len([e for e in received if isinstance(e, ContentDelta)]) < 15:
            await asyncio.sleep(0.005)
        assert paces and paces[0] > 0  # awaited after the first read's events, before the next read
        # ~5 chunks wait in the buffer during each 100 ms pause and arrive in one read
        assert len(paces) <= len([e for e in received if isinstance(e, ContentDelta)]) / 2
        await pausing.wait()
        task.cancel()  # inside pace's sleep
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(APP.disconnected["pace"].wait, 5)
