"""In Chromium: a page example pasted into *Import a cURL command* lands on a conversation named by
its question with a visible Run, and Run sends exactly the example; *New conversation* left without
sending leaves no row in the history.

The upstream is a simulator in the test process: the request it received is the one checked.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chat.models import Conversation, Message
from tests.browser.conftest import served_simulator, sim_endpoint, wait_synced
from tests.conftest import PASSWORD
from tests.upstream.conftest import page_examples

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "browser-import-key"
QWEN_EXAMPLE = next(e for e in page_examples() if e.id == "qwen-1")  # system + user, as on the page
QUESTION = "Give me a one-sentence explanation of what Qwen is."


@pytest.fixture(scope="module")
def sim():
    with served_simulator(KEY, token_delay=0.005) as app:
        yield app


def log_in_at_the_history(page, live_server_url: str, user) -> None:
    page.goto(f"{live_server_url}/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server_url}/")


def test_a_pasted_page_example_imports_and_runs_as_documented(live_server_url, page, owner, sim):
    endpoint = sim_endpoint(sim.url, KEY, model="sim/qwen3")
    log_in_at_the_history(page, live_server_url, owner)
    page.get_by_text("Import a cURL command").click()
    # Pasted as the page shows it: the model is "'"$QWEN_MODEL"'", the default target is kept.
    page.fill("#import_command", QWEN_EXAMPLE.curl)
    page.locator("form[action$='/conversations/import'] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    wait_synced(page)

    expect(page.locator("#conversation-title")).to_have_text(QUESTION)
    expect(page).to_have_title(f"{QUESTION} · HexGrid Playground")
    expect(page.locator("#conversation-model")).to_contain_text("sim/qwen3")
    run = page.locator("#run-now button")
    expect(run).to_be_visible()  # in the composer, not inside a closed <details>
    conversation = Conversation.objects.get(owner=owner)
    assert conversation.endpoint == endpoint
    # Only completions count: the page's load button and token meter read /metrics and /tokenize when they like.
    completions = lambda: [r for r in sim.requests if r.path.endswith("/chat/completions")]  # noqa: E731
    before = len(completions())

    run.click()
    expect(page.locator("#messages article.message.assistant")).to_have_count(1)
    expect(page.locator("#messages article.message.assistant")).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle")
    expect(page.locator("#run-now")).to_have_count(0)  # answered: nothing left to run

    assert len(completions()) == before + 1
    assert completions()[-1].json == {**QWEN_EXAMPLE.body, "model": "sim/qwen3"}
    expect(page.locator(".message.assistant .metrics")).to_contain_text("not streamed")  # the page's example
    expect(page.locator(".message.assistant .metrics")).not_to_contain_text("tok/s")


def test_new_conversation_left_without_sending_leaves_no_row(live_server_url, page, owner, sim):
    endpoint = sim_endpoint(sim.url, KEY, model="sim/qwen3")
    earlier = Conversation.objects.create(owner=owner, endpoint=endpoint, title="An earlier chat")
    Message.objects.create(conversation=earlier, position=0, role="user", content="Hello")
    log_in_at_the_history(page, live_server_url, owner)
    rows = page.locator("#conversation-list li a")
    expect(rows).to_have_text(["An earlier chat"])
    expect(page.locator("#new_endpoint option:checked")).to_have_text(f"{endpoint.name} — sim/qwen3")
    # Longer than the select is wide, the label wraps (the model was cut off: "Simulated vLLM (offline").
    shape = page.eval_on_selector("#new_endpoint", """select => {
        const style = getComputedStyle(select);
        const ruler = document.createElement("canvas").getContext("2d");
        ruler.font = style.font;
        return {
            appearance: style.appearance, height: select.clientHeight,
            text: ruler.measureText(select.selectedOptions[0].textContent).width,
            room: select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight),
            line: parseFloat(style.lineHeight) || 1.2 * parseFloat(style.fontSize),
        };
    }""")
    assert shape["text"] > shape["room"], shape
    assert shape["appearance"] == "base-select" and shape["height"] >= 2 * shape["line"], shape

    page.locator("form[action$='/conversations/new'] button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    expect(page.locator("#conversation-title")).to_have_text("New conversation")
    expect(page).to_have_title("New conversation · HexGrid Playground")
    assert Conversation.objects.filter(owner=owner).count() == 2

    page.go_back()
    page.goto(f"{live_server_url}/")  # (a fresh load, not the page kept from before)
    expect(rows).to_have_text(["An earlier chat"])
    expect(page.locator(".result-count")).to_contain_text("1 conversation")
