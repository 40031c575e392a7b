"""A server stopped (SIGTERM) or killed (SIGKILL) mid-stream never leaves a conversation stuck
"Generating…": after a restart the reloaded page shows the partial answer, stopped or
interrupted, and the user can send again (issue 13.2). The server is the launcher `make run`
uses, in its own process, on the embedded default."""

from __future__ import annotations

import signal
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.launched import Server, new_conversation

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.signal(signal.SIGTERM)


def start_a_long_answer(page, server: Server) -> None:
    new_conversation(page, server)
    page.locator("#composer textarea").press_sequentially("Tell me a long story", delay=10)
    page.keyboard.press("Enter")
    page.wait_for_function("""() => [...document.querySelectorAll('#messages article.message.assistant [id$="-content"], '
                           + '#messages article.message.assistant [id$="-reasoning"]')].some(e => e.textContent.trim().length > 10)""",
                           timeout=15_000)
    time.sleep(1.0)  # a checkpoint (every 2 s) or the final save holds some text


def can_send_again(page) -> None:
    composer = page.locator("#composer textarea")
    expect(composer).to_be_editable(timeout=15_000)
    composer.press_sequentially("Are you back?", delay=10)
    page.keyboard.press("Enter")
    expect(page.locator("#messages article.message.assistant").last).to_have_attribute("data-status", "complete", timeout=60_000)


@pytest.mark.parametrize("sig, status, badge", [(signal.SIGTERM, "cancelled", "stopped"), (signal.SIGKILL, "error", "Interrupted")])
def test_after_a_stop_or_a_crash_mid_stream_the_reloaded_page_goes_on(server, sig, status, badge):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            start_a_long_answer(page, server)
            server.signal(sig)
            saved_status, text, _ = server.answer()
            if sig == signal.SIGTERM:
                assert saved_status == "cancelled" and text  # stopped and saved before the process ended
            server.start()
            page.reload()
            answer = page.locator("#messages article.message.assistant").first
            expect(answer).to_have_attribute("data-status", status)
            expect(answer).to_contain_text(badge)
            expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle")
            saved_status, text, error = server.answer()
            assert saved_status == status and text
            can_send_again(page)
        finally:
            browser.close()
