"""Comparisons (issue 15): overrides and sweeps, the socket's panes against real simulators (stream
together, stop one, a failing pane isolated, stop all), replay, diffs, continue, history, sharing,
export, fork and who may see what."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from chat import compare
from chat.models import Completion, Conversation, Message, Pane
from chat.simulator import make_simulator
from playground.asgi import application
from tests.chat.test_consumer import make_endpoint as _make_endpoint
from tests.servers import Recorder, free_port, serve_asgi
from tests.sockets import Socket

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sim-compare-key"


def make_endpoint(url: str, model="sim/qwen3", key=KEY, **kw):
    return _make_endpoint(url, model=model, key=key, **kw)


@pytest.fixture(scope="module")
def sims():
    """Two simulators on real sockets (two "deployments"), recording the bodies they receive."""
    a, b = Recorder(make_simulator(api_key=KEY, token_delay=0.01)), Recorder(make_simulator(api_key=KEY, token_delay=0.01))
    with serve_asgi(a) as url_a, serve_asgi(b) as url_b:
        a.url, b.url = url_a + "/v1", url_b + "/v1"
        yield a, b


@pytest.fixture(autouse=True)
def clear(sims):
    for sim in sims:
        sim.exchanges.clear()


def bodies(sim) -> list[dict]:
    return [e.json for e in sim.exchanges if e.path.endswith("/chat/completions")]


# --- overrides, sweeps, merge ------------------------------------------------------------------------


def test_overrides_parse_typed_values_and_refuse_bad_ones_with_a_clear_message():
    assert compare.parse_overrides("temperature=1.0, enable_thinking=off; stop=[\"a\", \"b\"]\nseed=3") == {
        "temperature": 1.0, "enable_thinking": False, "stop": ["a", "b"], "seed": 3}
    assert compare.parse_overrides("") == {}
    assert compare.parse_overrides("top_p=unset") == {"top_p": None}
    with pytest.raises(compare.CompareError, match="temperature"):
        compare.parse_overrides("temperature=-1")
    with pytest.raises(compare.CompareError, match="not a setting a pane can change"):
        compare.parse_overrides("colour=blue")
    with pytest.raises(compare.CompareError, match="name=value"):
        compare.parse_overrides("temperature")
    with pytest.raises(compare.CompareError, match="on or off"):
        compare.parse_overrides("enable_thinking=maybe")
    assert compare.chips({"temperature": 1.0, "enable_thinking": False}) == ["temperature 1.0", "enable_thinking off"]


def test_merge_puts_enable_thinking_into_chat_template_kwargs_and_unsets():
    base = {"temperature": 0.6, "chat_template_kwargs": {"enable_thinking": True, "x": 1}, "top_p": 0.9}
    merged = compare.merge(base, {"enable_thinking": False, "top_p": None, "seed": 4})
    assert merged == {"temperature": 0.6, "chat_template_kwargs": {"enable_thinking": False, "x": 1}, "seed": 4}


def test_sweeps_lists_and_ranges_checked():
    assert compare.sweep_values("temperature", "0, 0.7, 1.2") == [0, 0.7, 1.2]
    assert compare.sweep_values("seed", "1..4") == [1, 2, 3, 4]
    with pytest.raises(compare.CompareError, match="at most 6"):
        compare.sweep_values("seed", "1..9")
    with pytest.raises(compare.CompareError, match="twice"):
        compare.sweep_values("temperature", "0.5, 0.5")
    with pytest.raises(compare.CompareError, match="temperature"):
        compare.sweep_values("temperature", "0, -1")
    with pytest.raises(compare.CompareError, match="Pick a setting"):
        compare.sweep_values("messages", "1, 2")
    with pytest.raises(compare.CompareError, match="at least two"):
        compare.sweep_values("seed", "3")


def test_text_diff_and_first_divergence():
    ops = compare.text_diff("The cat sat on the mat.", "The dog sat on the mat!")
    assert ("delete", "cat") in ops and ("insert", "dog") in ops and ops[0] == ("equal", "The ")
    tok = lambda t, lp, alts: {"token": t, "logprob": lp, "top_logprobs": [{"token": a, "logprob": p} for a, p in alts]}
    a = {"content": [tok("Hi", -0.1, [("Hi", -0.1), ("Hello", -2.5)]), tok(" there", -0.5, [(" there", -0.5), (" you", -1.2)])]}
    b = {"content": [tok("Hi", -0.1, [("Hi", -0.1)]), tok(" you", -1.2, [(" there", -0.5), (" you", -1.2)])]}
    d = compare.first_divergence(a, b)
    assert d.index == 1 and d.prefix == "Hi" and d.a.token == " there" and d.b.token == " you"
    assert [alt[0] for alt in d.b.alternatives] == [" there", " you"] and d.b.alternatives[1][2] is True
    assert compare.first_divergence(a, a) is False
    assert (compare.visible("\n"), compare.visible("  "), compare.visible(" x")) == ("↵", "␣␣", " x")
    assert compare.first_divergence(a, None) is None
    assert compare.first_divergence(a, {"content": a["content"][:1]}).b is None  # b ended there


# --- the socket ---------------------------------------------------------------------------------------


async def connect(user, conversation) -> Socket:
    socket = Socket(application, f"/ws/conversations/{conversation.public_id}/",
                    headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
    socket.scope["user"] = user
    connected, _ = await socket.connect()
    assert connected
    assert 'id="messages"' in await socket.receive_from()  # the board
    return socket


async def send(socket, **frame) -> None:
    await socket.send_to(text_data=json.dumps(frame))


async def frames_until(socket, check, timeout=20) -> list[str]:
    frames = []
    async with asyncio.timeout(timeout):
        while not check(frames):
            frames.append(await socket.receive_from())
    return frames


def idle_count(frames, panes) -> int:
    return sum(f'id="pane-state-{p.public_id}" class="pane-state" data-state="idle"' in f for f in frames for p in panes)


@pytest.fixture
def three_panes(owner, team, sims):
    """Two endpoints and a temperature override: the issue's comparison."""
    a, b = make_endpoint(sims[0].url), make_endpoint(sims[1].url, model="sim/gemma-4")
    comparison = compare.new_comparison(owner, [(a, {}), (b, {}), (a, {"temperature": 1.2})])
    comparison.team, comparison.visibility = team, "team"
    comparison.options = {"logprobs": True, "top_logprobs": 3, "max_tokens": 60}
    comparison.save()
    return comparison


async def test_one_message_streams_to_every_pane_at_once_with_its_own_request(owner, three_panes, sims):
    panes = await database_sync_to_async(lambda: list(three_panes.panes.all()))()
    socket = await connect(owner, three_panes)
    await send(socket, action="send", content="Hello, compare these answers")
    frames = await frames_until(socket, lambda fs: idle_count(fs, panes) >= 3)
    await socket.disconnect()
    opening = frames[0]
    assert opening.count("class=\"pane-state\" data-state=\"streaming\"") == 3 and "Hello, compare these answers" in opening
    # Every pane streamed: content fragments for three different answers arrived before the first pane ended.
    first_final = next(i for i, f in enumerate(frames) if "data-state=\"idle\"" in f and "pane-state" in f)
    replies = await database_sync_to_async(lambda: list(Message.objects.filter(conversation=three_panes, role="assistant").order_by("pane__position")))()
    assert [r.status for r in replies] == ["complete"] * 3, [r.error for r in replies]
    streamed = {str(r.public_id) for r in replies if any(f'msg-{r.public_id}-content" hx-swap-oob="beforeend"' in f for f in frames[:first_final])}
    assert len(streamed) == 3
    assert all(any(f'id="pane-live-{p.public_id}" class="pane-live" hx-swap-oob="true">TTFT ' in f for f in frames) for p in panes)
    # The bodies each upstream received: the shared message, the pane's model, the shared and its own values.
    received = bodies(sims[0]) + bodies(sims[1])
    assert len(received) == 3
    by_model_temp = sorted((b["model"], b.get("temperature")) for b in received)
    assert by_model_temp[0][0] == "sim/gemma-4"
    assert ("sim/qwen3", 1.2) in by_model_temp and sum(1 for m, _ in by_model_temp if m == "sim/qwen3") == 2
    assert all(b["messages"][-1] == {"role": "user", "content": "Hello, compare these answers"} for b in received)
    assert all(b["logprobs"] is True and b["top_logprobs"] == 3 and b["max_tokens"] == 60 for b in received)
    completions = await database_sync_to_async(lambda: list(Completion.objects.filter(conversation=three_panes)))()
    assert all(c.ttft_ms is not None and c.usage for c in completions)


async def test_second_turn_sends_each_pane_its_own_answers(owner, three_panes, sims):
    panes = await database_sync_to_async(lambda: list(three_panes.panes.all()))()
    socket = await connect(owner, three_panes)
    await send(socket, action="send", content="First question")
    await frames_until(socket, lambda fs: idle_count(fs, panes) >= 3)
    for sim in sims:
        sim.exchanges.clear()
    await send(socket, action="send", content="Second question")
    await frames_until(socket, lambda fs: idle_count(fs, panes) >= 3)
    await socket.disconnect()
    answers = await database_sync_to_async(lambda: {
        m.pane_id: m.text for m in Message.objects.filter(conversation=three_panes, role="assistant", position=1)})()
    for body in bodies(sims[0]) + bodies(sims[1]):
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert body["messages"][1]["content"] in answers.values()
    own = {(b["model"], b.get("temperature")): b["messages"][1]["content"] for b in bodies(sims[0]) + bodies(sims[1])}
    assert own[("sim/qwen3", 1.2)] == answers[panes[2].pk]


@pytest.fixture
def slow(owner, sims):
    """Two panes on a slow simulator: long enough to stop one mid-stream."""
    app = make_simulator(api_key=KEY, token_delay=0.05)
    with serve_asgi(app) as url:
        endpoint = make_endpoint(url + "/v1")
        comparison = compare.new_comparison(owner, [(endpoint, {}), (endpoint, {"seed": 7}), (endpoint, {"seed": 8})])
        comparison.options = {"max_tokens": 400}
        comparison.save()
        yield comparison


async def test_stop_one_pane_the_others_finish_and_stop_all_stops_every_pane(owner, slow):
    panes = await database_sync_to_async(lambda: list(slow.panes.all()))()
    socket = await connect(owner, slow)
    await send(socket, action="send", content="Tell me a long story about tokens")
    await frames_until(socket, lambda fs: sum("hx-swap-oob=\"beforeend\"" in f and "-content" in f for f in fs) >= 3)
    await send(socket, action="stop", pane=str(panes[1].public_id))
    frames = await frames_until(socket, lambda fs: idle_count(fs, panes) >= 3, timeout=60)
    statuses = await database_sync_to_async(lambda: {m.pane_id: m.status for m in Message.objects.filter(conversation=slow, role="assistant")})()
    assert statuses == {panes[0].pk: "complete", panes[1].pk: "cancelled", panes[2].pk: "complete"}
    # The stopped pane's final came first, while the others still streamed.
    first_idle = next(i for i, f in enumerate(frames) if idle_count([f], panes))
    assert f'pane-state-{panes[1].public_id}" class="pane-state" data-state="idle"' in frames[first_idle]
    # Stop all: every pane.
    await send(socket, action="send", content="Another long story please")
    await frames_until(socket, lambda fs: sum("hx-swap-oob=\"beforeend\"" in f and "-content" in f for f in fs) >= 3)
    await send(socket, action="stop")
    await frames_until(socket, lambda fs: idle_count(fs, panes) >= 3)
    await socket.disconnect()
    statuses = await database_sync_to_async(lambda: [m.status for m in Message.objects.filter(conversation=slow, role="assistant", position=3)])()
    assert statuses == ["cancelled"] * 3


async def test_a_failing_pane_shows_its_error_and_the_others_finish(owner, sims):
    def make():
        good = make_endpoint(sims[0].url)
        dead = make_endpoint(f"http://127.0.0.1:{free_port()}/v1", model="sim/dead")  # nothing listens there
        bad_key = make_endpoint(sims[1].url, model="sim/qwen3", key="wrong-key")
        return compare.new_comparison(owner, [(good, {}), (dead, {}), (bad_key, {})])

    comparison = await database_sync_to_async(make)()
    panes = await database_sync_to_async(lambda: list(comparison.panes.all()))()
    socket = await connect(owner, comparison)
    await send(socket, action="send", content="Hello")
    frames = await frames_until(socket, lambda fs: idle_count(fs, panes) >= 3)
    await socket.disconnect()
    replies = await database_sync_to_async(lambda: {m.pane_id: m for m in Message.objects.filter(conversation=comparison, role="assistant")})()
    assert replies[panes[0].pk].status == "complete" and replies[panes[0].pk].text
    assert replies[panes[1].pk].status == "error" and "could not connect" in replies[panes[1].pk].error
    assert replies[panes[2].pk].status == "error" and "401" in replies[panes[2].pk].error
    assert "wrong-key" not in "".join(frames)


async def test_an_unusable_endpoint_fails_its_pane_only(owner, other_team, sims):
    def make():
        good = make_endpoint(sims[0].url)
        closed = make_endpoint(sims[1].url, model="sim/closed")
        closed.teams.add(other_team)  # the owner is not in it
        return compare.new_comparison(owner, [(good, {}), (closed, {})])

    comparison = await database_sync_to_async(make)()
    panes = await database_sync_to_async(lambda: list(comparison.panes.all()))()
    socket = await connect(owner, comparison)
    await send(socket, action="send", content="Hello")
    frames = await frames_until(socket, lambda fs: idle_count(fs, panes[:1]) >= 1)
    await socket.disconnect()
    assert "You may not use" in frames[0]
    assert bodies(sims[1]) == []


async def test_teammate_co_views_live_and_cannot_send_or_stop(owner, teammate, three_panes):
    panes = await database_sync_to_async(lambda: list(three_panes.panes.all()))()
    viewer = await connect(teammate, three_panes)
    socket = await connect(owner, three_panes)
    await send(socket, action="send", content="Seen by the team")
    seen = await frames_until(viewer, lambda fs: idle_count(fs, panes) >= 3)
    assert "Seen by the team" in "".join(seen) and sum("-content\" hx-swap-oob=\"beforeend\"" in f for f in seen) >= 3
    await frames_until(socket, lambda fs: idle_count(fs, panes) >= 3)
    await send(viewer, action="send", content="Mine now")
    refusal = await viewer.receive_from()
    assert "read-only" in refusal
    await send(viewer, action="stop")
    assert "read-only" in await viewer.receive_from()
    await viewer.disconnect()
    await socket.disconnect()


async def test_outsider_cannot_connect(outsider, three_panes):
    socket = Socket(application, f"/ws/conversations/{three_panes.public_id}/",
                    headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
    socket.scope["user"] = outsider
    connected, code = await socket.connect()
    assert not connected or code == 4403


async def test_replay_sends_the_stored_body_with_only_the_model_changed(owner, sims):
    def make():
        a, b = make_endpoint(sims[0].url), make_endpoint(sims[1].url, model="sim/gemma-4")
        source = Conversation.objects.create(owner=owner, endpoint=a, title="Source")
        body = {"model": "sim/qwen3", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
                "temperature": 0.3, "max_tokens": 40, "seed": 5, "stream": True, "stream_options": {"include_usage": True},
                "logprobs": True, "top_logprobs": 2, "repetition_penalty": 1.05}
        completion = Completion.objects.create(conversation=source, endpoint=a, request_body=body, status="complete")
        user = Message.objects.create(conversation=source, position=0, role="user", content="Hi there")
        Message.objects.create(conversation=source, parent=user, position=1, role="assistant", content="Hello!", completion=completion)
        return compare.replay(completion, b, owner), body

    comparison, body = await database_sync_to_async(make)()
    panes = await database_sync_to_async(lambda: list(comparison.panes.all()))()
    socket = await connect(owner, comparison)
    await send(socket, action="replay")
    await frames_until(socket, lambda fs: idle_count(fs, panes[1:]) >= 1)
    await socket.disconnect()
    [received] = bodies(sims[1])
    assert {k: v for k, v in received.items() if k != "model"} == {k: v for k, v in body.items() if k != "model"}
    assert received["model"] == "sim/gemma-4"
    messages = await database_sync_to_async(lambda: list(Message.objects.filter(conversation=comparison, role="assistant").order_by("pane__position")))()
    assert [m.text for m in messages][0] == "Hello!" and messages[1].status == "complete" and messages[1].text
    # Nothing is left pending: a second replay frame is refused.
    socket = await connect(owner, comparison)
    await send(socket, action="replay")
    assert "Nothing is waiting" in await socket.receive_from()
    await socket.disconnect()




# --- pages: who may see what, forms, diff, continue, history, export, fork, delete -----------------------


def login(client, user):
    client.force_login(user)
    return client


def answered(comparison, texts, logprobs=None):
    """A turn answered by every pane (as the socket saves it), without an upstream."""
    from chat import branches

    panes = list(comparison.panes.all())
    user = branches.add_child(comparison, None, siblings_selected=False, role="user", content="Which is it?")
    made = []
    for i, (pane, text) in enumerate(zip(panes, texts)):
        completion = Completion.objects.create(conversation=comparison, endpoint=pane.endpoint, request_body={"model": "m"}, status="complete")
        made.append(Message.objects.create(conversation=comparison, parent=user, position=1, role="assistant", content=text, pane=pane,
                                           completion=completion, logprobs=(logprobs or [None] * 3)[i]))
    return made


@pytest.fixture
def pair(owner, team, sims):
    a, b = make_endpoint(sims[0].url), make_endpoint(sims[1].url, model="sim/gemma-4")
    comparison = compare.new_comparison(owner, [(a, {}), (b, {"temperature": 0.2})], title="Pair")
    comparison.team, comparison.visibility = team, "team"
    comparison.save()
    return comparison


def test_page_owner_teammate_outsider(client, owner, teammate, outsider, pair):
    url = f"/c/{pair.public_id}/"
    page = login(client, owner).get(url).content.decode()
    assert 'id="composer"' in page and "Pane 2" in page and "temperature 0.2" in page and "Stop all" in page
    page = login(client, teammate).get(url).content.decode()
    assert 'id="composer"' not in page and "Read-only" in page and "temperature 0.2" in page
    login(client, outsider)
    assert client.get(url).status_code == 404
    assert client.get(f"/c/{pair.public_id}/compare/diff").status_code == 404
    assert client.post(f"/c/{pair.public_id}/compare/panes/add", {"endpoint": pair.endpoint_id}).status_code == 404
    [m, _] = answered(pair, ["a", "b"])
    assert client.post(f"/c/{pair.public_id}/compare/messages/{m.public_id}/continue").status_code == 404
    assert client.get(f"/completions/{m.completion.public_id}/replay").status_code == 404
    assert client.get(f"/c/{pair.public_id}/export.json").status_code == 404
    # A teammate may not change the panes.
    login(client, teammate)
    assert client.post(f"/c/{pair.public_id}/compare/panes/add", {"endpoint": pair.endpoint_id}).status_code == 404
    assert client.post(f"/c/{pair.public_id}/compare/settings", {"options": "seed=1"}).status_code == 404


def test_new_comparison_form_rows_sweep_and_errors(client, owner, sims):
    a = make_endpoint(sims[0].url)
    login(client, owner)
    assert "Pane 6" in client.get("/compare/new").content.decode()
    bad = client.post("/compare/new", {"endpoint_0": a.pk, "overrides_0": "temperature=hot", "endpoint_1": a.pk})
    assert bad.status_code == 400 and "temperature: must be a number" in bad.content.decode()
    assert "temperature=hot" in bad.content.decode()  # what was typed is kept
    one = client.post("/compare/new", {"endpoint_0": a.pk})
    assert one.status_code == 400 and "2 to 6 panes" in one.content.decode()
    made = client.post("/compare/new", {"endpoint_0": a.pk, "overrides_0": "enable_thinking=off",
                                        "sweep-endpoint": a.pk, "sweep-parameter": "temperature", "sweep-values": "0, 0.7, 1.2"})
    assert made.status_code == 302
    comparison = Conversation.objects.get(kind="compare", owner=owner)
    assert [p.overrides for p in comparison.panes.all()] == [{"enable_thinking": False}, {"temperature": 0}, {"temperature": 0.7}, {"temperature": 1.2}]
    too_many = client.post(f"/c/{comparison.public_id}/compare/panes/sweep", {"sweep-endpoint": a.pk, "sweep-parameter": "seed", "sweep-values": "1..4"})
    assert too_many.status_code == 400 and "at most 6 panes" in too_many.content.decode()
    assert client.post(f"/c/{comparison.public_id}/compare/panes/add", {"pane-endpoint": a.pk, "pane-overrides": "seed=9"}).status_code == 302
    assert comparison.panes.count() == 5
    pane = comparison.panes.last()
    assert client.post(f"/c/{comparison.public_id}/compare/panes/{pane.public_id}/remove").status_code == 302
    assert comparison.panes.count() == 4
    bad = client.post(f"/c/{comparison.public_id}/compare/settings", {"system_prompt": "Be brief", "options": "max_tokens=-3"})
    assert bad.status_code == 400 and "max_tokens" in bad.content.decode() and "Be brief" in bad.content.decode()
    assert client.post(f"/c/{comparison.public_id}/compare/settings", {"system_prompt": "Be brief", "options": "max_tokens=30, logprobs=on"}).status_code == 302
    comparison.refresh_from_db()
    assert comparison.options == {"max_tokens": 30, "logprobs": True} and comparison.system_prompt == "Be brief"


def test_diff_view_words_and_first_divergence(client, owner, pair):
    tok = lambda t, lp, alts: {"token": t, "logprob": lp, "bytes": None, "top_logprobs": [{"token": a, "logprob": p} for a, p in alts]}
    la = {"content": [tok("The", -0.01, [("The", -0.01)]), tok(" cat", -0.7, [(" cat", -0.7), (" dog", -0.9)])]}
    lb = {"content": [tok("The", -0.01, [("The", -0.01)]), tok(" dog", -0.9, [(" cat", -0.7), (" dog", -0.9)])]}
    answered(pair, ["The cat <b>sat</b>", "The dog sat"], [la, lb])
    a, b = pair.panes.all()
    html = login(client, owner).get(f"/c/{pair.public_id}/compare/diff", {"a": a.public_id, "b": b.public_id}).content.decode()
    assert '<del class="diff-del">cat</del>' in html and '<ins class="diff-ins">dog</ins>' in html
    assert "&lt;b&gt;" in html and "<b>sat" not in html  # model text is escaped
    assert "At token 2" in html and 'chosen-token"> cat' in html and 'chosen-token"> dog' in html
    html = client.get(f"/c/{pair.public_id}/compare/diff", {"a": a.public_id, "b": a.public_id}).content.decode()
    assert "Pick two different panes" in html


def test_continue_with_this_answer_new_and_source(client, owner, sims):
    a = make_endpoint(sims[0].url)
    source = Conversation.objects.create(owner=owner, endpoint=a, title="Source", options={"temperature": 0.5})
    user = Message.objects.create(conversation=source, position=0, role="user", content="Which is it?")
    comparison = compare.new_comparison(owner, [(a, {}), (a, {"temperature": 1.0})], source=source)
    _, second = answered(comparison, ["first pane", "second pane"])
    login(client, owner)
    page = client.get(f"/c/{comparison.public_id}/").content.decode()
    assert page.count("in a new conversation") == 2 and page.count("in the source conversation") == 2
    nested = compare.new_comparison(owner, [(a, {}), (a, {})], source=comparison)  # its source is a comparison
    answered(nested, ["x", "y"])
    page = client.get(f"/c/{nested.public_id}/").content.decode()
    assert "in a new conversation" in page and "in the source conversation" not in page
    response = client.post(f"/c/{comparison.public_id}/compare/messages/{second.public_id}/continue", {"target": "new"})
    target = Conversation.objects.exclude(pk__in=[source.pk, comparison.pk, nested.pk]).get()
    assert response.url == f"/c/{target.public_id}/" and target.kind == "chat"
    assert [(m.role, m.text) for m in target.thread()] == [("user", "Which is it?"), ("assistant", "second pane")]
    assert target.options["temperature"] == 1.0
    response = client.post(f"/c/{comparison.public_id}/compare/messages/{second.public_id}/continue", {"target": "source"})
    assert response.url == f"/c/{source.public_id}/"
    assert [(m.role, m.text) for m in source.thread()] == [("user", "Which is it?"), ("assistant", "second pane")]
    assert source.thread()[-1].parent_id == user.pk


def results(response) -> str:
    html = response.content.decode()
    return html[html.index('id="conversation-list"'):].split("</ul>")[0]


def test_history_kind_filter_search_export_fork_delete(client, owner, teammate, pair, sims):
    answered(pair, ["alpha answer", "zebra answer"])
    Conversation.objects.create(owner=owner, endpoint=pair.endpoint, title="Plain chat").messages.create(position=0, role="user", content="hi")
    login(client, owner)
    listing = results(client.get("/", {"scope": "mine", "kind": "compare"}))
    assert "Pair" in listing and "Plain chat" not in listing and "comparison" in listing
    assert "Pair" in results(client.get("/", {"scope": "mine", "q": "zebra"}))  # the second pane's answer
    gemma = pair.panes.last().endpoint.name
    assert "Pair" in results(client.get("/", {"scope": "mine", "endpoint": gemma}))  # any pane's endpoint
    data = json.loads(client.get(f"/c/{pair.public_id}/export.json").content)
    assert data["kind"] == "compare" and [p["overrides"] for p in data["panes"]] == [{}, {"temperature": 0.2}]
    assert data["panes"][1]["messages"][-1]["content"] == "zebra answer" and KEY not in json.dumps(data)
    markdown = client.get(f"/c/{pair.public_id}/export.md").content.decode()
    assert "zebra answer" in markdown and "temperature 0.2" in markdown
    # A teammate sees it in the team's list, forks it (panes and answers), and may not delete it.
    login(client, teammate)
    assert "Pair" in results(client.get("/", {"scope": "team:red team"}))
    response = client.post(f"/c/{pair.public_id}/fork", {"endpoint": pair.endpoint.name})
    copy = Conversation.objects.get(owner=teammate)
    assert response.status_code == 302 and copy.kind == "compare" and copy.panes.count() == 2
    assert sorted(copy.messages.filter(role="assistant").values_list("text_index", flat=True)) == ["alpha answer", "zebra answer"]
    assert client.post(f"/c/{pair.public_id}/delete").status_code == 404
    login(client, owner)
    assert client.post(f"/c/{pair.public_id}/delete").status_code == 302
    assert not Conversation.objects.filter(pk=pair.pk).exists() and not Pane.objects.filter(conversation_id=pair.pk).exists()


def test_diff_of_an_earlier_turn_and_the_header(client, owner, pair):
    answered(pair, ["one two", "one three"])
    from chat import branches

    a, b = pair.panes.all()
    first_user = pair.messages.get(role="user")
    parent = pair.messages.filter(role="assistant").first()
    second_user = branches.add_child(pair, parent, siblings_selected=False, role="user", content="And now?")
    for pane, text in ((a, "later alpha"), (b, "later beta")):
        Message.objects.create(conversation=pair, parent=second_user, position=3, role="assistant", content=text, pane=pane)
    login(client, owner)
    page = client.get(f"/c/{pair.public_id}/").content.decode()
    assert "comparison of 2 panes" in page and 'name="turn"' in page
    html = client.get(f"/c/{pair.public_id}/compare/diff", {"a": a.public_id, "b": b.public_id}).content.decode()
    assert '<ins class="diff-ins">beta</ins>' in html  # the latest turn by default
    html = client.get(f"/c/{pair.public_id}/compare/diff", {"a": a.public_id, "b": b.public_id, "turn": str(first_user.public_id)}).content.decode()
    assert '<ins class="diff-ins">three</ins>' in html and "beta" not in html


async def test_after_a_reload_mid_stream_stop_one_pane_of_the_detached_runs(owner, slow, settings):
    """The owner's socket closes mid-stream: every pane's run goes on (detached); the next page gets
    them live and its Stop of one pane stops that pane only."""
    settings.RUN_GRACE_SECONDS = 10
    panes = await database_sync_to_async(lambda: list(slow.panes.all()))()
    socket = await connect(owner, slow)
    await send(socket, action="send", content="A long story, please")
    await frames_until(socket, lambda fs: sum('-content" hx-swap-oob="beforeend"' in f for f in fs) >= 3)
    await socket.disconnect()
    socket = await connect(owner, slow)  # the reloaded page
    await send(socket, action="stop", pane=str(panes[0].public_id))
    await frames_until(socket, lambda fs: idle_count(fs, panes) >= 3, timeout=60)
    await socket.disconnect()
    statuses = await database_sync_to_async(lambda: {m.pane_id: m.status for m in Message.objects.filter(conversation=slow, role="assistant")})()
    assert statuses == {panes[0].pk: "cancelled", panes[1].pk: "complete", panes[2].pk: "complete"}


# --- pane changes reach every open page, each for its own viewer ------------------------------------


async def test_pane_changes_reach_every_open_page_each_drawn_for_its_viewer(client, owner, teammate, three_panes, sims):
    """Adding, sweeping and removing panes and editing the shared settings redraw the owner's other
    tabs and a teammate's page at once (chat.views_compare.announce); the teammate's has no owner controls."""
    await database_sync_to_async(client.force_login)(owner)
    post = database_sync_to_async(client.post)
    endpoint = await database_sync_to_async(lambda: three_panes.panes.first().endpoint_id)()
    viewer, tab = await connect(teammate, three_panes), await connect(owner, three_panes)
    base = f"/c/{three_panes.public_id}/compare"

    response = await post(f"{base}/panes/add", {"pane-endpoint": endpoint, "pane-overrides": "temperature=0.9"})
    assert response.status_code == 302
    seen, mine = await viewer.receive_from(), await tab.receive_from()
    added = await database_sync_to_async(lambda: three_panes.panes.order_by("position", "pk").last())()
    for html in (seen, mine):
        assert f'id="pane-{added.public_id}"' in html and "temperature 0.9" in html and "<b>Pane 4</b>" in html
        assert 'id="diff-panes"' in html and f'value="{added.public_id}"' in html  # the diff can pick it
    assert "Remove pane 4" in mine and 'name="pane-overrides"' in mine and 'id="pane-count"' in mine and "4 panes" in mine
    assert "Remove pane" not in seen and "pane-stop" not in seen and 'name="pane-overrides"' not in seen
    assert 'id="pane-count"' not in seen and 'id="shared-chips"' in seen

    response = await post(f"{base}/panes/sweep", {"sweep-endpoint": endpoint, "sweep-parameter": "seed", "sweep-values": "1..2"})
    assert response.status_code == 302
    seen, mine = await viewer.receive_from(), await tab.receive_from()
    assert "seed 1" in seen and "seed 2" in seen and "<b>Pane 6</b>" in seen and "Remove pane 6" in mine
    assert "This comparison has the most panes (6)" in mine and 'name="pane-overrides"' not in mine

    response = await post(f"{base}/panes/{added.public_id}/remove", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    seen, mine = await viewer.receive_from(), await tab.receive_from()
    assert f'id="pane-{added.public_id}"' not in seen and "temperature 0.9" not in seen and "<b>Pane 5</b>" in seen
    assert "<b>Pane 6</b>" not in seen and "5 panes" in mine and 'name="pane-overrides"' in mine

    response = await post(f"{base}/settings", {"system_prompt": "Be terse.", "options": "max_tokens=99"})
    assert response.status_code == 302
    seen, mine = await viewer.receive_from(), await tab.receive_from()
    assert "max_tokens 99" in seen and 'id="shared-chips"' in seen and "Be terse." not in seen.split('id="shared-chips"')[1]
    assert 'id="shared-fields"' in mine and "Be terse.</textarea>" in mine and "max_tokens=99" in mine

    # A refused change (a bad override) redraws nothing.
    response = await post(f"{base}/panes/add", {"pane-endpoint": endpoint, "pane-overrides": "colour=blue"})
    assert response.status_code == 400
    assert await viewer.receive_nothing(timeout=0.5)
    await viewer.disconnect()
    await tab.disconnect()


async def test_a_socket_drawn_answer_offers_continue_in_the_source_to_its_owner_only(client, owner, teammate, team, sims):
    """Answers drawn by the socket have no viewer: Continue in the source conversation is drawn when
    the comparison's owner owns the source, marked owner-only (compare.js drops it on read-only pages);
    a teammate's reloaded page has none."""
    def make():
        a = make_endpoint(sims[0].url)
        source = Conversation.objects.create(owner=owner, endpoint=a, title="Source")
        comparison = compare.new_comparison(owner, [(a, {}), (a, {"temperature": 1.0})], source=source)
        comparison.team, comparison.visibility = team, "team"
        comparison.options = {"max_tokens": 20}
        comparison.save()
        return comparison

    comparison = await database_sync_to_async(make)()
    panes = await database_sync_to_async(lambda: list(comparison.panes.all()))()
    socket = await connect(owner, comparison)
    await send(socket, action="send", content="Continue me")
    frames = await frames_until(socket, lambda fs: idle_count(fs, panes) >= 2)
    await socket.disconnect()
    finals = [f for f in frames if "in a new conversation" in f]
    assert len(finals) == 2 and all("in the source conversation" in f and "data-owner-only" in f for f in finals)
    await database_sync_to_async(client.force_login)(teammate)
    page = (await database_sync_to_async(client.get)(f"/c/{comparison.public_id}/")).content.decode()
    assert page.count("in a new conversation") == 2 and "in the source conversation" not in page


async def test_shared_tools_and_response_format_go_to_every_pane_and_bad_json_is_named(client, owner, teammate, three_panes, sims):
    """The comparison's tools and response format (JSON, checked as a send checks them) go with
    every pane's request; a bad value is refused by name, the text kept, nothing changed."""
    await database_sync_to_async(client.force_login)(owner)
    post = database_sync_to_async(client.post)
    url = f"/c/{three_panes.public_id}/compare/settings"
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
    bad = await post(url, {"system_prompt": "", "options": "max_tokens=60", "tools": '[{"type": "nope"}]', "response_format": ""})
    page = bad.content.decode()
    assert bad.status_code == 400 and "each tool must be" in page and "{&quot;type&quot;: &quot;nope&quot;}" in page
    broken = await post(url, {"system_prompt": "", "options": "max_tokens=60", "tools": "", "response_format": '{"type": '})
    assert broken.status_code == 400 and "not valid JSON" in broken.content.decode()
    await database_sync_to_async(three_panes.refresh_from_db)()
    assert three_panes.tools == [] and three_panes.response_format is None

    saved = await post(url, {"system_prompt": "", "options": "max_tokens=60", "tools": json.dumps(tools),
                             "response_format": '{"type": "json_object"}'})
    assert saved.status_code == 302
    mine = (await database_sync_to_async(client.get)(f"/c/{three_panes.public_id}/")).content.decode()
    assert "&quot;get_weather&quot;" in mine and "&quot;json_object&quot;" in mine  # the owner's form shows them
    await database_sync_to_async(client.force_login)(teammate)
    shown = (await database_sync_to_async(client.get)(f"/c/{three_panes.public_id}/")).content.decode()
    assert "tools get_weather" in shown and "response_format json_object" in shown  # a viewer's shared chips
    panes = await database_sync_to_async(lambda: list(three_panes.panes.all()))()
    socket = await connect(owner, three_panes)
    await send(socket, action="send", content="Weather?")
    await frames_until(socket, lambda fs: idle_count(fs, panes) >= 3)
    await socket.disconnect()
    received = bodies(sims[0]) + bodies(sims[1])
    assert len(received) == 3
    assert all(b["tools"] == tools and b["response_format"] == {"type": "json_object"} for b in received)
