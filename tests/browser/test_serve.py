"""The launcher `make run` uses (python -m playground.serve), as a user meets it: its own
process on the embedded default, uvloop and the aiohttp transport, a browser that logs in,
sends, reads the answer, and a large paste that is refused with a message, not a dead socket."""

from __future__ import annotations

import signal

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.launched import Server, new_conversation

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("serve"), token_delay=0.005)
    server.start()
    yield server
    server.signal(signal.SIGTERM)


def test_the_launched_server_streams_an_answer_on_uvloop_and_answers_a_huge_frame(server):
    assert "Daphne on uvloop" in (server.data / "server.log").read_text()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            new_conversation(page, server)
            page.locator("#composer textarea").press_sequentially("Hello from the launcher", delay=10)
            page.keyboard.press("Enter")
            answer = page.locator("#messages article.message.assistant").last
            expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
            expect(answer).to_contain_text("simulated")
            # 10 MB in one frame: the server passes it to the consumer, which says why it refuses.
            page.evaluate("""() => {
                const ws = new WebSocket(location.href.replace(/^http/, "ws").replace(/\\/c\\//, "/ws/conversations/"));
                window.__answers = [];
                ws.onmessage = (e) => window.__answers.push(e.data);
                ws.onopen = () => ws.send(JSON.stringify({action: "send", content: "x".repeat(10 * 1024 * 1024)}));
            }""")
            page.wait_for_function("() => window.__answers.some(a => a.includes('too large to send'))", timeout=20_000)
        finally:
            browser.close()
