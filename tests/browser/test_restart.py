"""A server stopped (SIGTERM) or killed (SIGKILL) mid-stream never leaves a conversation stuck
"Generating…": after a restart the reloaded page shows the partial answer, stopped or
interrupted, and the user can send again (issue 13.2). The server is the launcher `make run`
uses, in its own process, on the embedded default."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser


class Server:
    """`python -m playground.serve` on a data dir of its own; can be stopped, killed and restarted."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS")}
        self.env.update(PLAYGROUND_DATA_DIR=str(data), PLAYGROUND_ADMIN_PASSWORD="restart-test-pw", SIMULATOR_TOKEN_DELAY="0.15",
                        SIMULATOR_BASE_URL=f"{self.url}/simulator/v1", DJANGO_SETTINGS_MODULE="playground.settings")
        for command in (["migrate", "--noinput"], ["bootstrap"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=self.env, check=True, capture_output=True, timeout=120)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.data / "server.log", "a")
        self.process = subprocess.Popen([sys.executable, "-m", "playground.serve", "--bind", "127.0.0.1", "--port", str(self.port)],
                                        cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and self.process.poll() is None, (self.data / "server.log").read_text()
            time.sleep(0.2)

    def signal(self, sig) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=20)

    def answer(self) -> tuple[str, str, str]:
        """(status, content + reasoning, error) of the newest assistant message, from the database."""
        with sqlite3.connect(self.data / "playground.sqlite3") as db:
            return db.execute(
                "SELECT status, content || reasoning, error FROM chat_message WHERE role = 'assistant' ORDER BY id DESC LIMIT 1"
            ).fetchone()


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.signal(signal.SIGTERM)


def start_a_long_answer(page, server: Server) -> None:
    page.goto(server.url + "/")
    if page.locator("input[name=username]").count():
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "restart-test-pw")
        page.click("button[type=submit]")
    page.locator("form[action$='/conversations/new'] button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]+/"))
    expect(page.locator("#sync-state[data-synced]")).to_be_attached()
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
