"""Branches and what-you-see-is-what-is-sent, over the socket and the views, against the simulator.

Each test checks the outcome where it lands: the request body the simulator received, the
message list every open socket was sent, and the rows.
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from chat.models import Conversation, Message
from chat.panel import PanelForm
from tests.chat.test_consumer import (  # noqa: F401  (fixtures)
    completions_of,
    connect,
    conversation,
    endpoint,
    frames_until_idle,
    reset_faults,
    send,
    sim,
)

pytestmark = pytest.mark.django_db(transaction=True)


def panel_data(conversation, user, **changes) -> dict:
    """The settings panel's fields as the browser shows them (strings), with some values changed."""
    form = PanelForm(initial=PanelForm.initial_for(conversation), user=user, conversation=conversation)
    data = {}
    for bound in form:
        value = bound.field.prepare_value(bound.value())
        data[bound.name] = "" if value is None else str(value)
    data.update({k: str(v) for k, v in changes.items()})
    return data


@database_sync_to_async
def shown(conversation) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in Conversation.objects.get(pk=conversation.pk).thread()]


@database_sync_to_async
def thread(conversation) -> list[Message]:
    return Conversation.objects.get(pk=conversation.pk).thread(annotate=True)


def sent_texts(body: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]


async def three_turns(ws) -> None:
    for text in ("Question one", "Question two", "Question three"):
        await send(ws, action="send", content=text)
        await frames_until_idle(ws)


def rows_in(frame: str) -> list[str]:
    """The roles of the messages a message-list frame shows, in order."""
    return re.findall(r'<article id="msg-[0-9a-f-]+" class="message (\w+)', frame)


async def test_regenerate_any_answer_makes_a_sibling_and_every_view_shows_the_branch(owner, teammate, conversation, sim):
    ws = await connect(owner, conversation)
    await three_turns(ws)
    watcher = await connect(teammate, conversation)
    first_answer = (await thread(conversation))[1]
    await send(ws, action="regenerate", message=str(first_answer.public_id))
    frames = await frames_until_idle(ws)
    # The request answered the first question only, and the page was told the whole new branch.
    body = sim.app.requests[-1].json
    assert sent_texts(body) == [("user", "Question one")]
    opening = next(f for f in frames if 'id="messages"' in f)
    assert rows_in(opening) == ["user", "assistant"]
    assert await shown(conversation) == [("user", "Question one"), ("assistant", (await thread(conversation))[1].text)]
    # The teammate's view got the same list, with the branch navigation.
    watched = []
    while not any('data-state="idle"' in f for f in watched):
        watched.append(await watcher.receive_from())
    assert rows_in(next(f for f in watched if 'id="messages"' in f)) == ["user", "assistant"]
    assert 'data-branch="2/2"' in "".join(watched)  # the final row keeps its ◀ 2/2 ▶
    # The next send continues the shown branch: 2 messages, then the new one.
    await send(ws, action="send", content="Question four")
    await frames_until_idle(ws)
    assert [role for role, _ in sent_texts(sim.app.requests[-1].json)] == ["user", "assistant", "user"]
    await watcher.disconnect()
    await ws.disconnect()


async def test_switching_back_shows_the_whole_earlier_continuation_and_the_next_send_follows_it(owner, conversation, sim, client):
    ws = await connect(owner, conversation)
    await three_turns(ws)
    before = await shown(conversation)
    first_user = (await thread(conversation))[0]
    await send(ws, action="edit", message=str(first_user.public_id), content="Question one, edited")
    await frames_until_idle(ws)
    assert await shown(conversation) != before and len(await shown(conversation)) == 2
    edited = (await thread(conversation))[0]
    assert (edited.branch.index, edited.branch.count) == (2, 2)

    def switch_back():
        client.force_login(owner)
        return client.post(reverse("chat:message_show", args=[conversation.public_id, edited.branch.previous.public_id]), HTTP_HX_REQUEST="true")

    response = await database_sync_to_async(switch_back)()
    assert response.status_code == 200 and response.content.decode().count('class="message ') == 6
    list_frame = await ws.receive_from()  # the socket of the page is told too
    assert rows_in(list_frame) == ["user", "assistant"] * 3
    assert await shown(conversation) == before
    await send(ws, action="send", content="Question four")
    await frames_until_idle(ws)
    assert sent_texts(sim.app.requests[-1].json)[::2] == [
        ("user", "Question one"), ("user", "Question two"), ("user", "Question three"), ("user", "Question four")
    ]
    await ws.disconnect()


async def test_remove_moves_the_continuation_up_and_the_next_request_leaves_it_out(owner, conversation, sim, client):
    ws = await connect(owner, conversation)
    await three_turns(ws)
    second_answer = (await thread(conversation))[3]

    def remove():
        client.force_login(owner)
        return client.post(reverse("chat:message_delete", args=[conversation.public_id, second_answer.public_id]), HTTP_HX_REQUEST="true")

    assert (await database_sync_to_async(remove)()).status_code == 200
    assert rows_in(await ws.receive_from()) == ["user", "assistant", "user", "user", "assistant"]
    await send(ws, action="run")
    await frames_until_idle(ws)
    roles = [role for role, _ in sent_texts(sim.app.requests[-1].json)]
    assert roles == ["user", "assistant", "user", "user", "assistant"]
    assert second_answer.text not in json.dumps(sim.app.requests[-1].json)
    await ws.disconnect()


async def test_the_request_is_built_from_the_settings_the_page_shows(owner, conversation, sim):
    ws = await connect(owner, conversation)
    settings = await database_sync_to_async(panel_data)(conversation, owner, top_p="0.6", system_prompt="Be brief.")
    await send(ws, action="send", content="Hello", settings=urlencode(settings))
    await frames_until_idle(ws)
    body = sim.app.requests[-1].json
    assert body["top_p"] == 0.6 and body["messages"][0] == {"role": "system", "content": "Be brief."}
    stored = await Conversation.objects.aget(pk=conversation.pk)
    assert stored.options["top_p"] == 0.6 and stored.system_prompt == "Be brief."  # what is shown is stored
    await ws.disconnect()


async def test_an_invalid_setting_blocks_the_send_names_the_field_and_keeps_everything(owner, conversation, sim):
    ws = await connect(owner, conversation)
    settings = await database_sync_to_async(panel_data)(conversation, owner, top_p="60")
    await send(ws, action="send", content="Hello", settings=urlencode(settings))
    frame = await ws.receive_from()
    assert 'id="frame-error"' in frame and "top_p" in frame and "Not sent" in frame
    assert not sim.app.requests  # nothing reached the upstream
    assert not await Message.objects.filter(conversation=conversation).aexists()
    assert (await Conversation.objects.aget(pk=conversation.pk)).options["top_p"] == 0.8  # not stored either
    await ws.disconnect()


async def test_a_continuation_after_tool_results_does_not_force_the_tool_again(owner, conversation, sim, client):
    from chat.presets import TOOL_TEMPLATES

    tool = TOOL_TEMPLATES["get_current_weather"]
    name = tool["function"]["name"]
    conversation.tools = [tool]
    conversation.options = {**conversation.options, "tool_choice": "required"}
    await conversation.asave()
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Weather in Oslo?")
    await frames_until_idle(ws)
    call_message = (await thread(conversation))[-1]
    call = call_message.tool_calls[0]
    assert call["function"]["name"] == name

    def add_result():
        client.force_login(owner)
        url = reverse("chat:tool_result", args=[conversation.public_id, call_message.public_id])
        return client.post(url, {"tool_call_id": call["id"], "content": "21 degrees"}, HTTP_HX_REQUEST="true")

    page = (await database_sync_to_async(add_result)()).content.decode()
    assert "the settings say required" in page  # the Continue form says what it will send
    await ws.receive_from()  # the new list
    await send(ws, action="run")
    await frames_until_idle(ws)
    assert sim.app.requests[-1].json["tool_choice"] == "auto"
    answer = (await thread(conversation))[-1]
    assert answer.role == "assistant" and not answer.tool_calls and "21" in answer.text
    # Regenerating that answer is a continuation too; "as in the settings" keeps required on purpose.
    await send(ws, action="regenerate", message=str(answer.public_id))
    await frames_until_idle(ws)
    assert sim.app.requests[-1].json["tool_choice"] == "auto"
    await send(ws, action="regenerate", message=str((await thread(conversation))[-1].public_id), tool_choice="settings")
    await frames_until_idle(ws)
    assert sim.app.requests[-1].json["tool_choice"] == "required"
    await ws.disconnect()


async def test_the_next_request_preview_is_the_body_then_sent(owner, conversation, sim, client):
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="First")
    await frames_until_idle(ws)
    settings = await database_sync_to_async(panel_data)(conversation, owner, temperature="0.3", max_tokens="50")

    def preview():
        client.force_login(owner)
        url = reverse("chat:conversation_next_request", args=[conversation.public_id])
        return client.post(url, {**settings, "content": "Second"}, HTTP_HX_REQUEST="true").content.decode()

    page = await database_sync_to_async(preview)()
    shown = re.search(r'id="next-request-json">(.*?)</pre>', page, re.S).group(1)
    shown_json = json.loads(html.unescape(re.sub(r"<[^>]+>", "", shown)))  # (Pygments spans around the text)
    await send(ws, action="send", content="Second", settings=urlencode(settings))
    await frames_until_idle(ws)
    assert sim.app.requests[-1].json == shown_json
    assert shown_json["temperature"] == 0.3 and shown_json["messages"][-1] == {"role": "user", "content": "Second"}
    await ws.disconnect()


async def test_fork_export_and_next_request_follow_the_shown_branch(owner, conversation, sim, client):
    from chat import sharing

    ws = await connect(owner, conversation)
    await three_turns(ws)
    second_answer = (await thread(conversation))[3]
    await send(ws, action="regenerate", message=str(second_answer.public_id))
    await frames_until_idle(ws)
    await ws.disconnect()

    @database_sync_to_async
    def check():
        source = Conversation.objects.get(pk=conversation.pk)
        shown_ids = [m.pk for m in source.thread()]
        assert len(shown_ids) == 4 and second_answer.pk not in shown_ids
        exported = json.loads(sharing.export_json(source))
        assert exported["messages"] == source.api_messages()
        assert "Question three" not in json.dumps(exported) and "Question three" not in sharing.export_markdown(source)
        copy = sharing.fork(source, user=owner, endpoint=source.endpoint, messages=sharing.forkable_messages(source), upto=None)
        copied = copy.thread()
        assert [(m.role, m.content) for m in copied] == [(m.role, m.content) for m in source.thread()]
        assert copied[0].parent_id is None and all(b.parent_id == a.pk for a, b in zip(copied, copied[1:]))

    await check()


def test_existing_rows_are_linked_into_a_tree(owner, endpoint):
    """Migration 0005 on rows written before branches: each follows the shown message one up."""
    import importlib

    from django.apps import apps

    link_parents = importlib.import_module("chat.migrations.0005_message_parent").link_parents
    c = Conversation.objects.create(owner=owner, endpoint=endpoint)
    rows = Message.objects.bulk_create([  # bulk_create: no parents, as before the migration
        Message(conversation=c, position=0, role="user", content="q"),
        Message(conversation=c, position=1, role="assistant", content="old answer", is_active=False),
        Message(conversation=c, position=1, role="assistant", content="new answer"),
        Message(conversation=c, position=2, role="user", content="follow-up"),
    ])
    link_parents(apps, None)
    assert [m.content for m in c.thread()] == ["q", "new answer", "follow-up"]
    old = Message.objects.get(pk=rows[1].pk)
    assert old.parent_id == rows[0].pk  # the earlier answer is a sibling, reachable with ◀
    assert c.thread(annotate=True)[1].branch.count == 2


async def test_an_endpoint_picked_in_the_panel_is_used_by_the_same_send(owner, conversation, sim):
    from tests.chat.test_consumer import make_endpoint

    other = await database_sync_to_async(make_endpoint)(sim.url, "sim/llama-3.3")
    ws = await connect(owner, conversation)
    settings = await database_sync_to_async(panel_data)(conversation, owner, endpoint=other.pk, thinking="")
    await send(ws, action="send", content="Hello", settings=urlencode(settings))
    frames = await frames_until_idle(ws)
    assert sim.app.requests[-1].json["model"] == "sim/llama-3.3"
    assert 'data-status="complete"' in frames[-1]  # the new endpoint's key was used
    assert (await Conversation.objects.aget(pk=conversation.pk)).endpoint_id == other.pk
    await ws.disconnect()
