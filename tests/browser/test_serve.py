"""The launcher `make run` uses (python -m playground.serve), as a user meets it: its own
process on the embedded default, uvloop and the aiohttp transport, a browser that logs in,
sends, reads the answer, and a large paste that is refused with a message, not a dead socket."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS")}
    env.update(PLAYGROUND_DATA_DIR=str(data), PLAYGROUND_ADMIN_PASSWORD="launcher-test-pw", SIMULATOR_TOKEN_DELAY="0.005",
               SIMULATOR_BASE_URL=f"http://127.0.0.1:{port}/simulator/v1", DJANGO_SETTINGS_MODULE="playground.settings")
    for command in (["migrate", "--noinput"], ["bootstrap"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    log = open(data / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "playground.serve", "--bind", "127.0.0.1", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and server.poll() is None, (data / "server.log").read_text()
        time.sleep(0.2)
    yield url, data / "server.log"
    server.terminate()
    server.wait(timeout=10)
    log.close()


def test_the_launched_server_streams_an_answer_on_uvloop_and_answers_a_huge_frame(served):
    from playwright.sync_api import sync_playwright

    url, log = served
    assert "Daphne on uvloop" in log.read_text()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(url + "/")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", "launcher-test-pw")
            page.click("button[type=submit]")
            page.locator("form[action$='/conversations/new'] button[type=submit]").first.click()
            page.wait_for_url(re.compile(r"/c/[0-9a-f-]+/"))
            expect(page.locator("#sync-state[data-synced]")).to_be_attached()
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
