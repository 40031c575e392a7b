"""Browser tests: Playwright driving Debian's chromium against a live Daphne server.

Daphne runs the real ASGI application (Django, websockets, the simulator mount) in a
forked process on the test database file; tests use `transactional_db` so rows they
create are committed and visible to it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from functools import partial

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"Debian's chromium is not installed ({CHROMIUM}); apt-get install chromium")
    for item in items:
        if "browser" in item.keywords and not os.path.exists(CHROMIUM):
            item.add_marker(skip)


def _setup_server_process() -> None:
    """Runs in the forked server: the test database, and no state inherited from the parent's event loops."""
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import SyncToAsync
    from channels.layers import channel_layers
    from channels.testing.live import set_database_connection
    from django.db import connections

    set_database_connection()
    connections.close_all()
    channel_layers.backends.clear()  # an in-memory layer created by earlier async tests is bound to their loop
    # A fork keeps the executor object but not its worker thread: sync_to_async would wait forever.
    SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)


@pytest.fixture(scope="session")
def live_server_url(django_db_setup, django_db_blocker):
    from channels.testing.live import make_application
    from daphne.testing import DaphneProcess
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    process = DaphneProcess(
        "127.0.0.1", partial(make_application, static_wrapper=ASGIStaticFilesHandler), setup=_setup_server_process
    )
    with django_db_blocker.unblock():  # the forked server inherits this state: it may use the DB
        process.start()
    if not process.ready.wait(timeout=30):
        process.terminate()
        raise RuntimeError("Daphne did not start")
    yield f"http://127.0.0.1:{process.port.value}"
    process.terminate()
    process.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """Per module: the sync API runs an event loop in this thread while it is open, which the
    async tests must not inherit (browser tests are also sorted last, see tests/conftest.py)."""
    from playwright.sync_api import sync_playwright

    # Our ORM calls in browser tests are plain sync code next to Playwright's loop.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@contextlib.contextmanager
def served_simulator(key: str, token_delay: float = 0.005):
    """A simulator in the test process on a real socket, for a module's tests: the app, with `.url`
    its /v1 base URL and `.requests` what it received (to check the bodies actually sent)."""
    from chat.simulator import make_simulator
    from tests.servers import serve_asgi

    app = make_simulator(api_key=key, token_delay=token_delay)
    with serve_asgi(app) as url:
        app.url = url + "/v1"
        yield app


def sim_endpoint(base_url: str, key: str, model: str = "sim/qwen3", **fields):
    """An endpoint on a simulator (the live server's own mount, or one a test runs), its key stored encrypted."""
    from chat.models import ApiKey, Endpoint

    api_key = ApiKey(name=f"key for {model} at {base_url}"[:100])
    api_key.set_secret(key)
    api_key.save()
    return Endpoint.objects.create(name=f"{model} at {base_url}"[:200], base_url=base_url, model_id=model, api_key=api_key, **fields)


def open_conversation(page, live_server_url: str, user, endpoint, options: dict | None = None):
    """A new conversation of `user` on `endpoint`, opened in `page` after logging in through the form."""
    import re

    from playwright.sync_api import expect

    from chat.forms import family_defaults
    from chat.models import Conversation
    from tests.conftest import PASSWORD

    conversation = Conversation.objects.create(
        owner=user, endpoint=endpoint, options={**family_defaults(endpoint), **(options or {})}
    )
    page.goto(f"{live_server_url}/c/{conversation.public_id}/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(str(conversation.public_id)))
    expect(page.locator("#composer textarea")).to_be_editable()
    wait_synced(page)
    return conversation


def wait_synced(page) -> None:
    """The socket is open and has either confirmed the server-rendered list or replaced it."""
    from playwright.sync_api import expect

    expect(page.locator("#sync-state[data-synced]")).to_be_attached()


def until(check, timeout: float = 10.0) -> None:
    """Poll `check` (e.g. a saved row) until it holds: a save that htmx posts in the background."""
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not hold within the time given"
        time.sleep(0.05)


def saved_options(conversation) -> dict:
    conversation.refresh_from_db(fields=["options"])
    return conversation.options
