"""The playground as `make run` starts it: the launcher (python -m playground.serve) in its own
process, on a data dir of its own (the embedded default: SQLite, in-memory layer, simulator)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "launched-test-pw"


class Server:
    """`python -m playground.serve` on a data dir of its own; can be stopped, killed and restarted."""

    def __init__(self, data: Path, token_delay: float = 0.15) -> None:
        self.data, self.port = data, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS")}
        self.env.update(PLAYGROUND_DATA_DIR=str(data), PLAYGROUND_ADMIN_PASSWORD=PASSWORD, SIMULATOR_TOKEN_DELAY=str(token_delay),
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



def new_conversation(page, server: Server) -> None:
    """Log in as the bootstrap admin (if asked) and open a new conversation."""
    page.goto(server.url + "/")
    if page.locator("input[name=username]").count():
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
    page.locator("form[action$='/conversations/new'] button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]+/"))
    expect(page.locator("#sync-state[data-synced]")).to_be_attached()
