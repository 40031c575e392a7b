"""Which model a conversation talks to, everywhere an endpoint is shown or picked: the header, the
endpoint selects (new conversation, import, fork, settings panel), and the endpoint a new
conversation starts on."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.forms import default_endpoint, family_defaults
from chat.models import Conversation, Endpoint, Message
from chat.panel import PanelForm


def endpoint(name: str, model_id: str, **fields) -> Endpoint:
    return Endpoint.objects.create(name=name, base_url="http://127.0.0.1:9/v1", model_id=model_id, **fields)


@pytest.fixture
def endpoints(db) -> dict[str, Endpoint]:
    return {
        "qwen": endpoint("Qwen 3", "Qwen/Qwen3-8B"),
        "sim": endpoint("Simulated vLLM (offline demo) — sim/llama-3.3", "sim/llama-3.3"),
        "down": endpoint("gemma", "google/gemma-4-31b-it", last_check_ok=False),
    }


def options_of(page: str, select_id: str) -> dict[str, str]:
    """value -> label of a select's options."""
    select = page.split(f'id="{select_id}"', 1)[1].split("</select>", 1)[0]
    return {value: html.unescape(label) for value, label in re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select)}


def selected_of(page: str, select_id: str) -> str | None:
    select = page.split(f'id="{select_id}"', 1)[1].split("</select>", 1)[0]
    match = re.search(r'<option value="([^"]*)" selected>', select)
    return match.group(1) if match else None


LABELS = {
    "qwen": "Qwen 3 — Qwen/Qwen3-8B",
    "sim": "Simulated vLLM (offline demo) — sim/llama-3.3",  # its name already ends with the model
    "down": "gemma — google/gemma-4-31b-it (last check failed)",
}


def test_every_endpoint_select_shows_the_model_and_a_failed_check(client, owner, endpoints):
    client.force_login(owner)
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoints["qwen"], title="t")
    Message.objects.create(conversation=conversation, position=0, role="user", content="Hi")
    index = client.get(reverse("chat:index")).content.decode()
    page = client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    fork = client.get(reverse("chat:conversation_fork", args=[conversation.public_id])).content.decode()
    by_pk = {str(e.pk): LABELS[key] for key, e in endpoints.items()}
    by_name = {e.name: LABELS[key] for key, e in endpoints.items()}
    assert options_of(index, "new_endpoint") == by_pk
    assert options_of(index, "import_endpoint") == {"": "(the one serving its model)", **by_pk}
    assert options_of(page, "id_endpoint") == by_pk  # the settings panel
    assert options_of(fork.split('id="fork-form"', 1)[1], "id_endpoint") == by_name


def test_the_header_names_the_model_and_follows_a_new_endpoint(client, owner, endpoints):
    client.force_login(owner)
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoints["qwen"], options=family_defaults(endpoints["qwen"]))
    page = client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    header = page.split('id="conversation-header"', 1)[1].split("</div>", 1)[0]
    assert "model <code>Qwen/Qwen3-8B</code>" in header
    # Picking another endpoint in the settings panel updates the header out of band.
    form = PanelForm(initial=PanelForm.initial_for(conversation), user=owner, conversation=conversation)
    data = {}
    for bound in form:
        value = bound.field.prepare_value(bound.value())
        data[bound.name] = "" if value is None else str(value)
    data["endpoint"] = str(endpoints["sim"].pk)
    response = client.post(reverse("chat:conversation_settings", args=[conversation.public_id]), data, headers={"HX-Request": "true"})
    assert '<span id="conversation-model" hx-swap-oob="true">· model <code>sim/llama-3.3</code></span>' in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.endpoint == endpoints["sim"]


def test_a_new_conversation_starts_on_the_last_endpoint_used_that_did_not_fail(client, owner, teammate, other_team, endpoints):
    qwen, sim, down = endpoints["qwen"], endpoints["sim"], endpoints["down"]
    client.force_login(owner)

    def preselected():
        return selected_of(client.get(reverse("chat:index")).content.decode(), "new_endpoint")

    def used(user, endpoint, ago: int) -> Conversation:
        conversation = Conversation.objects.create(owner=user, endpoint=endpoint)
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now() - timedelta(minutes=ago))
        return conversation

    # Nothing used yet: the first usable one (by name) whose last check did not fail.
    assert default_endpoint(owner) == qwen and preselected() == str(qwen.pk)
    used(owner, sim, ago=10)
    assert default_endpoint(owner) == sim and preselected() == str(sim.pk)
    used(owner, down, ago=1)  # more recent, but its last check failed
    used(teammate, qwen, ago=0)  # someone else's use does not count
    assert default_endpoint(owner) == sim
    sim.teams.add(other_team)  # no longer usable by alice
    assert default_endpoint(owner) == qwen
    qwen.last_check_ok = False
    qwen.save()
    assert default_endpoint(owner) is None  # every usable one failed: the select shows its first
    assert preselected() is None
