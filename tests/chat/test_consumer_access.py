"""The conversation socket refuses anonymous users (4401) and users who may not see it (4403)."""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from chat.models import Conversation
from playground.asgi import application
from tests.sockets import Socket

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(user, conversation, origin=b"http://127.0.0.1"):
    """Connect through the full ASGI stack (origin validator, auth, routing) with `user` injected."""
    communicator = Socket(
        application, f"/ws/conversations/{conversation.public_id}/", headers=[(b"origin", origin), (b"host", b"127.0.0.1")]
    )
    communicator.scope["user"] = user  # AuthMiddlewareStack keeps a user already in scope
    connected, code = await communicator.connect()
    return communicator, connected, code


@pytest.fixture
def conversation(owner, team):
    return Conversation.objects.create(owner=owner)


@pytest.fixture
def shared(owner, team):
    return Conversation.objects.create(owner=owner, team=team, visibility=Conversation.Visibility.TEAM)


async def test_owner_connects(owner, conversation):
    communicator, connected, _ = await connect(owner, conversation)
    assert connected
    await communicator.disconnect()


async def test_anonymous_is_refused_with_4401(db, conversation):
    _, connected, code = await connect(AnonymousUser(), conversation)
    assert not connected and code == 4401


async def test_outsider_is_refused_with_4403(outsider, shared):
    _, connected, code = await connect(outsider, shared)
    assert not connected and code == 4403


async def test_teammate_sees_shared_but_not_private(teammate, conversation, shared):
    _, connected, code = await connect(teammate, conversation)
    assert not connected and code == 4403
    communicator, connected, _ = await connect(teammate, shared)
    assert connected
    await communicator.disconnect()


async def test_foreign_origin_is_refused(owner, conversation):
    _, connected, _ = await connect(owner, conversation, origin=b"http://evil.example")
    assert not connected


@pytest.mark.parametrize("origin", [
    b"http://127.0.0.1:8214",  # another port of the same host: the hijack the probe found
    b"https://127.0.0.1",  # another scheme
    b"http://localhost",  # an allowed host name, but not the one this page was served from
    b"null", b"",
])
async def test_only_the_sites_own_origin_may_open_a_socket(owner, conversation, origin):
    _, connected, _ = await connect(owner, conversation, origin=origin)
    assert not connected


async def test_same_origin_with_a_port_and_trusted_origins(owner, conversation, settings):
    from channels.testing import WebsocketCommunicator

    from playground.asgi import application

    async def attempt(origin: bytes, host: bytes, scheme="ws", **extra) -> bool:
        ws = WebsocketCommunicator(application, f"/ws/conversations/{conversation.public_id}/", headers=[(b"origin", origin), (b"host", host), *extra.get("headers", [])])
        ws.scope["user"], ws.scope["scheme"] = owner, scheme
        connected, _ = await ws.connect(timeout=10)
        if connected:
            await ws.disconnect()
        return connected

    assert await attempt(b"http://127.0.0.1:8000", b"127.0.0.1:8000")
    assert not await attempt(b"http://127.0.0.1:8000", b"127.0.0.1:8001")
    assert await attempt(b"https://127.0.0.1:8443", b"127.0.0.1:8443", scheme="wss")
    assert not await attempt(b"http://evil.example", b"evil.example")  # not an allowed host at all
    settings.CSRF_TRUSTED_ORIGINS = ["https://playground.example.com"]
    assert await attempt(b"https://playground.example.com", b"127.0.0.1:8000")
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert await attempt(b"https://127.0.0.1", b"127.0.0.1", headers=[(b"x-forwarded-proto", b"https")])
    assert not await attempt(b"http://127.0.0.1", b"127.0.0.1", headers=[(b"x-forwarded-proto", b"https")])


async def test_group_fragments_reach_every_viewer(owner, teammate, shared):
    from channels.layers import get_channel_layer

    from chat.consumers import group_name

    a, _, _ = await connect(owner, shared)
    b, _, _ = await connect(teammate, shared)
    for viewer in (a, b):  # each connection starts with a snapshot of the page
        assert 'id="messages"' in await viewer.receive_from()
    await get_channel_layer().group_send(group_name(shared.public_id), {"type": "conversation.fragment", "html": "<div id='x'>hi</div>"})
    assert await a.receive_from() == "<div id='x'>hi</div>"
    assert await b.receive_from() == "<div id='x'>hi</div>"
    await a.disconnect()
    await b.disconnect()
    await database_sync_to_async(shared.refresh_from_db)()


async def _watch(user, conversation):
    communicator, connected, _ = await connect(user, conversation)
    assert connected
    assert 'id="messages"' in await communicator.receive_from()
    return communicator


async def _assert_closed_and_emptied(communicator):
    frame = await communicator.receive_from()
    assert "no longer available" in frame
    closing = await communicator.receive_output()
    assert closing == {"type": "websocket.close", "code": 4403}


@pytest.mark.parametrize("how", ["user.groups.remove", "team.user_set.remove", "user.groups.clear", "team.user_set.clear", "team deleted"])
async def test_leaving_the_team_closes_the_sockets_on_its_conversations(owner, teammate, team, shared, how):
    """Membership is edited in the admin (a user's groups) or by scripts (a group's users): either way
    the teammate's open view of a team conversation is emptied and closed; the owner keeps theirs."""
    mate = await _watch(teammate, shared)
    mine = await _watch(owner, shared)

    def leave():
        if how == "user.groups.remove":
            teammate.groups.remove(team)
        elif how == "team.user_set.remove":
            team.user_set.remove(teammate)
        elif how == "user.groups.clear":
            teammate.groups.clear()
        elif how == "team.user_set.clear":
            team.user_set.clear()
        else:
            team.delete()

    await database_sync_to_async(leave)()
    await _assert_closed_and_emptied(mate)
    assert await mine.receive_nothing(timeout=0.3)  # re-checked too when they left, but it is theirs
    await mine.disconnect()


async def test_deactivating_a_user_closes_their_sockets(owner, teammate, shared):
    mate = await _watch(teammate, shared)

    def deactivate():
        teammate.is_active = False
        teammate.save()

    await database_sync_to_async(deactivate)()
    await _assert_closed_and_emptied(mate)


async def test_joining_another_team_keeps_the_socket(teammate, other_team, shared):
    mate = await _watch(teammate, shared)
    await database_sync_to_async(teammate.groups.add)(other_team)
    await database_sync_to_async(teammate.groups.remove)(other_team)  # still in the shared team
    assert await mate.receive_nothing(timeout=0.3)
    await mate.disconnect()


def test_deleting_a_team_makes_its_shared_conversations_private_to_their_owners(owner, team, shared):
    team.delete()
    shared.refresh_from_db()
    assert shared.owner == owner and shared.team is None and shared.visibility == Conversation.Visibility.PRIVATE


def test_a_channel_layer_that_is_down_does_not_fail_the_membership_change(teammate, team, settings, caplog):
    from tests.servers import free_port

    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": f"redis://127.0.0.1:{free_port()}/0", "socket_connect_timeout": 1}]},
    }}
    teammate.groups.remove(team)  # (no transaction here: the re-check is sent at once and fails)
    assert not teammate.groups.filter(pk=team.pk).exists()
    assert "could not tell the open sockets" in caplog.text
