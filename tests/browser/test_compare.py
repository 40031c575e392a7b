"""Comparisons in Chromium (issue 15), against simulators on real sockets: one message to three panes
(two endpoints and a temperature override) streaming at once; one pane stopped while the others
finish; the text diff and the first divergence of two logprob answers; Replay on… whose body differs
from the stored one only in `model` (checked at the simulator); a teammate co-viewing live and an
outsider getting 404; a comparison made with the New comparison form and a sweep."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chat import compare
from chat.forms import family_defaults
from chat.models import Completion, Conversation, Message
from tests.browser.conftest import served_simulator, sim_endpoint, until, wait_synced
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "browser-compare-key"


@pytest.fixture(scope="module")
def sims():
    """Two "deployments": slow enough to watch three panes stream and to stop one mid-answer."""
    with served_simulator(KEY, token_delay=0.04) as a, served_simulator(KEY, token_delay=0.04) as b:
        yield a, b


@pytest.fixture(autouse=True)
def clear(sims):
    for sim in sims:
        sim.requests.clear()


def chat_bodies(sim) -> list[dict]:
    return [r.json for r in sim.requests if r.path.endswith("/chat/completions")]


def log_in(page, live_server_url, user, path="/"):
    page.goto(f"{live_server_url}/login/?next={path}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(live_server_url + path.split("?")[0])))


def type_and_send(page, text: str) -> None:
    box = page.locator("#composer textarea")
    box.click()
    box.press_sequentially(text, delay=25)  # a person typing
    box.press("Enter")


def answered(page, turns: int = 1, timeout: float = 30_000) -> None:
    """The message was accepted (its turn is shown) and no pane answers any more."""
    expect(page.locator(".turn")).to_have_count(turns)
    expect(page.locator(".pane-state[data-state='streaming']")).to_have_count(0, timeout=timeout)


def pane_state(page, pane):
    return page.locator(f"#pane-state-{pane.public_id}")


def cell(page, pane):
    return page.locator(f".turn:last-child .pane-cell[data-pane='{pane.public_id}']")


def team_comparison(owner, team, panes, **kwargs):
    """A comparison its owner's team may see (kwargs: compare.new_comparison's)."""
    comparison = compare.new_comparison(owner, panes, **kwargs)
    comparison.team, comparison.visibility = team, "team"
    comparison.save()
    return comparison


def viewer_page(context, live_server_url, user, path):
    """Another viewer's page: a browser context of its own (its own session), logged in at path, synced."""
    viewer = context.new_page()
    viewer.set_default_timeout(10_000)
    log_in(viewer, live_server_url, user, path)
    wait_synced(viewer)
    return viewer


@pytest.fixture
def endpoints(sims):
    return sim_endpoint(sims[0].url, KEY, "sim/qwen3"), sim_endpoint(sims[1].url, KEY, "sim/gemma-4")


def test_three_panes_stream_at_once_stop_one_the_others_finish(live_server_url, page, owner, endpoints, sims):
    a, b = endpoints
    comparison = compare.new_comparison(owner, [(a, {}), (b, {}), (a, {"temperature": 1.2})], title="Three panes")
    comparison.options = {"max_tokens": 160}
    comparison.save()
    panes = list(comparison.panes.all())
    log_in(page, live_server_url, owner, f"/c/{comparison.public_id}/")
    wait_synced(page)
    expect(page.locator(".pane-head .chip")).to_have_text(["temperature 1.2"])

    type_and_send(page, "Tell me a story about three rivers")
    # All three stream at once: each pane is answering and has text, while none has finished.
    for pane in panes:
        expect(pane_state(page, pane)).to_have_attribute("data-state", "streaming")
    for pane in panes:
        expect(cell(page, pane).locator(".content.streaming")).not_to_be_empty()
    assert page.locator(".pane-state[data-state='streaming']").count() == 3
    for pane in panes:  # each pane's live numbers in its head
        expect(page.locator(f"#pane-live-{pane.public_id}")).to_contain_text(re.compile(r"TTFT \d+ ms · \d+ chunks"))
    expect(page.locator("#composer textarea")).to_have_value("")  # accepted: the composer is cleared
    expect(page.locator("#stop-button")).to_be_visible()  # Stop all

    # Stop the second pane: it stops, the others go on and finish.
    page.get_by_role("button", name="Stop pane 2").click()
    expect(pane_state(page, panes[1])).to_have_attribute("data-state", "idle")
    expect(cell(page, panes[1]).locator(".badge.warn")).to_have_text("stopped")
    assert page.locator(".pane-state[data-state='streaming']").count() == 2
    for pane in (panes[0], panes[2]):
        expect(pane_state(page, pane)).to_have_attribute("data-state", "idle", timeout=30_000)
        expect(cell(page, pane).locator(".metrics")).to_contain_text("TTFT")
        expect(cell(page, pane).locator(".metrics")).to_contain_text("finish:")
        expect(pane_state(page, pane)).to_contain_text(re.compile(r"TTFT \d+ ms · [\d.]+ tok/s · \d+ out"))
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle")
    expect(page.locator("#stop-button")).to_be_hidden()
    statuses = {m.pane_id: m.status for m in Message.objects.filter(conversation=comparison, role="assistant")}
    assert statuses == {panes[0].pk: "complete", panes[1].pk: "cancelled", panes[2].pk: "complete"}

    # What each upstream received: the same message, each pane's model and values.
    sent = chat_bodies(sims[0]) + chat_bodies(sims[1])
    assert sorted((body["model"], body.get("temperature")) for body in sent)[0][0] == "sim/gemma-4"
    assert any(body["model"] == "sim/qwen3" and body["temperature"] == 1.2 for body in sent)
    assert all(body["messages"][-1]["content"] == "Tell me a story about three rivers" for body in sent)

    # Stop all, on the next message.
    type_and_send(page, "And another, much longer")
    expect(page.locator(".pane-state[data-state='streaming']")).to_have_count(3)
    page.locator("#stop-button").click()
    expect(page.locator(".pane-state[data-state='streaming']")).to_have_count(0)
    expect(page.locator(".turn:last-child .badge.warn")).to_have_count(3)

    # Continue with the third pane's first answer (drawn by the socket, not the page) in a conversation.
    answer = page.locator(f".turn:first-of-type .pane-cell[data-pane='{panes[2].public_id}'] .message.assistant")
    answer.hover()
    answer.get_by_text("Continue with this answer").click()
    answer.get_by_role("button", name="in a new conversation").click()
    page.wait_for_url(lambda url: str(comparison.public_id) not in url)
    target = Conversation.objects.filter(kind="chat", owner=owner).get()
    assert page.url.endswith(f"/c/{target.public_id}/")
    third = Message.objects.get(conversation=comparison, pane=panes[2], position=1)
    expect(page.locator("#messages .message.assistant .content")).to_have_text(third.text.strip())
    assert target.endpoint == a and target.options["temperature"] == 1.2


def answered_with_logprobs(page, live_server_url, owner, endpoint):
    comparison = compare.new_comparison(owner, [(endpoint, {"seed": 1}), (endpoint, {"seed": 2, "temperature": 1.5})], title="Logprobs")
    log_in(page, live_server_url, owner, f"/c/{comparison.public_id}/")
    wait_synced(page)
    return comparison


def test_diff_and_first_divergence_of_two_logprob_answers(live_server_url, page, owner, endpoints):
    comparison = answered_with_logprobs(page, live_server_url, owner, endpoints[0])
    # Logprobs on for every pane, from the shared settings form.
    page.locator("#id_options").press_sequentially("logprobs=true, top_logprobs=5, max_tokens=60", delay=10)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#id_options")).to_have_value("logprobs=on, top_logprobs=5, max_tokens=60")
    type_and_send(page, "Describe the sea at night")
    answered(page)
    expect(page.locator(".turn:last-child .lp-content").first).to_be_attached()  # the token views

    page.get_by_role("button", name="Show the diff").click()
    view = page.locator("#diff-view")
    expect(view.locator(".text-diff")).to_be_visible()
    expect(view.locator(".text-diff ins, .text-diff del").first).to_be_visible()
    expect(view.locator(".first-divergence")).to_contain_text("At token")
    expect(view.locator(".divergence-side")).to_have_count(2)
    expect(view.locator(".divergence-side").first.locator(".alternatives tbody tr").first).to_be_visible()
    # The view says what the stored answers say.
    first, second = (m for m in Message.objects.filter(conversation=comparison, role="assistant").order_by("pane__position"))
    divergence = compare.first_divergence(first.logprobs, second.logprobs)
    expect(view.locator(".first-divergence")).to_contain_text(f"At token {divergence.index + 1}")
    expect(view.locator(".chosen-token").first).to_have_text(divergence.a.token)


def test_replay_on_another_endpoint_changes_only_the_model(live_server_url, page, owner, endpoints, sims):
    a, b = endpoints
    conversation = Conversation.objects.create(owner=owner, endpoint=a, options={**family_defaults(a), "seed": 3, "max_tokens": 50})
    log_in(page, live_server_url, owner, f"/c/{conversation.public_id}/")
    wait_synced(page)
    type_and_send(page, "What is a river delta?")
    expect(page.locator(".message.assistant .content.markdown")).not_to_be_empty(timeout=30_000)
    [original] = chat_bodies(sims[0])

    page.locator(".message.assistant .replay-link").click()
    page.wait_for_url(re.compile("/replay"))
    page.select_option("#id_endpoint", label=b.name_and_model)
    page.get_by_role("button", name="Replay").click()
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]+/$"))
    comparison = Conversation.objects.filter(kind="compare", owner=owner).get()
    panes = list(comparison.panes.all())
    expect(pane_state(page, panes[1])).to_have_attribute("data-state", "idle", timeout=30_000)
    expect(page.locator(f".pane-cell[data-pane='{panes[1].public_id}'] .content.markdown")).not_to_be_empty()
    expect(page.locator(f".pane-cell[data-pane='{panes[0].public_id}'] .content.markdown")).not_to_be_empty()  # the original
    until(lambda: len(chat_bodies(sims[1])) == 1)
    [replayed] = chat_bodies(sims[1])
    assert {k: v for k, v in replayed.items() if k != "model"} == {k: v for k, v in original.items() if k != "model"}
    assert (original["model"], replayed["model"]) == ("sim/qwen3", "sim/gemma-4")
    assert Completion.objects.filter(conversation=comparison, status="complete").count() == 2


def test_teammate_co_views_live_and_an_outsider_gets_404(live_server_url, browser, page, owner, teammate, outsider, team, endpoints):
    a, b = endpoints
    comparison = team_comparison(owner, team, [(a, {}), (b, {"temperature": 0.3})], title="Shared comparison", options={"max_tokens": 120})
    panes = list(comparison.panes.all())
    url = f"/c/{comparison.public_id}/"
    log_in(page, live_server_url, owner, url)
    wait_synced(page)

    mate_context = browser.new_context()
    outsider_context = browser.new_context()
    try:
        mate = viewer_page(mate_context, live_server_url, teammate, url)
        expect(mate.locator("#composer")).to_have_count(0)
        expect(mate.get_by_text("Read-only: this comparison belongs to alice")).to_be_visible()

        type_and_send(page, "Watched by the team")
        # The teammate sees both panes stream, without reloading.
        for pane in panes:
            expect(pane_state(mate, pane)).to_have_attribute("data-state", "streaming")
            expect(cell(mate, pane).locator(".content.streaming")).not_to_be_empty()
        expect(mate.locator(".turn:last-child .message.user")).to_contain_text("Watched by the team")
        for pane in panes:
            expect(pane_state(mate, pane)).to_have_attribute("data-state", "idle", timeout=30_000)
            expect(cell(mate, pane).locator(".content.markdown")).not_to_be_empty()
        expect(mate.locator(".pane-stop")).to_have_count(0)

        stranger = outsider_context.new_page()
        log_in(stranger, live_server_url, outsider, "/")
        response = stranger.goto(live_server_url + url)
        assert response.status == 404
        assert stranger.goto(f"{live_server_url}/c/{comparison.public_id}/compare/diff?a={panes[0].public_id}&b={panes[1].public_id}").status == 404
    finally:
        mate_context.close()
        outsider_context.close()


def test_new_comparison_form_with_a_sweep(live_server_url, page, owner, endpoints, sims):
    a, _ = endpoints
    log_in(page, live_server_url, owner, "/compare/new")
    page.select_option("#id_endpoint_0", label=a.name_and_model)
    page.locator("#id_overrides_0").press_sequentially("temperature=hot", delay=10)
    page.select_option("#id_endpoint_1", index=0)  # (no pane)
    page.get_by_role("button", name="Create the comparison").click()
    # A clear message; what was typed is still there.
    expect(page.get_by_text("temperature: must be a number")).to_be_visible()
    expect(page.locator("#id_overrides_0")).to_have_value("temperature=hot")
    page.locator("#id_overrides_0").fill("enable_thinking=off")
    page.get_by_text("Or add a sweep").click()
    page.select_option("#id_sweep-endpoint", label=a.name_and_model)
    page.select_option("#id_sweep-parameter", "seed")
    page.locator("#id_sweep-values").press_sequentially("1..3", delay=10)
    page.get_by_role("button", name="Create the comparison").click()
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]+/$"))
    expect(page.locator(".pane-head")).to_have_count(4)
    expect(page.locator(".pane-head .chip")).to_have_text(["enable_thinking off", "seed 1", "seed 2", "seed 3"])
    wait_synced(page)
    type_and_send(page, "Hi")
    answered(page)
    seeds = sorted(body.get("seed") or 0 for body in chat_bodies(sims[0]))
    assert seeds == [0, 1, 2, 3]
    thinking_off = [b for b in chat_bodies(sims[0]) if "seed" not in b]
    assert thinking_off[0]["chat_template_kwargs"]["enable_thinking"] is False


def test_pane_changes_reach_a_teammate_and_the_owners_other_tab_without_a_reload(live_server_url, browser, page, owner, teammate, team, endpoints):
    """The owner adds a pane, runs a sweep, removes a pane and edits the shared settings in one page;
    a teammate's page and the owner's other tab follow each change at once, without a reload, and the
    teammate's page never shows owner controls."""
    a, b = endpoints
    comparison = team_comparison(owner, team, [(a, {}), (b, {"temperature": 0.3})], title="Changing panes")
    url = f"/c/{comparison.public_id}/"
    log_in(page, live_server_url, owner, url)
    wait_synced(page)
    other_tab = page.context.new_page()
    other_tab.set_default_timeout(10_000)
    other_tab.goto(live_server_url + url)
    wait_synced(other_tab)
    mate_context = browser.new_context()
    try:
        mate = viewer_page(mate_context, live_server_url, teammate, url)
        for watcher in (mate, other_tab):  # a reload would lose this
            watcher.evaluate("window.notReloaded = true")
        expect(mate.locator(".pane-head")).to_have_count(2)

        # Add a pane (temperature 0.9 on the second endpoint).
        page.select_option("#id_pane-endpoint", label=b.name_and_model)
        page.locator("#id_pane-overrides").press_sequentially("temperature=0.9", delay=25)
        page.get_by_role("button", name="Add pane").click()
        expect(page.locator(".pane-head")).to_have_count(3)
        for watcher in (mate, other_tab):
            expect(watcher.locator(".pane-head")).to_have_count(3)
            expect(watcher.locator(".pane-head .chip")).to_have_text(["temperature 0.3", "temperature 0.9"])
            expect(watcher.locator("#diff-panes select[name=b] option")).to_have_count(3)  # the diff can pick it
        expect(other_tab.get_by_role("button", name="Remove pane 3")).to_be_visible()
        expect(other_tab.locator("#pane-count")).to_have_text("3 panes")
        expect(mate.locator(".pane-remove, .pane-stop, #composer, #add-pane-form")).to_have_count(0)

        # A sweep: two panes more.
        page.select_option("#id_sweep-endpoint", label=a.name_and_model)
        page.select_option("#id_sweep-parameter", "seed")
        page.locator("#id_sweep-values").press_sequentially("1..2", delay=25)
        page.get_by_role("button", name="Add the sweep's panes").click()
        expect(page.locator(".pane-head")).to_have_count(5)
        for watcher in (mate, other_tab):
            expect(watcher.locator(".pane-head .chip")).to_have_text(["temperature 0.3", "temperature 0.9", "seed 1", "seed 2"])
        expect(other_tab.get_by_role("button", name="Remove pane 5")).to_be_visible()
        expect(mate.locator(".pane-remove, .pane-stop")).to_have_count(0)

        # Remove the temperature 0.9 pane: both pages lose it.
        page.get_by_role("button", name="Remove pane 3").click()
        page.locator("#confirm-dialog").get_by_role("button", name="Remove").click()
        expect(page.locator(".pane-head")).to_have_count(4)
        for watcher in (mate, other_tab):
            expect(watcher.locator(".pane-head")).to_have_count(4)
            expect(watcher.locator(".pane-head .chip")).to_have_text(["temperature 0.3", "seed 1", "seed 2"])
            expect(watcher.get_by_text("temperature 0.9")).to_have_count(0)
        expect(other_tab.locator("#pane-count")).to_have_text("4 panes")

        # Shared settings: the teammate's chips, the owner's other tab's form.
        page.locator("#id_options").press_sequentially("max_tokens=99", delay=25)
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#id_options")).to_have_value("max_tokens=99")
        expect(mate.locator("#shared-chips .chip")).to_have_text(["max_tokens 99"])
        expect(other_tab.locator("#id_options")).to_have_value("max_tokens=99")

        # The owner's other tab still works: it sends to the four panes.
        type_and_send(other_tab, "Four panes now")
        expect(mate.locator(".turn:last-child .pane-cell")).to_have_count(4)
        answered(other_tab)
        for watcher in (mate, other_tab):
            assert watcher.evaluate("window.notReloaded") is True
        assert list(comparison.panes.values_list("overrides", flat=True)) == [{}, {"temperature": 0.3}, {"seed": 1}, {"seed": 2}]
    finally:
        mate_context.close()


def test_continue_in_the_source_conversation_from_a_live_answer(live_server_url, browser, page, owner, teammate, team, endpoints):
    """An answer drawn by the socket (no reload) offers Continue in the source conversation to the owner,
    and it works; the teammate's live copy of the same answer does not offer it."""
    a, _ = endpoints
    source = Conversation.objects.create(owner=owner, endpoint=a, title="The source", team=team, visibility="team")
    question = Message.objects.create(conversation=source, position=0, role="user", content="Name a river")
    comparison = team_comparison(owner, team, [(a, {}), (a, {"temperature": 1.1})], title="From the source", options={"max_tokens": 40}, source=source)
    panes = list(comparison.panes.all())
    url = f"/c/{comparison.public_id}/"
    log_in(page, live_server_url, owner, url)
    wait_synced(page)
    mate_context = browser.new_context()
    try:
        mate = viewer_page(mate_context, live_server_url, teammate, url)

        type_and_send(page, "And another one")
        answered(page)
        expect(pane_state(mate, panes[1])).to_have_attribute("data-state", "idle", timeout=30_000)
        mate_answer = cell(mate, panes[1]).locator(".message.assistant")
        mate_answer.hover()
        mate_answer.get_by_text("Continue with this answer").click()
        expect(mate_answer.get_by_role("button", name="in a new conversation")).to_be_visible()
        expect(mate.locator("[data-owner-only]")).to_have_count(0)
        expect(mate.get_by_text("in the source conversation")).to_have_count(0)

        answer = cell(page, panes[1]).locator(".message.assistant")
        answer.hover()
        answer.get_by_text("Continue with this answer").click()
        answer.get_by_role("button", name="in the source conversation").click()
        page.wait_for_url(re.compile(re.escape(f"/c/{source.public_id}/") + "$"))
        second = Message.objects.get(conversation=comparison, pane=panes[1], role="assistant")
        expect(page.locator("#messages .message.assistant .content")).to_have_text(second.text.strip())
        thread = source.thread()
        # (the next assistant message after the source's own last message, as compare.continue_in_source does)
        assert [(m.role, m.text) for m in thread] == [("user", "Name a river"), ("assistant", second.text)]
        assert thread[1].parent_id == question.pk and thread[1].completion_id == second.completion_id
    finally:
        mate_context.close()


def test_shared_tools_and_response_format_typed_in_the_page_go_to_every_pane(live_server_url, page, owner, endpoints, sims):
    a, b = endpoints
    comparison = compare.new_comparison(owner, [(a, {}), (b, {})], title="Tools on both", options={"max_tokens": 40})
    log_in(page, live_server_url, owner, f"/c/{comparison.public_id}/")
    wait_synced(page)
    tools_editor = page.locator("#id_tools + .cm-editor .cm-content")
    format_editor = page.locator("#id_response_format + .cm-editor .cm-content")
    tools_editor.click()
    tools_editor.press_sequentially('[{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]', delay=5)
    format_editor.click()
    format_editor.press_sequentially('{"type": "xml"}', delay=10)
    page.locator("#shared-form").get_by_role("button", name="Save").click()
    # Refused by name, what was typed kept, nothing stored.
    expect(page.locator("#shared-fields .error")).to_contain_text("type must be one of")
    expect(page.locator("#id_response_format + .cm-editor .cm-content")).to_contain_text('"xml"')
    expect(page.locator("#id_tools + .cm-editor .cm-content")).to_contain_text('"get_time"')
    comparison.refresh_from_db()
    assert comparison.tools == [] and comparison.response_format is None

    format_editor = page.locator("#id_response_format + .cm-editor .cm-content")
    format_editor.click()
    page.keyboard.press("Control+a")
    format_editor.press_sequentially('{"type": "json_object"}', delay=10)
    page.locator("#shared-form").get_by_role("button", name="Save").click()
    wait_synced(page)
    expect(page.locator("#shared-fields .error")).to_have_count(0)
    type_and_send(page, "What time is it?")
    answered(page)
    # The page (not reloaded since the send) shows what every pane sent.
    expect(page.locator("#id_tools + .cm-editor .cm-content")).to_contain_text('"get_time"')
    expect(page.locator("#id_response_format + .cm-editor .cm-content")).to_contain_text('"json_object"')
    sent = chat_bodies(sims[0]) + chat_bodies(sims[1])
    assert len(sent) == 2
    for body in sent:
        assert [t["function"]["name"] for t in body["tools"]] == ["get_time"]
        assert body["response_format"] == {"type": "json_object"}
