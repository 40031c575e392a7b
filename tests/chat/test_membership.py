"""A socket stays in its groups however long it is open (chat.membership): a layer forgets members
`group_expiry` seconds after they joined, which silently cut long-open pages off from live answers
and from the access re-checks that close them."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import override_settings

from chat import membership
from chat.consumers import group_name, user_group_name
from chat.models import Conversation
from playground.asgi import application
from tests.sockets import Socket

EXPIRY = 1  # s


def short_lived_layers():
    """The configured layer with its members expiring after EXPIRY seconds."""
    layers = {"default": dict(settings.CHANNEL_LAYERS["default"])}
    layers["default"]["CONFIG"] = dict(layers["default"].get("CONFIG", {}), group_expiry=EXPIRY)
    return override_settings(CHANNEL_LAYERS=layers)


async def received(layer, channel, timeout=1.0):
    try:
        return await asyncio.wait_for(layer.receive(channel), timeout)
    except asyncio.TimeoutError:
        return None


async def test_a_layer_forgets_members_that_are_not_renewed():
    """The premise (so the next test can fail): without renewal the member is gone."""
    with short_lived_layers():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add("expiry-premise", channel)
        await asyncio.sleep(EXPIRY + 1.5)
        await layer.group_send("expiry-premise", {"type": "x"})
        assert await received(layer, channel) is None
        if hasattr(layer, "flush"):
            await layer.flush()


async def test_renewed_members_keep_receiving_past_the_expiry():
    with short_lived_layers():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        kept = membership.Memberships(layer, channel, ["expiry-a", "expiry-b"])
        await kept.join()
        await asyncio.sleep(EXPIRY * 3)
        for group in ("expiry-a", "expiry-b"):
            await layer.group_send(group, {"type": "x", "group": group})
            assert (await received(layer, channel))["group"] == group
        await kept.leave()
        assert kept.task is None
        await layer.group_send("expiry-a", {"type": "x"})
        assert await received(layer, channel, timeout=0.3) is None  # left: nothing more
        if hasattr(layer, "flush"):
            await layer.flush()


@pytest.mark.django_db(transaction=True)
async def test_a_long_open_page_still_gets_fragments_and_rechecks(owner):
    """A conversation page open longer than the layer's expiry still receives the group's fragments
    and its user's messages (the access re-checks)."""
    with short_lived_layers():
        conversation = await Conversation.objects.acreate(owner=owner)
        communicator = Socket(
            application, f"/ws/conversations/{conversation.public_id}/",
            headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
        )
        communicator.scope["user"] = owner
        connected, _ = await communicator.connect()
        assert connected
        assert 'id="messages"' in await communicator.receive_from()  # the snapshot
        await asyncio.sleep(EXPIRY * 3)
        layer = get_channel_layer()
        await layer.group_send(group_name(conversation.public_id), {"type": "conversation.fragment", "html": "<p id=late>", "sender": ""})
        assert await communicator.receive_from() == "<p id=late>"
        await layer.group_send(user_group_name(owner.pk), {"type": "conversation.fragment", "html": "<p id=user>", "sender": ""})
        assert await communicator.receive_from() == "<p id=user>"
        await communicator.disconnect()
