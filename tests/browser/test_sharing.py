"""Two people in one team, two browser contexts in Chromium against a live Daphne: the owner shares
a conversation, the teammate finds it in the history, watches a completion stream in read-only,
then forks it and carries on in a conversation of their own."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from playwright.sync_api import expect

from chat.forms import family_defaults
from chat.models import ApiKey, Conversation, Endpoint, Message
from tests.browser.conftest import wait_synced
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server_url, user, path="/"):
    page.goto(f"{live_server_url}/login/?next={path}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(live_server_url + path.split("?")[0])))


@pytest.fixture
def simulated(live_server_url) -> Endpoint:
    api_key = ApiKey(name="simulator key (sharing)")
    api_key.set_secret(settings.SIMULATOR_API_KEY)
    api_key.save()
    return Endpoint.objects.create(
        name="Simulated Qwen", base_url=live_server_url + "/simulator/v1", model_id="sim/qwen3", api_key=api_key
    )


def test_share_watch_live_and_fork(live_server_url, browser, page, owner, teammate, team, simulated):
    conversation = Conversation.objects.create(
        owner=owner, endpoint=simulated, options=family_defaults(simulated), title="Team experiment",
        system_prompt="Answer in one paragraph.",
    )
    # A conversation is listed in the history once it has a message (empty ones are drafts).
    Message.objects.create(conversation=conversation, position=0, role="user", content="We plan a picnic on Saturday.")
    url = f"/c/{conversation.public_id}/"

    # The owner shares it with the team from the conversation page.
    log_in(page, live_server_url, owner, url)
    expect(page.locator("#visibility-status")).to_have_text("Private")
    page.select_option("#visibility-form select", "red team")
    expect(page.locator("#visibility-status")).to_have_text("Shared with red team")
    conversation.refresh_from_db()
    assert conversation.visibility == "team" and conversation.team == team

    # The teammate, in another browser context, finds it under the team's list and opens it.
    mate_context = browser.new_context()
    try:
        mate = mate_context.new_page()
        mate.set_default_timeout(10_000)
        log_in(mate, live_server_url, teammate, "/")
        mate.click("#history-scopes >> text=red team")
        mate.click("#conversation-list >> text=Team experiment")
        mate.wait_for_url(re.compile(str(conversation.public_id)))
        expect(mate.locator(".read-only-note")).to_contain_text("Read-only")
        expect(mate.locator("#composer")).to_have_count(0)
        expect(mate.locator("#visibility-form")).to_have_count(0)
        wait_synced(page)  # both sockets open
        wait_synced(mate)

        # The owner sends; the teammate sees the tokens arrive, read-only.
        page.fill("#composer textarea", "Hello team, what is the weather?")
        page.keyboard.press("Enter")
        expect(mate.locator(".message.user").last).to_contain_text("Hello team, what is the weather?")
        streaming = mate.locator('.message.assistant[data-status="streaming"]')
        expect(streaming).to_have_count(1)
        expect(mate.locator("#stream-status")).to_have_attribute("data-state", "streaming")
        expect(mate.locator(".message.assistant .reasoning")).not_to_be_empty()
        expect(mate.locator(".message.assistant")).to_have_attribute("data-status", "complete", timeout=30_000)
        expect(mate.locator(".message.assistant .content")).not_to_be_empty()
        expect(mate.locator("#composer")).to_have_count(0)
        expect(page.locator(".message.assistant")).to_have_attribute("data-status", "complete")

        # The teammate forks it and carries on in their own conversation.
        mate.click("#fork-link")
        expect(mate.locator("#fork-form select[name=endpoint]")).to_have_value("Simulated Qwen")
        mate.click("#fork-form button[type=submit]")
        mate.wait_for_url(lambda u: "/c/" in u and str(conversation.public_id) not in u)
        fork = Conversation.objects.get(owner=teammate)
        assert fork.forked_from == conversation and fork.system_prompt == "Answer in one paragraph."
        assert [m.role for m in fork.thread()] == ["user", "user", "assistant"]
        expect(mate.locator(".fork-source")).to_have_text("Team experiment")
        expect(mate.locator(".message.assistant")).to_have_attribute("data-status", "complete")
        expect(mate.locator("#composer textarea")).to_be_editable()
        wait_synced(mate)
        mate.fill("#composer textarea", "And tomorrow?")
        mate.keyboard.press("Enter")
        expect(mate.locator(".message.assistant")).to_have_count(2)
        expect(mate.locator(".message.assistant").last).to_have_attribute("data-status", "complete", timeout=30_000)
        assert [m.role for m in fork.thread()] == ["user", "user", "assistant", "user", "assistant"]
        assert conversation.messages.count() == 3  # the source is untouched
        expect(page.locator(".message")).to_have_count(3)  # and its owner saw nothing of the fork
    finally:
        mate_context.close()
