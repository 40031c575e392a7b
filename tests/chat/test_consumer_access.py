"""The conversation socket refuses anonymous users (4401) and users who may not see it (4403)."""

import pytest
from channels.db import database_sync_to_async
from tests.sockets import Socket
from django.contrib.auth.models import AnonymousUser

from chat.models import Conversation
from playground.asgi import application

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
