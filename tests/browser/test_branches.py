"""Branches in Chromium: what the page shows is what the next request sends, without a reload.

The upstream is a simulator in the test process, so each check reads the request body it
actually received.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chat.models import Conversation
from tests.browser.conftest import served_simulator, open_conversation, sim_endpoint

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "browser-branches-key"


@pytest.fixture(scope="module")
def sim():
    with served_simulator(KEY, token_delay=0.005) as app:
        yield app


def type_and_send(page, text: str) -> None:
    count = page.locator("#messages article.message").count()
    box = page.locator("#composer textarea")
    box.click()
    box.press_sequentially(text, delay=15)  # a person typing
    page.keyboard.press("Enter")
    settled(page, count + 2)


def settled(page, count: int) -> None:
    """The page shows `count` messages and none is still streaming."""
    expect(page.locator("#messages article.message")).to_have_count(count)
    expect(page.locator('#messages article.message[data-status="streaming"]')).to_have_count(0, timeout=20_000)
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle")


def shown_on_page(page) -> list[tuple[str, str]]:
    """(role, message id) of every message the page shows, in order."""
    return [
        (article.get_attribute("class").split()[1], article.get_attribute("id").removeprefix("msg-"))
        for article in page.locator("#messages article.message").all()
    ]


def sent(sim) -> list[str]:
    """The roles and contents of the last request's messages (no system prompt)."""
    return [(m["role"], m["content"]) for m in sim.requests[-1].json["messages"] if m["role"] != "system"]


def expected(conversation, page) -> list[tuple[str, str]]:
    """What the page shows, as the rows it stands for: checked against the request body."""
    by_id = {str(m.public_id): m for m in conversation.messages.all()}
    return [(role, by_id[public_id].content) for role, public_id in shown_on_page(page)]


def test_regenerate_edit_and_switch_keep_the_page_equal_to_the_next_request(live_server_url, page, owner, sim):
    conversation = open_conversation(page, live_server_url, owner, sim_endpoint(sim.url, KEY))
    for text in ("Question one", "Question two", "Question three"):
        type_and_send(page, text)
    expect(page.locator("#messages article.message")).to_have_count(6)

    # Regenerate the first answer: the page shows the new branch only, exactly what was sent.
    first_answer = page.locator("#messages article.message.assistant").first
    first_answer.hover()
    first_answer.locator("form.regenerate button").click()
    settled(page, 2)
    assert sent(sim) == [("user", "Question one")]
    expect(page.locator(".branch-nav .branch-index")).to_have_text("2/2")

    # The next send continues the shown branch: the page before sending is the request's history.
    before = expected(conversation, page)
    type_and_send(page, "Question four")
    assert sent(sim) == before + [("user", "Question four")]
    expect(page.locator("#messages article.message")).to_have_count(4)

    # Switch back to the first answer: its whole continuation returns, and a send continues it.
    page.locator(".branch-nav .branch-prev").first.click()
    expect(page.locator(".branch-nav .branch-index").first).to_have_text("1/2")
    expect(page.locator("#messages article.message")).to_have_count(6)
    assert [text for role, text in expected(conversation, page) if role == "user"] == ["Question one", "Question two", "Question three"]
    before = expected(conversation, page)
    type_and_send(page, "Question five")
    assert sent(sim) == before + [("user", "Question five")]
    expect(page.locator("#messages article.message")).to_have_count(8)

    # Edit and resend the second question: a sibling user message and its answer.
    second_question = page.locator("#messages article.message.user").nth(1)
    second_question.hover()
    second_question.locator("details.edit summary", has_text="Edit and resend").click()
    editor = second_question.locator("textarea[name=content]").first
    editor.fill("")
    editor.press_sequentially("Question two, better", delay=15)
    second_question.locator("button", has_text="Resend").click()
    settled(page, 4)
    assert sent(sim) == expected(conversation, page)[:3]
    expect(page.locator("#messages article.message.user").nth(1)).to_contain_text("Question two, better")
    conversation = Conversation.objects.get(pk=conversation.pk)
    assert [m.content for m in conversation.thread() if m.role == "user"] == ["Question one", "Question two, better"]


def test_a_teammate_watching_sees_the_branch_switch_live(live_server_url, browser, page, owner, teammate, sim):
    conversation = open_conversation(page, live_server_url, owner, sim_endpoint(sim.url, KEY))
    Conversation.objects.filter(pk=conversation.pk).update(visibility="team", team=owner.groups.first())
    type_and_send(page, "Hello")
    answer = page.locator("#messages article.message.assistant").first
    answer.hover()
    answer.locator("form.regenerate button").click()
    expect(page.locator(".branch-nav .branch-index")).to_have_text("2/2")
    settled(page, 2)

    context = browser.new_context()
    mate = context.new_page()
    try:
        from tests.conftest import PASSWORD

        mate.goto(f"{live_server_url}/c/{conversation.public_id}/")
        mate.fill("input[name=username]", teammate.username)
        mate.fill("input[name=password]", PASSWORD)
        mate.click("button[type=submit]")
        expect(mate.locator("#sync-state[data-synced]")).to_be_attached()
        expect(mate.locator(".branch-nav .branch-index")).to_have_text("2/2")
        expect(mate.locator(".branch-nav .branch-prev")).to_be_hidden()  # only the owner switches
        shown_before = mate.locator("#messages article.message.assistant").first.get_attribute("id")
        page.locator(".branch-nav .branch-prev").click()
        expect(mate.locator(".branch-nav .branch-index")).to_have_text("1/2")  # no reload
        assert mate.locator("#messages article.message.assistant").first.get_attribute("id") != shown_before
        assert shown_on_page(mate) == shown_on_page(page)
    finally:
        context.close()


def test_continue_with_choice_two_is_what_the_next_request_sends(live_server_url, page, owner, sim):
    conversation = open_conversation(page, live_server_url, owner, sim_endpoint(sim.url, KEY), options={"n": 2, "seed": 5})
    type_and_send(page, "Hello")
    row = page.locator(".message-row.choices")
    expect(row.locator(".message.assistant")).to_have_count(2)
    expect(row.locator(".choices-note")).to_contain_text("continues with choice 1")
    row.get_by_role("button", name="Continue with choice 2").click()
    expect(page.locator(".message-row.choices")).to_have_count(0)
    chosen = conversation.messages.get(role="assistant", is_active=True)
    assert chosen.choice_index == 1
    before = expected(conversation, page)
    assert before[-1] == ("assistant", chosen.content)
    count = page.locator("#messages article.message").count()
    box = page.locator("#composer textarea")
    box.press_sequentially("And then?", delay=15)
    page.keyboard.press("Enter")
    expect(page.locator("#messages .message-row.choices")).to_have_count(1, timeout=20_000)  # n=2 again
    expect(page.locator('#messages article.message[data-status="streaming"]')).to_have_count(0, timeout=20_000)
    assert page.locator("#messages article.message").count() == count + 3
    assert sent(sim) == before + [("user", "And then?")]
