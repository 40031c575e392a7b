"""The conversation socket against the simulator on a real socket: stream, stop, errors, persistence."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from channels.db import database_sync_to_async
from tests.sockets import Socket

from chat import runs
from chat.forms import family_defaults
from chat.models import ApiKey, Completion, Conversation, Endpoint, Message
from chat.runs import CompletionRun
from chat.simulator import make_simulator
from playground.asgi import application
from tests.servers import FaultInjector, free_port, serve_asgi

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sim-consumer-key-42"


@pytest.fixture(scope="module")
def sim():
    app = make_simulator(api_key=KEY, token_delay=0.0)
    injector = FaultInjector(app)
    with serve_asgi(injector) as url:
        injector.url = url + "/v1"
        yield injector


@pytest.fixture(autouse=True)
def reset_faults(sim):
    sim.headers = {}
    sim.app.requests.clear()


def make_endpoint(url: str, model="sim/qwen3", key=KEY, **kw) -> Endpoint:
    api_key = None
    if key:
        api_key = ApiKey(name=f"k-{key}-{model}-{url}"[:100])
        api_key.set_secret(key)
        api_key.save()
    return Endpoint.objects.create(name=f"{model} @ {url} {kw}", base_url=url, model_id=model, api_key=api_key, **kw)


@pytest.fixture
def endpoint(sim):
    return make_endpoint(sim.url)


@pytest.fixture
def conversation(owner, team, endpoint):
    return Conversation.objects.create(
        owner=owner, team=team, visibility="team", endpoint=endpoint, options=family_defaults(endpoint)
    )


async def connect(user, conversation) -> Socket:
    communicator = Socket(
        application, f"/ws/conversations/{conversation.public_id}/", headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    )
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    assert 'id="messages"' in await communicator.receive_from()  # the snapshot
    return communicator


async def send(communicator, **frame) -> None:
    await communicator.send_to(text_data=json.dumps({**frame, "HEADERS": {"HX-Request": "true"}}))


async def frames_until_idle(communicator, timeout=10) -> list[str]:
    """Every frame up to and including the one that sets the status back to idle."""
    frames = []
    while True:
        frame = await communicator.receive_from(timeout=timeout)
        if frame.startswith('<div id="frame-error"') and frame.endswith("></div>"):
            continue  # the sender's error line being cleared
        frames.append(frame)
        if 'data-state="idle"' in frame:
            return frames


@database_sync_to_async
def messages_of(conversation, **filters) -> list[Message]:
    return list(conversation.messages.filter(**filters).order_by("position", "created_at"))


@database_sync_to_async
def completions_of(conversation) -> list[Completion]:
    return list(conversation.completions.order_by("started_at"))


async def run_without_a_socket(conversation, body: dict, emit) -> tuple[CompletionRun, Message]:
    """A CompletionRun on a streaming placeholder, as the consumer makes one, with `emit` as its viewers."""
    completion = await Completion.objects.acreate(conversation=conversation, endpoint=conversation.endpoint, request_body=body)
    message = await Message.objects.acreate(conversation=conversation, position=0, role="assistant", status="streaming", completion=completion)
    message.conversation, completion.endpoint = conversation, conversation.endpoint
    return CompletionRun(completion, message, emit), message


def appended_text(frames: list[str], part: str) -> str:
    pattern = rf'<div id="msg-[0-9a-f-]+-{part}" hx-swap-oob="beforeend">(.*?)</div>'
    return "".join(m for f in frames for m in re.findall(pattern, f, flags=re.S))


async def test_a_message_streams_reasoning_then_content_and_is_saved(owner, conversation, sim):
    sim.headers = {"x-sim-delay-token": "0.01"}
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello there")
    frames = await frames_until_idle(ws)
    await ws.disconnect()

    # one opening frame: the user message, the placeholder, the streaming status
    assert "Hello there" in frames[0] and 'hx-swap-oob="beforeend"' in frames[0]
    assert 'data-state="streaming"' in frames[0] and 'data-status="streaming"' in frames[0]
    assert '<h1 id="conversation-title" hx-swap-oob="true">Hello there</h1>' in frames[0]  # named by it
    assert any('id="msg-' in f and '-thinking"' in f and " open" in f for f in frames)  # thinking shown live
    user, reply = await messages_of(conversation)
    assert user.role == "user" and user.content == "Hello there"
    assert reply.status == "complete" and reply.reasoning and reply.content and reply.finish_reason == "stop"
    assert appended_text(frames, "content") in reply.content  # streamed pieces add up (the first may come whole)
    final = frames[-1]
    assert 'hx-swap-oob="outerHTML"' in final and f'id="msg-{reply.public_id}"' in final
    assert "TTFT" in final and "tok/s" in final and "finish: <b>stop</b>" in final

    [completion] = await completions_of(conversation)
    assert completion.status == "complete" and completion.usage["completion_tokens"] > 0
    assert completion.ttft_ms is not None and completion.duration_ms >= completion.ttft_ms
    assert completion.request_body["messages"][-1] == {"role": "user", "content": "Hello there"}
    assert completion.request_body == json.loads(sim.app.requests[-1].body)  # exactly what was sent
    assert KEY not in json.dumps(completion.request_body) and all(KEY not in f for f in frames)


async def test_token_fragments_are_batched(owner, conversation, sim):
    sim.headers = {"x-sim-delay-token": "0.002"}
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Write a long answer please " * 5)
    frames = await frames_until_idle(ws)
    await ws.disconnect()
    [completion] = await completions_of(conversation)
    tokens = completion.usage["completion_tokens"]
    assert tokens > 40
    assert len(frames) < tokens / 3, f"{len(frames)} frames for {tokens} tokens"


async def test_non_streaming_renders_the_same_final_message(owner, conversation):
    conversation.options = {**conversation.options, "stream": False}
    conversation.options.pop("stream_options")
    await conversation.asave()
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello there")
    frames = await frames_until_idle(ws)
    await ws.disconnect()
    _, reply = await messages_of(conversation)
    assert reply.status == "complete" and reply.content and reply.reasoning
    assert "stream" not in (await completions_of(conversation))[0].request_body.get("stream_options", {})
    assert "not streamed" in frames[-1] and "TTFT" not in frames[-1]  # nothing to time before it arrived whole


async def test_stop_cancels_saves_the_partial_answer_and_closes_the_upstream(owner, conversation, sim):
    sim.headers = {"x-sim-delay-token": "0.05"}
    disconnects = len(sim.app.disconnects)
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Tell me a long story")
    while '-reasoning" hx-swap-oob="beforeend"' not in await ws.receive_from():
        pass  # streaming: some of the answer has arrived
    await send(ws, action="stop")
    frames = await frames_until_idle(ws)
    _, reply = await messages_of(conversation)
    assert reply.status == "cancelled" and 0 < len(reply.content + reply.reasoning)
    assert "stopped" in frames[-1]
    [completion] = await completions_of(conversation)
    assert completion.status == "cancelled"
    for _ in range(100):
        if len(sim.app.disconnects) > disconnects:
            break
        await asyncio.sleep(0.05)
    assert len(sim.app.disconnects) > disconnects  # the simulator saw the client go away
    # the conversation goes on
    sim.headers = {}
    await send(ws, action="send", content="Again")
    await frames_until_idle(ws)
    await ws.disconnect()
    assert [m.status for m in await messages_of(conversation, role="assistant")] == ["cancelled", "complete"]


async def test_with_no_grace_period_a_closed_socket_cancels_within_a_second(owner, conversation, sim, settings):
    """RUN_GRACE_SECONDS (default 20) keeps a run going after its owner's socket closes, for a reload to
    reattach to it (tests/chat/test_reattach.py); 0 cancels at once, as before it existed."""
    settings.RUN_GRACE_SECONDS = 0
    sim.headers = {"x-sim-delay-token": "0.05"}
    disconnects = len(sim.app.disconnects)
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Tell me a long story")
    while '-reasoning" hx-swap-oob="beforeend"' not in await ws.receive_from():
        pass  # the answer is streaming: its reasoning has started to arrive
    closed_at = time.monotonic()
    closing = asyncio.create_task(ws.disconnect())  # returns once the partial answer is saved
    while len(sim.app.disconnects) == disconnects and time.monotonic() - closed_at < 10:
        await asyncio.sleep(0.01)
    seen_after = time.monotonic() - closed_at
    await closing
    assert len(sim.app.disconnects) > disconnects, "the simulator never saw the upstream request close"
    assert seen_after < 1.0, f"the upstream request closed {seen_after:.2f} s after the socket"
    _, reply = await messages_of(conversation)
    assert reply.status == "cancelled" and reply.reasoning


async def test_partial_answer_is_checkpointed_while_streaming(owner, conversation, sim, monkeypatch):
    monkeypatch.setattr(runs, "CHECKPOINT_INTERVAL", 0.2)
    sim.headers = {"x-sim-delay-token": "0.02"}
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Tell me a long story")
    for _ in range(200):  # a checkpoint lands within a few tenths of a second (polled: CI may be busy)
        rows = await messages_of(conversation)
        if len(rows) == 2 and rows[1].reasoning:
            break
        await asyncio.sleep(0.05)
    [_, reply] = rows
    assert reply.status == "streaming" and reply.reasoning  # saved before the end
    # a viewer connecting now gets the snapshot, then the live message from the running task
    other = Socket(application, f"/ws/conversations/{conversation.public_id}/", headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
    other.scope["user"] = owner
    await other.connect()
    snapshot = await other.receive_from()
    assert reply.reasoning[:10] in snapshot and 'data-state="streaming"' in snapshot
    await send(ws, action="stop")
    await frames_until_idle(ws)
    await other.disconnect()
    await ws.disconnect()


ERROR_CASES = [
    ({"x-sim-status": "401"}, "HTTP 401", "rejected its API key"),
    ({"x-sim-status": "500"}, "HTTP 500", "Simulated"),
    ({"x-sim-status": "502", "x-sim-body": "html"}, "HTTP 502", "Bad Gateway"),
    ({"x-sim-malformed-after": "5"}, "Upstream error", "error during the stream"),
    ({"x-sim-cut-after": "8"}, "Upstream error", "ended before [DONE]"),
    ({"x-sim-error-after": "8"}, "Upstream error", "Simulated engine failure"),
    ({"x-sim-reset": "6"}, "Upstream error", ""),
]


@pytest.mark.parametrize("headers,status_text,message", ERROR_CASES)
async def test_upstream_failures_are_shown_inline_and_the_conversation_goes_on(owner, conversation, sim, headers, status_text, message):
    sim.headers = headers
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello")
    frames = await frames_until_idle(ws)
    final = frames[-1]
    assert 'role="alert"' in final and status_text in final and message in final
    assert "Traceback" not in final and KEY not in final
    _, reply = await messages_of(conversation)
    assert reply.status == "error" and reply.error.startswith("Upstream error")
    [completion] = await completions_of(conversation)
    assert completion.status == "error"
    sim.headers = {}
    await send(ws, action="send", content="Hello again")
    await frames_until_idle(ws)
    await ws.disconnect()
    assert (await messages_of(conversation, role="assistant"))[-1].status == "complete"


async def test_partial_text_is_kept_when_the_stream_breaks(owner, conversation, sim):
    sim.headers = {"x-sim-cut-after": "12"}
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello")
    await frames_until_idle(ws)
    await ws.disconnect()
    _, reply = await messages_of(conversation)
    assert reply.status == "error" and reply.reasoning  # what arrived is kept


async def test_unknown_model_unreachable_endpoint_and_timeout(owner, team, sim):
    create = database_sync_to_async(make_endpoint)
    cases = [
        (await create(sim.url, model="no-such-model"), "HTTP 404"),
        (await create(f"http://127.0.0.1:{free_port()}/v1"), "could not connect"),
        (await create(sim.url, timeout=0.3), "Upstream error"),
    ]
    sim.headers = {"x-sim-delay-first": "1.5"}
    for endpoint, expected in cases:
        conversation = await Conversation.objects.acreate(owner=owner, endpoint=endpoint, options={"stream": True})
        ws = await connect(owner, conversation)
        await send(ws, action="send", content="Hello")
        frames = await frames_until_idle(ws)
        await ws.disconnect()
        assert expected in frames[-1], (endpoint.model_id, frames[-1])
        _, reply = await messages_of(conversation)
        assert reply.status == "error"


async def test_invalid_values_get_vllms_400_message(owner, conversation):
    conversation.options = {**conversation.options, "max_tokens": 10**9}  # over the context length
    await conversation.asave()
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello")
    frames = await frames_until_idle(ws)
    await ws.disconnect()
    assert "HTTP 400" in frames[-1]


async def test_bad_frames_get_an_inline_error_and_nothing_is_saved(owner, conversation):
    ws = await connect(owner, conversation)
    for frame, expected in [
        ("not json", "expected a JSON object"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"action": "explode"}), "Select a valid choice"),
        (json.dumps({"action": "send", "content": "   "}), "Type a message first"),
        (json.dumps({"action": "edit", "content": "x"}), "Which message"),
    ]:
        await ws.send_to(text_data=frame)
        response = await ws.receive_from()
        assert 'id="frame-error"' in response and expected in response
    await ws.disconnect()
    assert await messages_of(conversation) == []


async def test_teammates_watch_live_but_cannot_send_or_stop(owner, teammate, conversation, sim):
    sim.headers = {"x-sim-delay-token": "0.01"}
    watcher = await connect(teammate, conversation)
    await send(watcher, action="send", content="let me in")
    assert "read-only for you" in await watcher.receive_from()
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello team")
    await send(watcher, action="stop")
    owner_frames = await frames_until_idle(ws)
    watched = []
    while True:
        frame = await watcher.receive_from()
        if "read-only for you" in frame:
            continue
        watched.append(frame)
        if 'data-state="idle"' in frame:
            break
    assert watched == owner_frames  # the same fragments, through the channel-layer group
    _, reply = await messages_of(conversation)
    assert reply.status == "complete"  # the teammate's stop was refused
    await watcher.disconnect()
    await ws.disconnect()


async def test_regenerate_keeps_the_earlier_answer_as_a_branch(owner, conversation):
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello")
    await frames_until_idle(ws)
    await send(ws, action="regenerate")
    await frames_until_idle(ws)
    await ws.disconnect()
    answers = await messages_of(conversation, role="assistant")
    assert [a.is_active for a in answers] == [False, True]
    assert answers[0].position == answers[1].position
    completions = await completions_of(conversation)
    assert completions[1].request_body["messages"] == completions[0].request_body["messages"]


async def test_edit_and_resend_branches_from_that_message(owner, conversation):
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="First question")
    await frames_until_idle(ws)
    await send(ws, action="send", content="Second question")
    await frames_until_idle(ws)
    first = (await messages_of(conversation, role="user"))[0]
    await send(ws, action="edit", message=str(first.public_id), content="First question, edited")
    await frames_until_idle(ws)
    await ws.disconnect()
    shown = await database_sync_to_async(lambda: list(conversation.thread()))()
    assert [(m.role, m.text) for m in shown][0] == ("user", "First question, edited")
    assert len(shown) == 2
    assert len(await messages_of(conversation)) == 6  # the old branch is kept
    last = (await completions_of(conversation))[-1]
    assert [m["content"] for m in last.request_body["messages"] if m["role"] == "user"] == ["First question, edited"]


async def test_endpoint_a_user_may_not_use_is_refused(owner, other_team, conversation):
    endpoint = conversation.endpoint
    await database_sync_to_async(endpoint.teams.add)(other_team)
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello")
    assert "You may not use this endpoint" in await ws.receive_from()
    await ws.disconnect()


async def test_a_snapshot_holds_only_what_was_sent_so_text_is_never_doubled(owner, conversation):
    sent = []

    async def emit(html):
        sent.append(html)

    run, message = await run_without_a_socket(conversation, {}, emit)
    run._add("content", "Hello")
    await run.flush()
    run._add("content", " world")  # not flushed yet
    snapshot = run.snapshot()
    assert ">Hello</div>" in snapshot and "world" not in snapshot
    await run.flush()
    assert appended_text(sent, "content") == "Hello world"
    # A viewer's snapshot renders a copy: the message the final save fills keeps its own text
    # (a late resync once used to blank the final fragment's token view).
    message.content = "the saved answer"
    assert "Hello world" in run.snapshot() and message.content == "the saved answer"


async def test_stop_stops_the_run_even_when_a_library_swallows_the_cancel(owner, conversation, sim):
    """Python 3.11's asyncio.wait_for (inside redis-py, for one) returns normally when a cancel lands
    as the awaited call finishes: the run must still stop at the next chunk and close the upstream."""
    sim.headers = {"x-sim-delay-token": "0.05"}
    body = {"model": "sim/qwen3", "messages": [{"role": "user", "content": "Tell me a long story"}], "stream": True}
    emitting = asyncio.Event()

    async def emit(html):
        emitting.set()
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            pass  # the cancel is lost, as in the wait_for race

    disconnects = len(sim.app.disconnects)
    run, message = await run_without_a_socket(conversation, body, emit)
    task = run.start()
    await asyncio.wait_for(emitting.wait(), 10)
    run.stop()
    done, _ = await asyncio.wait([task], timeout=10)
    assert task in done and task.cancelled()
    assert len(sim.app.disconnects) > disconnects  # the upstream request was closed, not left to finish
    await database_sync_to_async(message.refresh_from_db)()  # (closes its connection, unlike arefresh_from_db)
    assert message.status == "cancelled"


async def test_a_page_that_is_current_is_not_sent_its_list_again(owner, conversation, client):
    """The page passes the version of the list it shows (?v=); the socket sends only a sync marker
    when nothing changed since, and the whole list when something did."""
    from chat import fragments

    await database_sync_to_async(Message.objects.create)(conversation=conversation, position=0, role="user", content="Hi")

    def page_version():
        client.force_login(owner)
        html = client.get(f"/c/{conversation.public_id}/").content.decode()
        return re.search(r'ws-connect="/ws/conversations/[0-9a-f-]+/\?v=(\w+)"', html).group(1)

    version = await database_sync_to_async(page_version)()
    current = await database_sync_to_async(lambda: fragments.list_version(list(conversation.thread())))()
    assert version == current

    async def first_frame(v):
        ws = Socket(application, f"/ws/conversations/{conversation.public_id}/?v={v}", headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
        ws.scope["user"] = owner
        assert (await ws.connect())[0]
        frame = await ws.receive_from()
        await ws.disconnect()
        return frame

    frame = await first_frame(version)
    assert frame == fragments.synced()  # nothing re-rendered
    await database_sync_to_async(Message.objects.create)(conversation=conversation, position=1, role="assistant", content="Hello!")
    frame = await first_frame(version)  # the page is behind now
    assert 'id="messages"' in frame and "Hello!" in frame and 'id="sync-state"' in frame
    assert 'id="messages"' in await first_frame("stale")


async def test_the_first_token_goes_out_at_once(owner, conversation, sim):
    """The role-only first chunk sends nothing, and must not start a 40 ms batch that holds back the
    first token (which arrives 20 ms later at 50 tokens/s)."""
    sim.headers = {"x-sim-delay-token": "0.02"}
    # (Llama: answer text, no Thinking block, whose first template render would be timed too)
    body = {"model": "sim/llama-3.3", "messages": [{"role": "user", "content": "Hello"}], "stream": True, "max_tokens": 5}
    sent = []

    async def emit(html):
        sent.append(time.monotonic())

    run, message = await run_without_a_socket(conversation, body, emit)
    await run.run()
    assert run.first_token_at is not None and sent
    assert sent[0] - run.first_token_at < 0.01, f"first token held back {1000 * (sent[0] - run.first_token_at):.0f} ms"
    await database_sync_to_async(message.refresh_from_db)()
    assert message.status == "complete"


async def test_the_placeholder_goes_out_before_any_token_even_when_tokens_are_instant(owner, conversation, sim):
    """The upstream request starts before the opening fragments render; tokens that come back
    sooner must still wait for the placeholder they are appended to."""
    for action, content in (("send", "Instant, please"), ("regenerate", "")):
        ws = await connect(owner, conversation)
        await send(ws, action=action, content=content)
        frames = await frames_until_idle(ws)
        await ws.disconnect()
        _, reply = (await messages_of(conversation, is_active=True))[-2:]
        opening = next(i for i, f in enumerate(frames) if f'id="msg-{reply.public_id}"' in f)
        assert opening == 0 and 'data-status="streaming"' in frames[0]
        # A send appends the user's message; a regenerate redraws the shown branch with the new placeholder.
        assert ('id="messages" class="messages" hx-swap-oob="true"' in frames[0]) == (action == "regenerate")
        assert reply.status == "complete"
