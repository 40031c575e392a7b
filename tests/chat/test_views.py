"""Pages and htmx partials: who sees what, new conversations with family defaults, the settings panel."""

import json

import pytest
from django.urls import reverse

from chat.panel import PanelForm
from chat.forms import family_defaults
from chat.models import Conversation, Endpoint, Message


@pytest.fixture
def qwen(db) -> Endpoint:
    return Endpoint.objects.create(name="qwen", base_url="http://127.0.0.1:9/v1", model_id="Qwen/Qwen3-8B")


@pytest.fixture
def llama(db) -> Endpoint:
    return Endpoint.objects.create(name="llama", base_url="http://127.0.0.1:9/v1", model_id="meta-llama/Llama-3.3-70B-Instruct")


@pytest.fixture
def conversation(owner, qwen) -> Conversation:
    return Conversation.objects.create(owner=owner, endpoint=qwen, options=family_defaults(qwen), title="Weather chat")


def test_new_conversation_applies_the_family_defaults(client, owner, qwen):
    client.force_login(owner)
    response = client.post(reverse("chat:conversation_new"), {"endpoint": qwen.pk})
    conversation = Conversation.objects.get(owner=owner)
    assert response.status_code == 302 and str(conversation.public_id) in response["Location"]
    assert conversation.options["temperature"] == 0.7 and conversation.options["top_k"] == 20
    assert conversation.options["chat_template_kwargs"] == {"enable_thinking": True}
    assert conversation.options["stream"] is True and conversation.options["stream_options"] == {"include_usage": True}


def test_new_conversation_refuses_an_endpoint_of_another_team(client, owner, other_team, qwen):
    qwen.teams.add(other_team)
    client.force_login(owner)
    response = client.post(reverse("chat:conversation_new"), {"endpoint": qwen.pk})
    assert response.status_code == 400 and not Conversation.objects.exists()


def test_list_shows_mine_newest_first(client, owner, teammate, qwen):
    for user, title in ((owner, "older"), (owner, "newer"), (teammate, "not mine")):
        said = Conversation.objects.create(owner=user, endpoint=qwen, title=title)
        Message.objects.create(conversation=said, position=0, role="user", content="Hello")  # (the list shows used ones)
    client.force_login(owner)
    page = client.get("/").content.decode()
    listed = page.split('id="conversation-list"', 1)[1].split("</ul>", 1)[0]
    assert listed.index("newer") < listed.index("older") and "not mine" not in page


def test_owner_sees_the_page_with_composer_and_socket(client, owner, conversation):
    client.force_login(owner)
    page = client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    assert f'ws-connect="/ws/conversations/{conversation.public_id}/?v=' in page  # (the list's version)
    assert 'id="composer"' in page and "ws-send" in page and 'id="settings-panel"' in page
    assert "enable_thinking" in page  # the Qwen thinking toggle


def test_teammate_reads_shared_conversation_without_composer(client, owner, teammate, team, conversation):
    conversation.team, conversation.visibility = team, "team"
    conversation.save()
    client.force_login(teammate)
    page = client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    assert "Weather chat" in page and 'id="composer"' not in page and "Read-only" in page


def test_outsiders_and_private_conversations_get_404(client, teammate, outsider, conversation):
    for user in (teammate, outsider):
        client.force_login(user)
        assert client.get(reverse("chat:conversation", args=[conversation.public_id])).status_code == 404
        assert client.post(reverse("chat:conversation_settings", args=[conversation.public_id]), {}).status_code == 404


def panel_post(conversation, **changes) -> dict:
    """The panel's POST data as the browser sends it, from the stored values, with changes."""
    initial = PanelForm.initial_for(conversation)
    data = {}
    for name, value in initial.items():
        if value is None:
            data[name] = ""
        elif isinstance(value, (dict, list)):
            data[name] = json.dumps(value)
        else:
            data[name] = value
    data.update(changes)
    return data


def test_settings_panel_saves_through_htmx(client, owner, conversation, llama):
    client.force_login(owner)
    url = reverse("chat:conversation_settings", args=[conversation.public_id])
    response = client.post(url, panel_post(conversation, system_prompt="Be brief.", temperature="0.2", max_tokens="",
                                           thinking="off"), headers={"HX-Request": "true"})
    assert response.status_code == 200 and 'id="settings-panel"' in response.content.decode()
    assert "<html" not in response.content.decode()  # just the partial
    conversation.refresh_from_db()
    assert conversation.system_prompt == "Be brief."
    assert conversation.options["temperature"] == 0.2
    assert "max_tokens" not in conversation.options  # blank = unset, not sent
    assert conversation.options["chat_template_kwargs"] == {"enable_thinking": False}
    # switching to a family without a toggle drops enable_thinking; stream off drops stream_options
    client.post(url, panel_post(conversation, endpoint=llama.pk, thinking="on", stream="false",
                                stream_options__include_usage=""))
    conversation.refresh_from_db()
    assert "chat_template_kwargs" not in conversation.options and "stream_options" not in conversation.options
    assert conversation.options["stream"] is False


def test_settings_panel_rejects_out_of_range_values_and_keeps_the_old_ones(client, owner, conversation):
    client.force_login(owner)
    url = reverse("chat:conversation_settings", args=[conversation.public_id])
    response = client.post(url, panel_post(conversation, temperature="-1", max_tokens="abc"))
    page = response.content.decode()
    assert response.status_code == 200 and 'class="error"' in page and "Not saved" in page
    assert "Enter a whole number" in page
    conversation.refresh_from_db()
    assert conversation.options["temperature"] == 0.7


def test_page_escapes_untrusted_text(client, owner, conversation):
    Message.objects.create(conversation=conversation, position=0, role="user", content="<script>alert(1)</script>")
    Message.objects.create(
        conversation=conversation, position=1, role="assistant", content="<img src=x onerror=alert(1)> **bold**",
        reasoning="<b>think</b>", tool_calls=[{"id": "c1", "type": "function", "function": {"name": "<i>x</i>", "arguments": "{bad"}}],
    )
    conversation.title = "<svg onload=alert(1)>"
    conversation.save()
    client.force_login(owner)
    page = client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<svg onload" not in page
    assert "<b>think</b>" not in page and "<i>x</i>" not in page
    assert "<strong>bold</strong>" in page
    assert "arguments are not valid JSON" in page


def test_the_history_page_has_no_duplicate_element_ids(client, owner):
    """Three forms there have an endpoint field; labels must point at their own."""
    import re
    from collections import Counter

    client.force_login(owner)
    html = client.get(reverse("chat:index")).content.decode()
    ids = Counter(re.findall(r'\sid="([^"]+)"', html))
    assert not [i for i, n in ids.items() if n > 1]


def test_the_conversation_page_has_no_duplicate_element_ids(client, owner, conversation):
    import re
    from collections import Counter

    from chat.models import Message

    Message.objects.create(conversation=conversation, position=0, role="user", content="Hi")
    Message.objects.create(conversation=conversation, position=1, role="assistant", content="Hello",
                           tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}])
    client.force_login(owner)
    html = client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    ids = Counter(re.findall(r'\sid="([^"]+)"', html))
    assert not [i for i, n in ids.items() if n > 1]
