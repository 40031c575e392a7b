"""The playground in Chromium against a live Daphne: stream, stop, errors, reload mid-stream (reattaches)."""

from __future__ import annotations

import pytest
from django.conf import settings
from playwright.sync_api import expect

from chat.models import Message
from chat.simulator import make_simulator
from tests.browser.conftest import open_conversation, sim_endpoint, wait_synced
from tests.servers import FaultInjector, serve_asgi

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def faulty_sim():
    """A simulator in the test process that the live server reaches over a socket; faults per test."""
    injector = FaultInjector(make_simulator(api_key="browser-sim-key", token_delay=0.03))
    with serve_asgi(injector) as url:
        injector.url = url + "/v1"
        yield injector


def test_reasoning_then_answer_stream_in_and_render(live_server_url, page, owner):
    endpoint = sim_endpoint(live_server_url + "/simulator/v1", settings.SIMULATOR_API_KEY)
    conversation = open_conversation(page, live_server_url, owner, endpoint)
    page.fill("#composer textarea", "Hello! Use **bold** please.")
    page.keyboard.press("Enter")  # Enter sends

    expect(page.locator("#stream-status")).to_have_attribute("data-state", "streaming")
    expect(page.locator("#composer textarea")).to_be_disabled()
    thinking = page.locator(".message.assistant details.thinking")
    expect(thinking).to_have_attribute("open", "")  # reasoning streams live, open
    expect(page.locator(".message.assistant .reasoning")).not_to_be_empty()
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle", timeout=20_000)

    final = page.locator(".message.assistant")
    expect(final).to_have_attribute("data-status", "complete")
    expect(final.locator("details.thinking")).not_to_have_attribute("open", "")  # folded once answered
    expect(final.locator(".content.markdown strong")).to_have_text("bold")
    expect(final.locator(".metrics")).to_contain_text("TTFT")
    expect(final.locator(".metrics")).to_contain_text("tok/s")
    expect(page.locator("#composer textarea")).to_be_enabled()
    reply = Message.objects.get(conversation=conversation, role="assistant")
    assert reply.status == "complete" and reply.reasoning and "bold" in reply.content


def test_shift_enter_is_a_newline(live_server_url, page, owner):
    endpoint = sim_endpoint(live_server_url + "/simulator/v1", settings.SIMULATOR_API_KEY)
    conversation = open_conversation(page, live_server_url, owner, endpoint)
    page.fill("#composer textarea", "line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert page.input_value("#composer textarea") == "line one\nline two"
    assert not Message.objects.filter(conversation=conversation).exists()


def test_stop_mid_stream_keeps_the_partial_answer(live_server_url, page, owner, faulty_sim):
    faulty_sim.headers = {"x-sim-delay-token": "0.08"}
    endpoint = sim_endpoint(faulty_sim.url, "browser-sim-key")
    conversation = open_conversation(page, live_server_url, owner, endpoint)
    page.fill("#composer textarea", "Tell me a long story")
    page.click("#send-button")
    expect(page.locator(".message.assistant .reasoning")).not_to_be_empty()
    page.keyboard.press("Escape")  # Esc stops
    reply = page.locator(".message.assistant")
    expect(reply).to_have_attribute("data-status", "cancelled")
    expect(reply.locator(".badge.warn")).to_have_text("stopped")
    expect(page.locator("#composer textarea")).to_be_enabled()
    saved = Message.objects.get(conversation=conversation, role="assistant")
    assert saved.status == "cancelled" and saved.reasoning


def test_an_upstream_error_is_shown_inline_and_the_next_message_works(live_server_url, page, owner, faulty_sim):
    faulty_sim.headers = {"x-sim-status": "500"}
    endpoint = sim_endpoint(faulty_sim.url, "browser-sim-key")
    open_conversation(page, live_server_url, owner, endpoint)
    page.fill("#composer textarea", "Hello")
    page.click("#send-button")
    alert = page.locator(".message.assistant .upstream-error")
    expect(alert).to_contain_text("HTTP 500")
    expect(alert).not_to_contain_text("browser-sim-key")
    faulty_sim.headers = {}
    page.fill("#composer textarea", "Hello again")
    page.click("#send-button")
    expect(page.locator(".message.assistant").last).to_have_attribute("data-status", "complete", timeout=20_000)


def test_reload_mid_stream_shows_the_user_message_and_the_partial_answer(live_server_url, page, owner, faulty_sim):
    """The reloaded page shows the answer so far, still streaming (the run outlives the closed page for
    RUN_GRACE_SECONDS), and Esc there still stops it at once."""
    faulty_sim.headers = {"x-sim-delay-token": "0.08"}
    endpoint = sim_endpoint(faulty_sim.url, "browser-sim-key")
    conversation = open_conversation(page, live_server_url, owner, endpoint)
    page.fill("#composer textarea", "Tell me a long story")
    page.click("#send-button")
    expect(page.locator(".message.assistant .reasoning")).not_to_be_empty()
    page.wait_for_timeout(500)
    page.reload()
    expect(page.locator(".message.user")).to_contain_text("Tell me a long story")
    reply = page.locator(".message.assistant")
    expect(reply).to_have_attribute("data-status", "streaming")  # nothing lost, and not stopped
    expect(reply.locator(".reasoning")).not_to_be_empty()
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "streaming")
    page.keyboard.press("Escape")  # Esc stops the run the closed page started
    expect(reply).to_have_attribute("data-status", "cancelled")
    expect(reply.locator(".badge.warn")).to_have_text("stopped")
    expect(page.locator("#composer textarea")).to_be_enabled()
    saved = Message.objects.get(conversation=conversation, role="assistant")
    assert saved.reasoning and saved.status == "cancelled"


def completions_sent(sim) -> list:
    return [r for r in sim.app.requests if r.path.endswith("/chat/completions")]


def test_a_reload_mid_stream_reattaches_to_the_running_answer(live_server_url, page, owner, faulty_sim):
    """The answer keeps streaming into the reloaded page and ends complete there, without another reload."""
    faulty_sim.headers = {"x-sim-delay-token": "0.05"}
    endpoint = sim_endpoint(faulty_sim.url, "browser-sim-key")
    # ~120 tokens at 50 ms: about 6 s, most of it after the reload
    conversation = open_conversation(page, live_server_url, owner, endpoint, options={"max_tokens": 120, "ignore_eos": True})
    # (the page also asks the server for its token count and load: only completions count here)
    requests, disconnects = len(completions_sent(faulty_sim)), len(faulty_sim.app.disconnects)
    page.fill("#composer textarea", "Tell me a long story")
    page.click("#send-button")
    expect(page.locator(".message.assistant .reasoning")).not_to_be_empty()
    page.wait_for_timeout(300)
    page.reload()
    reply = page.locator(".message.assistant")
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "streaming")
    expect(reply.locator(".content")).not_to_be_empty()  # the answer arrives live...
    shown = len(reply.locator(".content").text_content())
    page.wait_for_function(  # ...and keeps growing
        "n => document.querySelector('.message.assistant .content').textContent.length > n + 20", arg=shown
    )
    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle")
    expect(reply.locator(".metrics")).to_contain_text("finish: length")
    expect(page.locator("#composer textarea")).to_be_enabled()
    saved = Message.objects.get(conversation=conversation, role="assistant")
    assert saved.status == "complete" and saved.finish_reason == "length" and saved.content
    assert saved.completion.status == "complete" and saved.completion.usage["completion_tokens"] == 120
    assert len(completions_sent(faulty_sim)) == requests + 1  # the same request, never sent again
    assert len(faulty_sim.app.disconnects) == disconnects  # nor cut


def test_a_page_load_renders_the_messages_once(live_server_url, page, owner):
    """The socket confirms the list the page already shows instead of sending it again, so nothing
    the reader focused or scrolled to is replaced (a page that fell behind: tests/chat/test_consumer.py)."""
    endpoint = sim_endpoint(live_server_url + "/simulator/v1", settings.SIMULATOR_API_KEY)
    conversation = open_conversation(page, live_server_url, owner, endpoint)
    Message.objects.create(conversation=conversation, position=0, role="user", content="Already here")
    Message.objects.create(conversation=conversation, position=1, role="assistant", content="And **answered**")
    page.add_init_script("""
        window.__frames = [];
        document.addEventListener("htmx:wsBeforeMessage", (e) => window.__frames.push(e.detail.message));
    """)
    page.reload()
    wait_synced(page)
    expect(page.locator(".message.assistant")).to_contain_text("And answered")
    frames = page.evaluate("window.__frames")
    assert frames and not any('id="messages"' in f for f in frames)

