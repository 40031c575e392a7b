"""The logprob token view in Chromium: tokens tinted while they stream, the popover on hover and keyboard
focus, the least-likely list jumping to its token, the text/tokens switch and the threshold."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from chat.models import Conversation, Message
from chat.simulator import make_simulator
from tests.browser.conftest import open_conversation, sim_endpoint, wait_synced
from tests.servers import serve_asgi

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "browser-logprobs-key"
TOKENS = ".message.assistant .lp-content .lp-ln > span"


@pytest.fixture(scope="module")
def slow_sim():
    """A simulator the live server reaches over a socket, slow enough to watch tokens arrive."""
    with serve_asgi(make_simulator(api_key=KEY, token_delay=0.02)) as url:
        yield url + "/v1"


def open_with_logprobs(page, live_server_url, owner, base_url) -> Conversation:
    endpoint = sim_endpoint(base_url, KEY)
    return open_conversation(page, live_server_url, owner, endpoint, {"logprobs": True, "top_logprobs": 5})


def ask(page, text: str) -> None:
    page.fill("#composer textarea", text)
    page.keyboard.press("Enter")


def test_tokens_stream_tinted_then_hover_and_keyboard_show_the_alternatives(live_server_url, page, owner, slow_sim):
    conversation = open_with_logprobs(page, live_server_url, owner, slow_sim)
    ask(page, "Hello, tell me about token probabilities")
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "streaming")
    thinking_tokens = page.locator(".message.assistant .lp-reasoning .lp-ln > span")
    expect(thinking_tokens.first).to_be_visible()  # live, while streaming
    assert page.locator("#stream-status").get_attribute("data-state") == "streaming"
    assert re.search(r"\bp\d\b", thinking_tokens.first.get_attribute("class"))  # tinted
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle", timeout=20_000)
    reply = Message.objects.get(conversation=conversation, role="assistant")
    assert reply.status == "complete"

    tokens = page.locator(TOKENS)
    expect(tokens.first).to_be_visible()
    expect(page.locator(".message.assistant > .content")).to_be_hidden()  # the tokens view replaces the text
    assert tokens.count() == len(reply.logprobs["content"])

    # Hover: the chosen token and its five alternatives, as bars.
    tokens.nth(3).hover()
    popover = page.locator("#lp-pop")
    expect(popover).to_be_visible()
    expect(popover.locator(".lp-alts li")).to_have_count(5)
    expect(popover.locator(".lp-alts li.chosen")).to_have_count(1)
    expect(popover).to_contain_text("%")
    chosen = json.loads(tokens.nth(3).get_attribute("data-a"))[0][0]
    expect(popover.locator(".lp-alts li.chosen code")).to_have_text(chosen.replace(" ", "·").replace("\n", "↵"))

    # Keyboard: Tab reaches the view (one tab stop), arrows move, the popover follows; Escape closes it.
    page.mouse.move(0, 0)
    page.locator(TOKENS + "[tabindex='0']").focus()
    expect(popover).to_be_visible()
    page.keyboard.press("ArrowRight")
    focused = page.locator(":focus")
    expect(focused).to_have_attribute("aria-describedby", "lp-pop")
    assert focused.evaluate("(el, sel) => [...document.querySelectorAll(sel)].indexOf(el)", TOKENS) == 1
    assert page.locator(TOKENS + "[tabindex='0']").count() == 1  # roving tabindex
    page.keyboard.press("End")
    assert page.locator(":focus").evaluate("(el, sel) => [...document.querySelectorAll(sel)].indexOf(el)", TOKENS) == tokens.count() - 1
    page.keyboard.press("Escape")
    expect(popover).to_be_hidden()


def test_least_likely_list_jumps_to_its_token_and_controls_switch_views(live_server_url, page, owner, slow_sim):
    open_with_logprobs(page, live_server_url, owner, slow_sim)
    ask(page, "Hi")
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle", timeout=20_000)
    section = page.locator(".message.assistant .lp")
    part = page.locator(".message.assistant .lp-content").locator("xpath=..")
    jump = part.locator(".lp-jump").first
    expect(jump).to_be_visible()
    index = int(jump.get_attribute("data-lp-jump"))
    shown = jump.locator(".vp").inner_text()

    jump.click()
    focused = page.locator(":focus")
    assert focused.evaluate("(el, sel) => [...document.querySelectorAll(sel)].indexOf(el)", TOKENS) == index
    expect(page.locator("#lp-pop")).to_be_visible()
    expect(page.locator("#lp-pop .lp-pop-head")).to_contain_text(shown)
    assert focused.is_visible() and "lp-hit" in focused.get_attribute("class")

    # Threshold: the count follows; text view: the markdown is back, the tokens hidden.
    before = int(part.locator("[data-lp-under]").inner_text())
    section.locator("select[data-lp-th]").select_option("50")
    expect(part.locator("[data-lp-th-label]")).to_have_text("50%")
    assert int(part.locator("[data-lp-under]").inner_text()) >= before
    section.locator("[data-lp-view=text]").click()
    expect(page.locator(".message.assistant > .content")).to_be_visible()
    expect(page.locator(TOKENS).first).to_be_hidden()
    page.reload()  # the preference is kept
    wait_synced(page)
    expect(page.locator(".message.assistant > .content")).to_be_visible()
    page.locator(".message.assistant [data-lp-view=tokens]").click()
    expect(page.locator(TOKENS).first).to_be_visible()


def test_a_long_answer_renders_lazily_and_stays_reachable(live_server_url, page, owner, slow_sim):
    """2,000 tokens: blocks after the first screens wait until scrolled near; keyboard and jumps still reach them."""
    conversation = open_with_logprobs(page, live_server_url, owner, slow_sim)
    words = [f" word{i % 50}" + ("\n" if i % 12 == 11 else "") for i in range(2000)]
    entries = [
        {"token": w, "logprob": -0.01 - (i == 1900) * 6.0, "bytes": list(w.encode()),
         "top_logprobs": [{"token": w, "logprob": -0.01, "bytes": list(w.encode())}]}
        for i, w in enumerate(words)
    ]
    Message.objects.create(conversation=conversation, position=0, role="user", content="Long, please")
    Message.objects.create(conversation=conversation, position=1, role="assistant", content="".join(words),
                           logprobs={"content": entries})
    page.reload()
    wait_synced(page)
    tokens = page.locator(TOKENS)
    expect(tokens.first).to_be_visible()
    assert tokens.count() == 2000
    lazy = page.locator(".lp-content .lp-ln.lz")
    assert lazy.count() > 50  # not rendered yet

    page.locator(TOKENS + "[tabindex='0']").focus()
    page.keyboard.press("End")  # into a block that was never rendered
    focused = page.locator(":focus")
    assert focused.evaluate("(el, sel) => [...document.querySelectorAll(sel)].indexOf(el)", TOKENS) == 1999
    expect(focused).to_be_in_viewport()
    expect(page.locator("#lp-pop")).to_be_visible()

    page.locator(".lp-content").locator("xpath=..").locator(".lp-jump").first.click()  # the 6-nat outlier
    focused = page.locator(":focus")
    assert focused.evaluate("(el, sel) => [...document.querySelectorAll(sel)].indexOf(el)", TOKENS) == 1900
    expect(focused).to_be_in_viewport()
    before = lazy.count()
    waiting = lazy.first.element_handle()
    waiting.scroll_into_view_if_needed()  # scrolling near a block reveals it
    page.wait_for_function("el => !el.classList.contains('lz')", arg=waiting)
    assert lazy.count() < before
