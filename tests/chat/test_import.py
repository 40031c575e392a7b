"""Import a cURL command: the pages' model placeholders find an endpoint of their family, images only
where they are taken, the messages chained in order and titled by the first user message, and a
Run button when the imported thread ends with the user's turn."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from chat import fragments
from chat.models import Conversation, Endpoint, Message
from tests.upstream.conftest import page_examples

EXAMPLES = page_examples()
PAGE_FAMILY = {"qwen": "qwen", "llama": "llama", "mistral": "mistral", "gemma4": "gemma"}
PLACEHOLDERS = [e for e in EXAMPLES if e.body["model"].startswith("$") or e.body["model"] == "your-model-or-deployment-id"]
FIRST_QWEN = next(e for e in EXAMPLES if e.id == "qwen-1")
WITH_IMAGE = next(e for e in EXAMPLES if "image_url" in json.dumps(e.body))


def endpoint(name: str, model_id: str, **fields) -> Endpoint:
    return Endpoint.objects.create(name=name, base_url="http://127.0.0.1:9/v1", model_id=model_id, **fields)


@pytest.fixture
def one_per_family(db) -> dict[str, Endpoint]:
    return {
        "qwen": endpoint("qwen", "Qwen/Qwen3-8B"),
        "llama": endpoint("llama", "meta-llama/Llama-3.3-70B-Instruct"),
        "mistral": endpoint("mistral", "mistralai/Mistral-Small-3.2-24B-Instruct-2506"),
        "gemma": endpoint("gemma", "google/gemma-4-31b-it", image_input=True),
    }


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


def import_command(client, command: str, **data):
    return client.post(reverse("chat:conversation_import"), {"command": command, **data})


def errors_of(response) -> str:
    return " ".join(re.findall(r'<p class="error" role="alert">(.*?)</p>', response.content.decode(), re.S))


def test_there_are_placeholder_examples_on_every_page():
    assert {e.page for e in PLACEHOLDERS} == {"qwen", "llama", "mistral", "gemma4", "generic"}


@pytest.mark.parametrize("example", PLACEHOLDERS, ids=lambda e: e.id)
def test_a_page_placeholder_imports_onto_an_endpoint_of_the_pages_family(example, owner_client, owner, one_per_family):
    """Pasted as the page shows it, without its `export` lines: $QWEN_MODEL is "a Qwen model"
    (this once failed with "No endpoint you may use serves '$QWEN_MODEL'")."""
    response = import_command(owner_client, example.curl)
    assert response.status_code == 302, errors_of(response)
    conversation = Conversation.objects.get(owner=owner)
    if example.page in PAGE_FAMILY:
        assert conversation.endpoint == one_per_family[PAGE_FAMILY[example.page]]
    else:  # the generic page's placeholder stands for any model
        assert conversation.endpoint in one_per_family.values()
    assert conversation.api_messages() == example.body["messages"]


def test_a_placeholder_prefers_an_endpoint_whose_last_check_passed(owner_client, owner):
    failed = endpoint("a qwen that failed", "Qwen/Qwen3-8B", last_check_ok=False)
    unchecked = endpoint("b qwen never checked", "Qwen/Qwen3-14B")
    passed = endpoint("c qwen that passed", "Qwen/Qwen3-32B", last_check_ok=True)
    endpoint("a llama", "meta-llama/Llama-3.3-70B-Instruct", last_check_ok=True)  # another family: never
    for expected in (passed, unchecked, failed):
        Conversation.objects.all().delete()
        assert import_command(owner_client, FIRST_QWEN.curl).status_code == 302
        assert Conversation.objects.get(owner=owner).endpoint == expected
        expected.delete()


def test_a_real_model_id_goes_to_the_endpoint_serving_it(owner_client, owner):
    failing = endpoint("a served but failing", "Qwen/Qwen3-8B", last_check_ok=False)
    healthy = endpoint("b served and fine", "Qwen/Qwen3-8B", last_check_ok=True)
    endpoint("c another qwen", "Qwen/Qwen3-14B", last_check_ok=True)
    command = FIRST_QWEN.curl.replace("'\"$QWEN_MODEL\"'", "Qwen/Qwen3-8B")  # the page's shell splice, filled in
    assert '"model": "Qwen/Qwen3-8B"' in command
    response = owner_client.post(reverse("chat:conversation_import"), {"command": command}, follow=True)
    assert Conversation.objects.get(owner=owner).endpoint == healthy
    assert "is a placeholder" not in response.content.decode()
    failing.delete(), healthy.delete()
    response = import_command(owner_client, command)
    assert response.status_code == 400 and "No endpoint you may use serves &#x27;Qwen/Qwen3-8B&#x27;" in errors_of(response)


def test_a_placeholder_without_an_endpoint_of_its_family_asks_for_one(owner_client, owner, team, other_team):
    endpoint("llama", "meta-llama/Llama-3.3-70B-Instruct")
    endpoint("someone else's gemma", "google/gemma-4-31b-it").teams.add(other_team)  # not usable by alice
    gemma_example = next(e for e in PLACEHOLDERS if e.page == "gemma4")
    response = import_command(owner_client, gemma_example.curl)
    assert response.status_code == 400
    assert "$GEMMA_MODEL stands for a Gemma 4 model, and no endpoint you may use serves one: pick one." in errors_of(response)
    assert not Conversation.objects.exists()


def test_the_title_is_the_first_user_message_and_messages_follow_each_other(owner_client, owner, one_per_family):
    response = owner_client.post(reverse("chat:conversation_import"), {"command": FIRST_QWEN.curl}, follow=True)
    conversation = Conversation.objects.get(owner=owner)
    assert conversation.title == "Give me a one-sentence explanation of what Qwen is."
    page = response.content.decode()
    assert "Imported:" not in page and "$QWEN_MODEL is a placeholder" in page
    assert "<title>Give me a one-sentence explanation of what Qwen is. · HexGrid Playground</title>" in page
    messages = list(conversation.messages.order_by("position"))
    assert [m.parent_id for m in messages] == [None] + [m.pk for m in messages[:-1]]  # a chain, in order
    assert conversation.thread() == messages


def test_a_command_without_a_user_message_is_still_named(owner_client, owner, one_per_family):
    command = 'curl http://h/v1/chat/completions -d \'{"model": "$QWEN_MODEL", "messages": [{"role": "system", "content": "Be terse."}]}\''
    assert import_command(owner_client, command).status_code == 302
    assert str(Conversation.objects.get(owner=owner)) == "Imported request"


def test_images_are_refused_on_an_endpoint_without_image_input(owner_client, owner, one_per_family):
    response = import_command(owner_client, WITH_IMAGE.curl, endpoint=one_per_family["qwen"].pk)
    assert response.status_code == 400
    assert "Message 1 has an image, and qwen does not take images (image input is off for it)" in errors_of(response)
    assert not Conversation.objects.exists()
    assert import_command(owner_client, WITH_IMAGE.curl).status_code == 302  # its page's Gemma endpoint takes them
    assert Conversation.objects.get(owner=owner).endpoint == one_per_family["gemma"]


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:8000/secret.png", "The image URL of message 1 points at a loopback address (this machine): 127.0.0.1."),
    ("http://169.254.169.254/latest/meta-data/", "The image URL of message 1 points at a link-local"),
    ("file:///etc/passwd", "The image URL of message 1 must be an http(s) or data: URL."),
])
def test_image_urls_vllm_must_not_fetch_are_refused(owner_client, one_per_family, url, reason):
    body = {"model": "$GEMMA_MODEL", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]}]}
    response = import_command(owner_client, f"curl http://h/v1/chat/completions -d '{json.dumps(body)}'")
    assert response.status_code == 400 and reason in errors_of(response)
    assert not Conversation.objects.exists()


def test_messages_that_could_not_be_sent_are_refused(owner_client, one_per_family):
    body = {"model": "$QWEN_MODEL", "messages": [{"role": "tool", "content": "21 °C"}]}  # no tool_call_id
    response = import_command(owner_client, f"curl http://h/v1/chat/completions -d '{json.dumps(body)}'")
    assert response.status_code == 400
    assert "messages cannot be sent: messages[0].tool_call_id: is required in a tool message" in errors_of(response)


# --- the Run button ----------------------------------------------------------------------------


def run_pending(page: str) -> str:
    return page.split('<div id="run-pending"', 1)[1].split("</div>", 1)[0]


def test_an_import_ending_with_the_users_turn_shows_run_in_the_composer(owner_client, owner, teammate, team, one_per_family):
    response = owner_client.post(reverse("chat:conversation_import"), {"command": FIRST_QWEN.curl}, follow=True)
    pending = run_pending(response.content.decode())
    assert 'id="run-now" ws-send' in pending and 'name="action" value="run"' in pending
    # in the composer area, not inside a closed <details>
    composer_area = response.content.decode().split('class="composer-area"', 1)[1].split("<details", 1)[0]
    assert 'id="run-now"' in composer_area
    # A teammate's read-only view has the (hidden) target its live updates land on, never a live button.
    conversation = Conversation.objects.get(owner=owner)
    conversation.team, conversation.visibility = team, "team"
    conversation.save()
    owner_client.force_login(teammate)
    page = owner_client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    assert '<div id="run-pending" class="run-pending owner-only"' in page and 'id="composer"' not in page


def test_run_shows_only_while_the_thread_waits_for_an_answer(owner_client, owner, one_per_family):
    conversation = Conversation.objects.create(owner=owner, endpoint=one_per_family["qwen"], title="t")
    question = Message.objects.create(conversation=conversation, position=0, role="user", content="Why?")
    url = reverse("chat:conversation", args=[conversation.public_id])
    assert 'id="run-now"' in run_pending(owner_client.get(url).content.decode())
    answer = Message.objects.create(conversation=conversation, parent=question, position=1, role="assistant", content="Because.")
    assert 'id="run-now"' not in run_pending(owner_client.get(url).content.decode())
    # Live: every message list carries it; a run hides it when it starts and when it ends.
    thread = conversation.thread()
    assert 'id="run-now"' not in fragments.message_list(thread, streaming=False)
    assert 'id="run-now"' in fragments.message_list(thread[:1], streaming=False)
    assert 'id="run-now"' not in fragments.message_list(thread[:1], streaming=True)
    for html in (fragments.opening(None, answer), fragments.final(answer, None)):
        assert '<div id="run-pending" class="run-pending owner-only" hx-swap-oob="true">' in html
        assert 'id="run-now"' not in html


def test_adding_a_first_user_message_names_the_conversation_and_offers_run(owner_client, owner, one_per_family):
    conversation = Conversation.objects.create(owner=owner, endpoint=one_per_family["qwen"])
    response = owner_client.post(reverse("chat:message_add", args=[conversation.public_id]),
                                 {"role": "user", "content": "Why is the sky blue?"}, headers={"HX-Request": "true"})
    assert '<h1 id="conversation-title" hx-swap-oob="true">Why is the sky blue?</h1>' in response.content.decode()
    conversation.refresh_from_db()
    assert str(conversation) == "Why is the sky blue?"
    page = owner_client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    assert 'id="run-now"' in run_pending(page)
