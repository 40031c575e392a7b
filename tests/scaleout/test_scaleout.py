"""Scale-out, for real (issue 14): two Daphne processes (the launcher) behind HAProxy, on PostgreSQL
and Redis, started by scripts/scaleout.py on the test database. Sockets go through HAProxy (the
minimal client of scripts/wsclient.py); HAProxy names the process that took each one (X-Served-By,
added by the script's local configuration only), so a test can put a page on either process.

- a viewer on one process sees a run streamed by the other, from the opening to the final message;
- Stop from either process cancels it at once (also after a reload landed on the other process);
- access changes reach sockets on both processes: unsharing (a POST through HAProxy) and a user
  removed from the team (in this process, as the admin does) close the teammate's sockets there.

Marked `scaleout`; .ci/run runs them after the PostgreSQL + Redis step. Skipped, with the reason,
without PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import time
from urllib.parse import quote

import httpx
import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from chat.models import Completion, Conversation, Message
from chat.simulator import make_simulator
from scripts.scaleout import Cluster
from scripts.wsclient import WebSocket, WSClosed
from tests.chat.test_consumer import make_endpoint
from tests.servers import FaultInjector, serve_asgi

KEY = "sim-scaleout-key-1234"
WAIT = 20  # s: a generous harness wait (a busy CI machine); product bounds are asserted explicitly

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and settings.REDIS_URL),
        reason="the scale-out tests need DATABASE_URL=postgres://… and REDIS_URL (as in .ci/run)",
    ),
]


@pytest.fixture(scope="module")
def sim():
    """The upstream, in this process (each answer: reasoning, then 40 tokens of text, 30 ms apart)."""
    injector = FaultInjector(make_simulator(api_key=KEY, token_delay=0.0))
    injector.headers = {"x-sim-delay-token": "0.03"}
    with serve_asgi(injector) as url:
        injector.url = url + "/v1"
        yield injector


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker, tmp_path_factory):
    """Two processes and HAProxy on the test database (started once for the module)."""
    from django.db import connection

    db = connection.settings_dict
    url = (f"postgres://{quote(db['USER'] or '')}:{quote(db['PASSWORD'] or '')}@{db['HOST'] or '127.0.0.1'}:"
           f"{db['PORT'] or 5432}/{db['NAME']}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    env.update(
        DATABASE_URL=url, REDIS_URL=settings.REDIS_URL, DEBUG="False", SECRET_KEY=settings.SECRET_KEY,
        FIELD_ENCRYPTION_KEYS=",".join(settings.FIELD_ENCRYPTION_KEYS), SIMULATOR_ENABLED="False",
        SESSION_COOKIE_SECURE="False", CSRF_COOKIE_SECURE="False", SECURE_SSL_REDIRECT="False",
        PLAYGROUND_DATA_DIR=str(tmp_path_factory.mktemp("scaleout-data")), LOG_LEVEL="WARNING", RUN_GRACE_SECONDS="20",
    )
    with Cluster(env, processes=2, served_by=True, log_dir=tmp_path_factory.mktemp("scaleout-logs")) as running:
        yield running
        running.check()  # neither process died during the tests


@pytest.fixture
def conversation(owner, team, sim):
    endpoint = make_endpoint(sim.url, key=KEY)
    return Conversation.objects.create(
        owner=owner, team=team, visibility="team", endpoint=endpoint,
        options={"stream": True, "max_tokens": 60, "ignore_eos": True},
    )


def session_cookie(user) -> str:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


class Page:
    """One socket through HAProxy, on the process HAProxy gave it."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws, self.server = ws, ws.headers.get("x-served-by", "")

    def send(self, **frame) -> None:
        self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = WAIT) -> str:
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def until(self, needle: str, timeout: float = WAIT) -> list[str]:
        frames = []
        while not frames or needle not in frames[-1]:
            frames.append(await self.recv(timeout))
        return frames

    async def until_idle(self, timeout: float = WAIT) -> list[str]:
        return await self.until('data-state="idle"', timeout)


async def open_on(cluster: Cluster, server: str, cookie: str, conversation: Conversation) -> Page:
    """A page of the conversation whose socket HAProxy sent to `server` (leastconn: the other process
    gets the next one when this one already holds more; a few tries at most)."""
    extra = []
    try:
        for _ in range(20):
            ws = await WebSocket.connect(cluster.host, cluster.port, f"/ws/conversations/{conversation.public_id}/", cookie)
            page = Page(ws)
            if page.server == server:
                assert 'id="messages"' in await page.recv()  # the snapshot
                return page
            extra.append(ws)
        raise AssertionError(f"HAProxy never sent a socket to {server}")
    finally:
        for ws in extra:
            await ws.close()


def appended(frames: list[str], part: str = "content") -> str:
    pattern = rf'<div id="msg-[0-9a-f-]+-{part}" hx-swap-oob="beforeend">(.*?)</div>'
    return html.unescape("".join(m for f in frames for m in re.findall(pattern, f, flags=re.S)))


@database_sync_to_async
def reply_of(conversation) -> Message:
    return conversation.messages.filter(role="assistant").order_by("-position", "-created_at").first()


@database_sync_to_async
def completion_of(conversation) -> Completion:
    return conversation.completions.get()


def pid_of(cluster: Cluster, server: str) -> int:
    return next(b.process.pid for b in cluster.backends if b.name == server)


async def test_a_viewer_on_one_process_sees_a_run_streamed_by_the_other(cluster, owner, teammate, conversation, sim):
    mine = await open_on(cluster, "web1", await database_sync_to_async(session_cookie)(owner), conversation)
    theirs = await open_on(cluster, "web2", await database_sync_to_async(session_cookie)(teammate), conversation)
    mine.send(action="send", content="Tell me a story")
    streamed = await mine.until_idle()
    seen = await theirs.until_idle()
    reply = await reply_of(conversation)
    completion = await completion_of(conversation)
    assert reply.status == "complete" and completion.worker.split(":")[1] == str(pid_of(cluster, "web1"))
    assert "Tell me a story" in seen[0] and 'data-status="streaming"' in seen[0]  # the opening, through Redis
    assert appended(seen) and appended(seen) == appended(streamed)  # every fragment, in order
    assert f'id="msg-{reply.public_id}"' in seen[-1] and 'data-status="complete"' in seen[-1]
    await mine.ws.close()
    await theirs.ws.close()


async def stop_and_check(stopping: Page, pages: list[Page], conversation, sim) -> None:
    """Stop from `stopping`: the upstream request closes at once, every page shows the stopped answer."""
    disconnects = len(sim.app.disconnects)
    stopped_at = time.monotonic()
    stopping.send(action="stop")
    deadline = time.monotonic() + 5
    while len(sim.app.disconnects) == disconnects:
        assert time.monotonic() < deadline, "the upstream request was never closed"
        await asyncio.sleep(0.01)
    closed_after = time.monotonic() - stopped_at
    for page in pages:
        frames = await page.until_idle()
        assert 'data-status="cancelled"' in frames[-1] and "stopped" in frames[-1]
    assert closed_after < 1.0, f"the upstream request closed {closed_after:.2f} s after Stop"
    reply = await reply_of(conversation)
    assert reply.status == "cancelled" and reply.content  # the partial answer is kept
    assert (await completion_of(conversation)).status == "cancelled"


@pytest.mark.parametrize("stop_on", ["web1", "web2"])
async def test_stop_from_either_process_cancels_the_run(cluster, owner, conversation, sim, stop_on):
    cookie = await database_sync_to_async(session_cookie)(owner)
    tabs = {"web1": await open_on(cluster, "web1", cookie, conversation)}
    tabs["web2"] = await open_on(cluster, "web2", cookie, conversation)  # the owner's other tab
    tabs["web1"].send(action="send", content="Tell me a long story")
    await tabs["web2"].until('-content" hx-swap-oob="beforeend"')  # streaming, seen on the other process
    await stop_and_check(tabs[stop_on], list(tabs.values()), conversation, sim)
    for tab in tabs.values():
        await tab.ws.close()


async def test_a_reload_on_the_other_process_reattaches_and_stops_the_run(cluster, owner, conversation, sim):
    cookie = await database_sync_to_async(session_cookie)(owner)
    first = await open_on(cluster, "web1", cookie, conversation)
    first.send(action="send", content="Tell me a long story")
    await first.until('-reasoning" hx-swap-oob="beforeend"')
    await first.ws.close()  # the reload: the run goes on in web1, detached
    await asyncio.sleep(0.3)
    reloaded = await open_on(cluster, "web2", cookie, conversation)
    frames = await reloaded.until('-content" hx-swap-oob="beforeend"')  # live again, from the other process
    reply = await reply_of(conversation)
    assert any(f'id="msg-{reply.public_id}"' in f and 'hx-swap-oob="outerHTML"' in f for f in frames)  # the snapshot
    await stop_and_check(reloaded, [reloaded], conversation, sim)
    await reloaded.ws.close()


async def closed_with_nothing_shown(page: Page) -> None:
    frame = await page.recv()
    assert "no longer available" in frame
    with pytest.raises(WSClosed) as closed:
        await page.recv()
    assert closed.value.code == 4403


async def test_unsharing_closes_the_teammates_sockets_on_both_processes(cluster, owner, teammate, conversation):
    owner_cookie = await database_sync_to_async(session_cookie)(owner)
    mate_cookie = await database_sync_to_async(session_cookie)(teammate)
    mine = await open_on(cluster, "web1", owner_cookie, conversation)
    theirs = [await open_on(cluster, server, mate_cookie, conversation) for server in ("web1", "web2")]
    page_url = f"{cluster.url}/c/{conversation.public_id}/"
    async with httpx.AsyncClient(trust_env=False, headers={"Cookie": owner_cookie}) as client:
        page = await client.get(page_url)
        assert page.status_code == 200
        token = page.cookies.get(settings.CSRF_COOKIE_NAME)
        response = await client.post(
            f"{page_url}visibility", data={"share": ""},
            headers={"X-CSRFToken": token, "Origin": cluster.url, "Referer": page_url, "HX-Request": "true",
                     "Cookie": f"{owner_cookie}; {settings.CSRF_COOKIE_NAME}={token}"},
        )
        assert response.status_code == 200 and "Private" in response.text, response.text[:300]  # the header, swapped
    for page in theirs:
        await closed_with_nothing_shown(page)
    with pytest.raises(asyncio.TimeoutError):
        await mine.recv(timeout=0.5)  # the owner's page stays open
    await mine.ws.close()


async def test_leaving_the_team_closes_the_sockets_on_both_processes(cluster, teammate, team, conversation):
    mate_cookie = await database_sync_to_async(session_cookie)(teammate)
    theirs = [await open_on(cluster, server, mate_cookie, conversation) for server in ("web1", "web2")]
    await database_sync_to_async(teammate.groups.remove)(team)  # as the admin does, from a third process
    for page in theirs:
        await closed_with_nothing_shown(page)
