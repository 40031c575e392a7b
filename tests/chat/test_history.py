"""Team-shared history: the list (scopes, search, filters, pages, query count), visibility, rename,
fork, export, delete, endpoints per team, and the team admin. Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat.forms import family_defaults
from chat.models import ApiKey, Completion, Conversation, Endpoint, Message
from chat.upstream.payload import build_payload

HTMX = {"HX-Request": "true"}


@pytest.fixture
def qwen(db) -> Endpoint:
    return Endpoint.objects.create(name="qwen", base_url="http://127.0.0.1:9/v1", model_id="Qwen/Qwen3-8B")


@pytest.fixture
def llama(db) -> Endpoint:
    return Endpoint.objects.create(name="llama", base_url="http://127.0.0.1:9/v1", model_id="meta-llama/Llama-3.3-70B-Instruct")


def conversation_of(user, endpoint, title="", team=None, said: str | None = "Hello there", **kw) -> Conversation:
    """A conversation with a first user message `said` (None: none yet, which the list leaves out)."""
    conversation = Conversation.objects.create(
        owner=user, endpoint=endpoint, title=title, team=team, visibility="team" if team else "private",
        options=family_defaults(endpoint) if endpoint else {}, **kw,
    )
    if said is not None:
        Message.objects.create(conversation=conversation, position=0, role="user", content=said)
    return conversation


@pytest.fixture
def shared(owner, team, qwen) -> Conversation:
    return conversation_of(owner, qwen, "Shared weather", team=team)


@pytest.fixture
def private(owner, qwen) -> Conversation:
    return conversation_of(owner, qwen, "Private diary")


def titles(response) -> list[str]:
    import re

    block = response.content.decode().split('id="conversation-list"', 1)[1].split("</ul>", 1)[0]
    return re.findall(r'<a href="/c/[0-9a-f-]{36}/">([^<]*)</a>', block)


def recent(response) -> list[str]:
    """The titles in the app sidebar's Recent list."""
    import re

    block = response.content.decode().split('<ul class="recent">', 1)[1].split("</ul>", 1)[0]
    return re.findall(r'<a href="/c/[0-9a-f-]{36}/"[^>]*>([^<]*)</a>', block)


def list_page(client, user, **params):
    client.force_login(user)
    return client.get(reverse("chat:index"), params)


# --- the list -----------------------------------------------------------------------------------


def test_scopes_mine_all_and_team(client, owner, teammate, outsider, team, shared, private, qwen):
    bobs = conversation_of(teammate, qwen, "Bob shares", team=team)
    conversation_of(teammate, qwen, "Bob alone")
    assert titles(list_page(client, owner)) == ["Private diary", "Shared weather"]  # default: mine
    assert titles(list_page(client, owner, scope="all")) == ["Bob shares", "Private diary", "Shared weather"]
    assert titles(list_page(client, owner, scope="team:red team")) == ["Bob shares", "Shared weather"]
    assert titles(list_page(client, teammate, scope="team:red team")) == ["Bob shares", "Shared weather"]
    assert titles(list_page(client, teammate, scope="all")) == ["Bob alone", "Bob shares", "Shared weather"]
    assert titles(list_page(client, outsider, scope="all")) == []
    assert bobs.title in list_page(client, owner, scope="all").content.decode()


def test_a_team_one_is_not_in_is_a_404_like_one_that_does_not_exist(client, outsider, shared):
    assert list_page(client, outsider, scope="team:red team").status_code == 404
    assert list_page(client, outsider, scope="team:no such team").status_code == 404
    assert list_page(client, outsider, scope="team:blue team").status_code == 200


def test_sidebar_lists_mine_and_each_of_my_teams(client, owner, other_team):
    owner.groups.add(other_team)
    page = list_page(client, owner).content.decode()
    scopes = page.split('id="history-scopes"', 1)[1].split("</ul>", 1)[0]
    assert "Mine" in scopes and "red team" in scopes and "blue team" in scopes


def test_newest_activity_first(client, owner, qwen):
    old, new = conversation_of(owner, qwen, "old"), conversation_of(owner, qwen, "new")
    Conversation.objects.filter(pk=new.pk).update(updated_at=timezone.now() - timedelta(days=2))
    assert titles(list_page(client, owner)) == ["old", "new"]
    old.save()  # activity
    assert titles(list_page(client, owner))[0] == "old"


def test_search_titles_and_message_text(client, owner, teammate, team, qwen):
    a = conversation_of(owner, qwen, "Rainy Tuesday")
    b = conversation_of(owner, qwen, "Untitled")
    Message.objects.create(conversation=b, position=0, role="user", content="What about the PELICAN problem?")
    c = conversation_of(teammate, qwen, "Parts", team=team)
    Message.objects.create(conversation=c, position=0, role="user", content=[
        {"type": "text", "text": "Look at this pelican"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ])
    d = conversation_of(owner, qwen, "Edited away")
    Message.objects.create(conversation=d, position=0, role="user", content="pelican", is_active=False)
    Message.objects.create(conversation=d, position=0, role="user", content="heron")
    assert titles(list_page(client, owner, scope="all", q="pelican")) == ["Parts", "Untitled"]
    assert titles(list_page(client, owner, q="rainy")) == [a.title]
    assert titles(list_page(client, owner, q="HERON")) == [d.title]
    assert titles(list_page(client, owner, q="image_url")) == []  # text parts only, not the JSON
    assert titles(list_page(client, owner, q="%")) == []  # LIKE wildcards are literal


def test_search_finds_non_ascii_text(client, owner, qwen):
    c = conversation_of(owner, qwen, "Untitled")
    Message.objects.create(conversation=c, position=0, role="user", content="Un café à Zürich, 東京")
    assert titles(list_page(client, owner, q="café")) == ["Untitled"]
    assert titles(list_page(client, owner, q="東京")) == ["Untitled"]


def test_search_finds_an_answer_saved_by_a_run(client, owner, qwen):
    """The assistant's text is indexed when the run saves it (asave with all fields)."""
    c = conversation_of(owner, qwen, "Untitled")
    reply = Message.objects.create(conversation=c, position=1, role="assistant", status="streaming")
    Message.objects.filter(pk=reply.pk).update(content="checkpoint only")  # checkpoints skip save()
    reply.content = "The answer is flamingo"
    reply.save(update_fields=["content"])
    reply.refresh_from_db()
    assert reply.text_index == "The answer is flamingo"
    assert titles(list_page(client, owner, q="flamingo")) == ["Untitled"]


def test_filters_endpoint_model_family_author_and_dates(client, owner, teammate, team, qwen, llama):
    conversation_of(owner, qwen, "q1", team=team)
    conversation_of(teammate, llama, "l1", team=team)
    old = conversation_of(teammate, qwen, "q-old", team=team)
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=10))
    scope = {"scope": "all"}
    assert titles(list_page(client, owner, **scope, endpoint="llama")) == ["l1"]
    assert titles(list_page(client, owner, **scope, model="Qwen/Qwen3-8B")) == ["q1", "q-old"]
    assert titles(list_page(client, owner, **scope, family="llama")) == ["l1"]
    assert titles(list_page(client, owner, **scope, author="bob")) == ["l1", "q-old"]
    since = (timezone.now() - timedelta(days=3)).date().isoformat()
    assert titles(list_page(client, owner, **scope, since=since)) == ["l1", "q1"]
    assert titles(list_page(client, owner, **scope, until=since)) == ["q-old"]


def test_a_bad_filter_is_reported_and_ignored(client, owner, shared, outsider):
    response = list_page(client, owner, author="charlie", since="not a date")
    assert response.status_code == 200 and titles(response) == ["Shared weather"]
    assert "Select a valid choice" in response.content.decode() and "Enter a valid date" in response.content.decode()


def test_pages_of_25_and_htmx_gets_only_the_results(client, owner, qwen):
    conversations = Conversation.objects.bulk_create([Conversation(owner=owner, endpoint=qwen, title=f"c{i:02}") for i in range(30)])
    Message.objects.bulk_create([Message(conversation=c, position=0, role="user", content="hi") for c in conversations])
    client.force_login(owner)
    first = client.get(reverse("chat:index"), {"q": "c"})
    assert len(titles(first)) == 25 and "page 1 of 2" in first.content.decode()
    assert "?q=c&amp;page=2" in first.content.decode()
    second = client.get(reverse("chat:index"), {"q": "c", "page": 2}, headers={**HTMX, "HX-Target": "history-results"})
    assert len(titles(second)) == 5
    body = second.content.decode()
    assert body.lstrip().startswith('<div id="history-results">') and "<html" not in body


def test_a_new_conversation_is_named_and_listed_only_once_something_is_said(client, owner, teammate, team, qwen):
    """*New conversation* clicked and left without sending leaves no row; until its first message it
    is called "New conversation" (the page, its <title>, the header)."""
    client.force_login(owner)
    response = client.post(reverse("chat:conversation_new"), {"endpoint": qwen.pk}, follow=True)
    conversation = Conversation.objects.get(owner=owner)
    page = response.content.decode()
    assert "<title>New conversation · HexGrid Playground</title>" in page
    assert '<h1 id="conversation-title">New conversation</h1>' in page
    assert str(conversation) == "New conversation"
    conversation.team, conversation.visibility = team, "team"
    conversation.save()
    for user, scope in ((owner, "mine"), (owner, "all"), (teammate, "team:red team")):
        listed = list_page(client, user, scope=scope)
        assert titles(listed) == [] and "0 conversations" in listed.content.decode()
        assert recent(listed) == []  # nor in the sidebar's recent ones
    client.force_login(owner)
    client.post(reverse("chat:message_add", args=[conversation.public_id]), {"role": "user", "content": "Why is the sky blue?"})
    assert titles(list_page(client, owner)) == ["Why is the sky blue?"]
    assert recent(list_page(client, owner)) == ["Why is the sky blue?"]
    assert titles(list_page(client, teammate, scope="team:red team")) == ["Why is the sky blue?"]


@pytest.mark.parametrize("scope", ["mine", "all", "team:red team"])
def test_query_count_does_not_grow_with_the_number_of_conversations(client, owner, teammate, team, qwen, llama, scope):
    client.force_login(owner)

    def count_queries(n):
        for i in range(n):
            author = owner if i % 2 else teammate
            conversation_of(author, qwen if i % 3 else llama, f"t{i}", team=team, said=f"hello {i}")
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse("chat:index"), {"scope": scope, "q": "t"})
        assert response.status_code == 200
        return len(queries)

    small = count_queries(10)
    large = count_queries(90)  # 100 in all
    assert small == large, (small, large)
    assert large <= 14  # (13: the New conversation form looks up the endpoint it starts on; 14: the library matches)


# --- visibility and rename (owner only) ---------------------------------------------------------


def test_owner_shares_with_a_team_and_unshares(client, owner, teammate, private):
    client.force_login(owner)
    url = reverse("chat:conversation_visibility", args=[private.public_id])
    response = client.post(url, {"share": "red team"}, headers=HTMX)
    assert response.status_code == 200 and "Shared with red team" in response.content.decode()
    assert 'id="conversation-header"' in response.content.decode()
    private.refresh_from_db()
    assert private.visibility == "team" and private.team.name == "red team"
    client.force_login(teammate)
    assert client.get(reverse("chat:conversation", args=[private.public_id])).status_code == 200
    client.force_login(owner)
    client.post(url, {"share": ""})
    private.refresh_from_db()
    assert private.visibility == "private" and private.team is None
    client.force_login(teammate)
    assert client.get(reverse("chat:conversation", args=[private.public_id])).status_code == 404


def test_owner_cannot_share_with_a_team_they_are_not_in(client, owner, other_team, private):
    client.force_login(owner)
    response = client.post(reverse("chat:conversation_visibility", args=[private.public_id]), {"share": "blue team"}, headers=HTMX)
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    private.refresh_from_db()
    assert private.visibility == "private" and private.team is None


def test_the_visibility_form_offers_only_the_owners_teams(client, owner, other_team, private):
    client.force_login(owner)
    page = client.get(reverse("chat:conversation", args=[private.public_id])).content.decode()
    form = page.split('id="visibility-form"', 1)[1].split("</form>", 1)[0]
    assert "Shared with red team" in form and "blue team" not in form


def test_rename_with_htmx_and_without(client, owner, shared):
    client.force_login(owner)
    url = reverse("chat:conversation_title", args=[shared.public_id])
    response = client.post(url, {"title": "  Better <b>name</b> "}, headers=HTMX)
    assert response.status_code == 200
    assert '<h1 id="conversation-title">Better &lt;b&gt;name&lt;/b&gt;</h1>' in response.content.decode()
    shared.refresh_from_db()
    assert shared.title == "Better <b>name</b>"
    response = client.post(url, {"title": "Plain form"})
    assert response.status_code == 302 and response["Location"] == reverse("chat:conversation", args=[shared.public_id])


def test_read_only_viewers_get_no_owner_forms_and_404_on_owner_actions(client, owner, teammate, shared):
    client.force_login(teammate)
    page = client.get(reverse("chat:conversation", args=[shared.public_id])).content.decode()
    assert 'id="visibility-form"' not in page and "Rename" not in page and "Delete…" not in page
    assert "Fork…" in page and "Export JSON" in page and "Shared with red team" in page
    for name in ("conversation_title", "conversation_visibility", "conversation_delete"):
        assert client.post(reverse(f"chat:{name}", args=[shared.public_id]), {"title": "x", "share": ""}).status_code == 404
    shared.refresh_from_db()
    assert shared.title == "Shared weather" and shared.visibility == "team"


# --- fork ------------------------------------------------------------------------------------------


@pytest.fixture
def rich(owner, team, qwen) -> Conversation:
    """A shared conversation with settings, tools, a schema, reasoning, tool calls and an old branch."""
    c = conversation_of(
        owner, qwen, "Rich", team=team, said=None, system_prompt="Be terse.",
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        response_format={"type": "json_object"},
    )
    c.options = {**c.options, "temperature": 0.3, "seed": 7}
    c.save()
    completion = Completion.objects.create(conversation=c, endpoint=qwen, request_body={"model": "x"})
    Message.objects.create(conversation=c, position=0, role="user", content="old question", is_active=False)
    Message.objects.create(conversation=c, position=0, role="user", content="Weather in Paris?")
    Message.objects.create(
        conversation=c, position=1, role="assistant", content="", reasoning="I should call the tool.",
        tool_calls=[{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
        finish_reason="tool_calls", completion=completion, logprobs={"content": [{"token": "x", "logprob": -0.1}]},
    )
    Message.objects.create(conversation=c, position=2, role="tool", content='{"temp": 21}', tool_call_id="call_1")
    Message.objects.create(conversation=c, position=3, role="assistant", content="21 °C.", finish_reason="stop", completion=completion)
    return c


def fork_as(client, user, source, **data):
    client.force_login(user)
    return client.post(reverse("chat:conversation_fork", args=[source.public_id]), data)


def test_fork_keeps_messages_and_settings(client, teammate, rich, qwen):
    response = fork_as(client, teammate, rich, endpoint="qwen")
    copy = Conversation.objects.get(owner=teammate)
    assert response.status_code == 302 and response["Location"] == reverse("chat:conversation", args=[copy.public_id])
    assert copy.forked_from == rich and copy.visibility == "private" and copy.team is None
    assert (copy.title, copy.system_prompt, copy.options, copy.tools, copy.response_format) == (
        rich.title, rich.system_prompt, rich.options, rich.tools, rich.response_format
    )
    fields = ["position", "role", "content", "reasoning", "tool_calls", "tool_call_id", "logprobs", "finish_reason", "status"]
    original = [[getattr(m, f) for f in fields] for m in rich.thread()]
    copied = [[getattr(m, f) for f in fields] for m in copy.thread()]
    assert copied == original and len(copied) == 4
    assert not copy.messages.filter(is_active=False).exists()  # only the shown branch
    assert not copy.completions.exists() and all(m.completion_id is None for m in copy.messages.all())
    assert copy.api_messages() == rich.api_messages()
    assert rich.messages.count() == 5  # the source is untouched


def test_fork_from_a_message(client, teammate, rich):
    upto = rich.thread()[1]
    response = client.get(reverse("chat:conversation_fork", args=[rich.public_id]), {"upto": upto.public_id})
    assert response.status_code == 302  # not logged in yet
    client.force_login(teammate)
    page = client.get(reverse("chat:conversation_fork", args=[rich.public_id]), {"upto": str(upto.public_id)}).content.decode()
    assert f'value="{upto.public_id}" selected' in page
    fork_as(client, teammate, rich, endpoint="qwen", upto=str(upto.public_id))
    copy = Conversation.objects.get(owner=teammate)
    assert [m.role for m in copy.thread()] == ["user", "assistant"]
    assert copy.thread()[-1].tool_calls[0]["id"] == "call_1"


def test_fork_refuses_a_message_of_another_conversation(client, owner, teammate, rich, private):
    foreign = Message.objects.create(conversation=private, position=0, role="user", content="secret")
    response = fork_as(client, teammate, rich, endpoint="qwen", upto=str(foreign.public_id))
    assert response.status_code == 400 and not Conversation.objects.filter(owner=teammate).exists()
    assert "secret" not in response.content.decode()


def test_fork_onto_an_allowed_endpoint_when_the_source_one_is_not(client, teammate, other_team, rich, qwen, llama):
    qwen.teams.add(other_team)  # no longer usable by red team
    client.force_login(teammate)
    assert client.get(reverse("chat:conversation", args=[rich.public_id])).status_code == 200  # still readable
    page = client.get(reverse("chat:conversation_fork", args=[rich.public_id])).content.decode()
    assert "You may not use this conversation's endpoint" in page
    select = page.split('id="fork-form"', 1)[1].split('name="endpoint"', 1)[1].split("</select>", 1)[0]
    assert '"llama"' in select and '"qwen"' not in select
    assert fork_as(client, teammate, rich, endpoint="qwen").status_code == 400  # refused by name too
    assert fork_as(client, teammate, rich, endpoint="llama").status_code == 302
    assert Conversation.objects.get(owner=teammate).endpoint == llama


def test_forked_from_links_only_if_the_viewer_may_see_the_source(client, owner, teammate, rich):
    fork_as(client, teammate, rich, endpoint="qwen")
    copy = Conversation.objects.get(owner=teammate)
    copy.team, copy.visibility = rich.team, "team"
    copy.save()
    page = client.get(reverse("chat:conversation", args=[copy.public_id])).content.decode()
    assert f'href="/c/{rich.public_id}/"' in page and "forked from" in page
    rich.visibility, rich.team = "private", None
    rich.save()
    client.force_login(teammate)
    page = client.get(reverse("chat:conversation", args=[copy.public_id])).content.decode()
    assert str(rich.public_id) not in page and "a conversation you cannot see" in page
    assert "Rich" in page  # the fork's own (copied) title


def test_owner_forks_own_conversation_too(client, owner, rich):
    assert fork_as(client, owner, rich, endpoint="qwen").status_code == 302
    assert Conversation.objects.filter(owner=owner, forked_from=rich).count() == 1


# --- export --------------------------------------------------------------------------------------


def test_export_json_is_the_request_to_send_and_never_a_key(client, teammate, rich, qwen):
    key = ApiKey(name="k")
    key.set_secret("sk-very-secret-9876")
    key.save()
    qwen.api_key = key
    qwen.save()
    client.force_login(teammate)
    response = client.get(reverse("chat:conversation_export_json", args=[rich.public_id]))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="rich-')
    body = json.loads(response.content)
    assert body == build_payload("Qwen/Qwen3-8B", rich.api_messages(), rich.option_values())
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert body["temperature"] == 0.3 and body["tools"] == rich.tools and body["response_format"] == {"type": "json_object"}
    text = response.content.decode()
    assert "very-secret" not in text and "9876" not in text and "127.0.0.1:9" not in text


def test_export_markdown(client, owner, rich):
    client.force_login(owner)
    response = client.get(reverse("chat:conversation_export_markdown", args=[rich.public_id]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/markdown")
    assert response["Content-Disposition"].endswith('.md"')
    text = response.content.decode()
    assert text.startswith("# Rich\n") and "`Qwen/Qwen3-8B`" in text
    assert "## System\n\nBe terse." in text and "Weather in Paris?" in text and "21 °C." in text
    assert "I should call the tool." in text and "**Tool call** `get_weather` (`call_1`)" in text
    assert "## Tool (`call_1`)" in text and '"seed": 7' in text and "old question" not in text


def test_markdown_export_escapes_html_from_messages(owner, rich):
    from chat.sharing import export_markdown

    rich.title, rich.system_prompt = "<img src=x onerror=alert(1)>", "Use <b>tags</b>"
    rich.save()
    Message.objects.create(conversation=rich, position=4, role="user", content="<script>alert('x')</script> & more")
    text = export_markdown(rich)
    assert "<script>" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; more" in text and "# &lt;img src=x" in text


def test_markdown_fences_outlast_backticks_in_the_text():
    from chat.sharing import fence

    assert fence("a ```` b", "json").startswith("`````json\n")


# --- delete ---------------------------------------------------------------------------------------


def test_delete_asks_first_then_removes_everything(client, owner, teammate, rich):
    client.force_login(owner)
    url = reverse("chat:conversation_delete", args=[rich.public_id])
    page = client.get(url)
    assert page.status_code == 200 and "Delete “Rich”?" in page.content.decode()
    assert Conversation.objects.filter(pk=rich.pk).exists()  # a GET never deletes
    response = client.post(url)
    assert response.status_code == 302 and response["Location"] == reverse("chat:index")
    assert not Conversation.objects.filter(public_id=rich.public_id).exists()
    assert not Message.objects.filter(conversation_id=rich.pk).exists()
    assert not Completion.objects.filter(conversation_id=rich.pk).exists()
    client.force_login(teammate)
    assert client.get(reverse("chat:conversation", args=[rich.public_id])).status_code == 404
    assert client.get(reverse("chat:conversation_export_json", args=[rich.public_id])).status_code == 404
    assert "Rich" not in client.get(reverse("chat:index"), {"scope": "all"}).content.decode()


def test_delete_waits_for_a_running_completion(client, owner, shared):
    Message.objects.create(conversation=shared, position=0, role="assistant", status="streaming")
    client.force_login(owner)
    response = client.post(reverse("chat:conversation_delete", args=[shared.public_id]))
    assert response.status_code == 409 and "stop it first" in response.content.decode()
    assert Conversation.objects.filter(pk=shared.pk).exists()


def test_forks_survive_the_deletion_of_their_source(client, owner, teammate, rich):
    fork_as(client, teammate, rich, endpoint="qwen")
    client.force_login(owner)
    client.post(reverse("chat:conversation_delete", args=[rich.public_id]))
    copy = Conversation.objects.get(owner=teammate)
    assert copy.forked_from is None and copy.messages.count() == 4


# --- endpoints per team -----------------------------------------------------------------------------


def test_users_see_and_use_only_their_teams_and_open_endpoints(client, owner, team, other_team, qwen, llama):
    mistral = Endpoint.objects.create(name="mistral-red", base_url="http://127.0.0.1:9/v1", model_id="mistralai/Magistral-Small")
    mistral.teams.add(team)
    llama.teams.add(other_team)
    page = list_page(client, owner).content.decode()
    new_form = page.split('class="new-chat new-conversation"', 1)[1].split("</form>", 1)[0]  # (in the sidebar)
    assert "qwen" in new_form and "mistral-red" in new_form and "llama" not in new_form
    endpoints = page.split("Endpoints you can use", 1)[1]
    assert "qwen" in endpoints and "mistral-red" in endpoints and "llama" not in endpoints
    assert client.post(reverse("chat:conversation_new"), {"endpoint": llama.pk}).status_code == 400


def test_a_conversation_on_a_withdrawn_endpoint_stays_readable(client, owner, other_team, shared, qwen):
    qwen.teams.add(other_team)
    client.force_login(owner)
    assert client.get(reverse("chat:conversation", args=[shared.public_id])).status_code == 200
    assert titles(client.get(reverse("chat:index"))) == ["Shared weather"]


# --- text index and migration ----------------------------------------------------------------------------


def test_the_migration_fills_the_text_index_of_existing_messages(owner, qwen):
    import importlib

    from django.apps import apps

    c = conversation_of(owner, qwen, "x")
    m = Message.objects.create(conversation=c, position=0, role="user", content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    Message.objects.filter(pk=m.pk).update(text_index="")
    importlib.import_module("chat.migrations.0003_history").fill_text_index(apps, None)
    m.refresh_from_db()
    assert m.text_index == "a\nb"


# --- the team admin -------------------------------------------------------------------------------------


def test_staff_manage_a_teams_members_and_endpoints(client, staff, owner, teammate, team, qwen, llama):
    qwen.teams.add(team)
    client.force_login(staff)
    changelist = client.get("/admin/auth/group/").content.decode()
    assert "red team" in changelist
    url = f"/admin/auth/group/{team.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="members"' in page and 'name="endpoints"' in page
    response = client.post(url, {"name": "red team", "members": [owner.pk], "endpoints": [llama.pk]})
    assert response.status_code == 302
    assert list(team.user_set.all()) == [owner]
    assert list(team.endpoint_set.all()) == [llama]
    assert list(Endpoint.objects.usable_by(teammate)) == [qwen]  # qwen is open again, llama red-only


def test_a_teammate_reads_settings_reasoning_and_tool_calls(client, teammate, rich):
    client.force_login(teammate)
    page = client.get(reverse("chat:conversation", args=[rich.public_id])).content.decode()
    assert "I should call the tool." in page and "get_weather" in page and "call_1" in page
    assert "Be terse." in page and 'value="0.3"' in page  # the settings panel, disabled
    panel = page.split('id="settings-panel"', 1)[1]
    assert "disabled" in panel
    assert 'id="composer"' not in page


def test_every_shown_message_links_to_a_fork_from_it(client, owner, teammate, team):
    from chat.models import Conversation, Endpoint, Message

    endpoint = Endpoint.objects.create(name="open", base_url="http://127.0.0.1:9/v1", model_id="Qwen/Qwen3-8B")
    conversation = Conversation.objects.create(owner=owner, team=team, visibility="team", endpoint=endpoint)
    message = Message.objects.create(conversation=conversation, position=0, role="user", content="hi")
    client.force_login(teammate)
    page = client.get(f"/c/{conversation.public_id}/").content.decode()
    link = f"/c/{conversation.public_id}/fork?upto={message.public_id}"
    assert link in page
    assert str(message.public_id) in client.get(link).content.decode()
