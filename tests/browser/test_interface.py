"""The interface in Chromium (issue 12): accessibility checked by axe-core on every kind of page, in
light and dark, at 1440 × 900 and 390 × 844; the layout (sidebar, thread, composer and settings at
once on a wide screen, drawers on a phone, no sideways scrolling); the thread's scrolling; the theme
switch; dialogs, confirmations, copy buttons; the settings filter; n > 1 choices side by side.

axe-core comes from its npm package (frontend/package.json, copied to tests/browser/vendor/) and is
evaluated through DevTools, which the page's CSP (script-src 'self') does not apply to: the pages are
audited exactly as served.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.template.loader import render_to_string
from playwright.sync_api import expect

from chat import probe
from chat.models import Message
from tests.browser.batched import batched
from tests.browser.compared import compared
from tests.browser.conftest import sim_endpoint, until, wait_synced
from tests.browser.library_pages import library_pages
from tests.browser.rich import ANSWER, TAGLINES, rich_conversation
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


# --- helpers ---------------------------------------------------------------------------------------


def new_page(browser, viewport=DESKTOP, theme="light", **options):
    """A page in a context of its own: viewport, system colour scheme (the app's theme is "auto")."""
    context = browser.new_context(viewport=viewport, color_scheme=theme, **options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


def log_in(page, live_server_url: str, user, path: str = "/") -> None:
    page.goto(f"{live_server_url}/login/?next={path}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(live_server_url + path.split("?")[0]) + r"(\?.*)?$"))


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(
            " ".join(node["target"]) + (f" [{node['failureSummary'].splitlines()[-1].strip()}]" if node.get("failureSummary") else "")
            for node in v["nodes"][:4])
        for v in results["violations"] if v["impact"] in ("serious", "critical")
    ]


def horizontal_overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def in_viewport(page, selector: str) -> bool:
    """Wholly inside the viewport, without scrolling the page."""
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return box is not None and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= size["width"] + 0.5 \
        and box["y"] + box["height"] <= size["height"] + 0.5


@pytest.fixture
def endpoint(live_server_url):
    return sim_endpoint(live_server_url + "/simulator/v1", settings.SIMULATOR_API_KEY)


@pytest.fixture
def rich(staff, endpoint):
    """The audit's conversation: reasoning, a tool call and result, code, logprobs, n = 3. The staff
    user owns it, so one log-in also reaches the endpoint console."""
    return rich_conversation(staff, endpoint)


# --- axe on every kind of page, in both themes, at both sizes ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1440x900", "390x844"])
def test_every_page_passes_axe_without_serious_violations(live_server_url, browser, staff, rich, endpoint, theme, viewport):
    found: dict[str, list[str]] = {}
    page = new_page(browser, viewport, theme)

    shots = os.environ.get("AUDIT_SCREENSHOTS")  # a folder: every audited page is saved there, to look at

    def audit(name: str) -> None:
        if shots:
            label = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            page.screenshot(path=f"{shots}/{viewport['width']}-{theme}-{len(found):02d}-{label}.png", full_page=True)
        found[name] = serious_violations(page)
        if viewport is PHONE:
            overflow = horizontal_overflow(page)
            if overflow > 0:
                found[name].append(f"the page scrolls sideways by {overflow} px")

    page.goto(f"{live_server_url}/login/")
    audit("log-in")
    log_in(page, live_server_url, staff)
    audit("history")

    page.goto(f"{live_server_url}/c/{rich.public_id}/")
    wait_synced(page)
    expect(page.locator(".message-row.choices .message")).to_have_count(3)
    assert in_viewport(page, "#composer"), "the composer is visible without scrolling"
    audit("conversation")

    if viewport is PHONE:  # the settings open as a drawer
        page.locator("#settings-toggle").click()
        expect(page.locator("#settings")).to_be_visible()
    page.evaluate("document.querySelectorAll('#settings-panel details.option-group').forEach((d) => { d.open = true; })")
    audit("settings, every group open")
    if viewport is PHONE:
        page.keyboard.press("Escape")
        expect(page.locator("#settings")).to_be_hidden()

    for link, name in (("View code", "View code dialog"), ("Inspect", "inspector dialog")):
        page.locator(".row-usage").get_by_text(link).click()
        dialog = page.locator("#dialog")
        expect(dialog).to_be_visible()
        expect(dialog.locator("pre .highlight, pre.highlight span").first).to_be_attached()  # highlighted
        audit(name)
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
    page.locator("#next-request-button").click()
    expect(page.locator("#next-request-json")).to_be_visible()
    audit("next-request dialog")
    page.keyboard.press("Escape")
    page.locator("#prompt-button").click()  # issue 17: What the model sees
    expect(page.locator("#prompt-dialog .prompt-text")).to_be_visible()
    audit("what-the-model-sees dialog")
    page.keyboard.press("Escape")
    completion = rich.completions.first()
    page.goto(f"{live_server_url}/completions/{completion.public_id}/templated")
    audit("what the model saw, as a page")

    page.goto(f"{live_server_url}/admin/chat/endpoint/")
    audit("endpoint console: endpoints")
    # Issue 17: the endpoint page with its probe grid and load figures, the probe's confirmation (the probe
    # runs in a thread: Playwright's loop holds this one).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(probe.run, endpoint).result()
    page.goto(f"{live_server_url}/admin/chat/endpoint/{endpoint.pk}/change/")
    expect(page.locator("table.probe-grid tbody tr")).to_have_count(18)
    audit("endpoint console: an endpoint, probed")
    page.goto(f"{live_server_url}/admin/chat/endpoint/probe/?ids={endpoint.pk}")
    audit("endpoint console: probe confirmation")
    page.goto(f"{live_server_url}/c/{rich.public_id}/fork")
    audit("fork")
    comparison = compared(staff, endpoint)  # issue 15: a comparison, its diff, a new one, Replay on…
    page.goto(f"{live_server_url}/c/{comparison.public_id}/")
    wait_synced(page)
    audit("comparison")
    if viewport is PHONE:  # the diff, the panes and the shared settings open as a drawer
        page.locator("#settings-toggle").click()
        expect(page.locator("#settings")).to_be_visible()
    page.locator("#diff-button").click()
    expect(page.locator("#diff-view .first-divergence")).to_be_visible()
    audit("comparison: diff")
    page.goto(f"{live_server_url}/compare/new")
    audit("new comparison")
    page.goto(f"{live_server_url}/completions/{comparison.completions.first().public_id}/replay")
    audit("Replay on…")
    prompt, testset = library_pages(staff)  # issue 16: the library, a prompt and its diff, a test set, Use a prompt
    page.goto(f"{live_server_url}/library/")
    audit("library")
    page.goto(f"{live_server_url}/p/{prompt.public_id}/")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#prompt-diff ins").first).to_be_visible()
    audit("prompt editor and a diff")
    page.goto(f"{live_server_url}/t/{testset.public_id}/")
    page.get_by_role("button", name="Edit row 1", exact=True).click()
    expect(page.locator("#case-0.editing")).to_be_visible()
    audit("test set, a row being edited")
    page.goto(f"{live_server_url}/c/{rich.public_id}/")
    wait_synced(page)
    page.get_by_text("Use a prompt from the library…").click()
    page.select_option("#use-prompt-choice", str(prompt.public_id))
    expect(page.locator("#var-city")).to_be_visible()
    audit("conversation: Use a prompt")
    run, earlier = batched(staff, endpoint)  # issue 16: batch runs: the list, a new run, a finished run, compare
    page.goto(f"{live_server_url}/batch/")
    audit("batch runs")
    page.goto(f"{live_server_url}/batch/new")
    audit("new batch run")
    page.goto(f"{live_server_url}/batch/{run.public_id}/")
    expect(page.locator("#batch-results td.batch-cell")).to_have_count(3)
    audit("batch run with its results")
    page.goto(f"{live_server_url}/batch/{run.public_id}/compare?with={earlier.public_id}")
    expect(page.locator("#overall-delta")).to_be_visible()
    audit("batch runs compared")
    page.goto(f"{live_server_url}/no/such/page/")
    audit("404")
    page.set_content(render_to_string("500.html"))  # (rendered as Django renders it: without a request)
    audit("500")
    page.context.close()

    clerk = User.objects.create_user("clerk", password=PASSWORD, is_staff=True)  # staff, without permissions
    page = new_page(browser, viewport, theme)
    log_in(page, live_server_url, clerk, "/admin/chat/endpoint/")
    expect(page.get_by_text("You may not open this page")).to_be_visible()
    audit("403")
    page.context.close()

    problems = {name: lines for name, lines in found.items() if lines}
    assert not problems, json.dumps(problems, indent=2, ensure_ascii=False)


# --- layout -------------------------------------------------------------------------------------------------


def test_a_wide_screen_shows_sidebar_thread_composer_and_settings_at_once(live_server_url, browser, staff, rich):
    page = new_page(browser, DESKTOP)
    log_in(page, live_server_url, staff, f"/c/{rich.public_id}/")
    wait_synced(page)
    for part in ("#sidebar", "#thread", "#composer", "#settings-panel"):
        assert in_viewport(page, part) or page.locator(part).bounding_box()["height"] > 0, part
        expect(page.locator(part)).to_be_in_viewport()
    assert in_viewport(page, "#composer")
    sidebar, thread, settings_ = (page.locator(s).bounding_box() for s in ("#sidebar", "#thread", "#settings"))
    assert sidebar["x"] + sidebar["width"] <= thread["x"] + 1 and thread["x"] + thread["width"] <= settings_["x"] + 1
    expect(page.locator("#settings-toggle")).to_be_hidden()  # a column here, not a drawer
    expect(page.locator(".sidebar .recent a[aria-current=page]")).to_have_text(rich.title)

    # Three choices side by side, each labelled, the shared usage once.
    cells = [page.locator(".message-row.choices .choice-cell").nth(i).bounding_box() for i in range(3)]
    assert abs(cells[0]["y"] - cells[2]["y"]) < 1 and cells[0]["x"] + cells[0]["width"] <= cells[1]["x"] <= cells[2]["x"]
    expect(page.locator(".message-row.choices .choice-label")).to_have_text(["Choice 1", "Choice 2", "Choice 3"])
    expect(page.locator(".message-row.choices .row-usage")).to_have_count(1)
    expect(page.locator(".message-row.choices .row-usage")).to_contain_text("tokens: 118 in / 192 out")
    expect(page.locator(".message-row.choices .message .metrics", has_text="tokens:")).to_have_count(0)

    # The sidebar collapses, and stays collapsed on the next page.
    page.locator("#sidebar-toggle").click()
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator("#sidebar-toggle")).to_have_attribute("aria-expanded", "false")
    page.reload()
    expect(page.locator("#sidebar")).to_be_hidden()
    page.locator("#sidebar-toggle").click()
    expect(page.locator("#sidebar")).to_be_visible()
    page.context.close()


def test_on_a_phone_the_sidebar_and_the_settings_are_drawers(live_server_url, browser, staff, rich):
    page = new_page(browser, PHONE)
    log_in(page, live_server_url, staff, f"/c/{rich.public_id}/")
    wait_synced(page)
    assert horizontal_overflow(page) <= 0
    assert in_viewport(page, "#composer")
    expect(page.locator("#settings")).to_be_hidden()
    expect(page.locator("#sidebar")).to_be_hidden()

    toggle = page.locator("#settings-toggle")
    toggle.click()
    drawer = page.locator("#settings")
    expect(drawer).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#settings-filter")).to_be_focused()  # focus moves into the drawer
    until(lambda: drawer.bounding_box()["x"] + drawer.bounding_box()["width"] <= PHONE["width"] + 0.5)  # slid in
    assert drawer.bounding_box()["x"] > 0  # over the thread, from the right
    assert drawer.evaluate("el => getComputedStyle(el).position") == "fixed"
    page.locator("#id_temperature").fill("0.4")  # usable in the drawer
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(toggle).to_be_focused()  # back to the button that opened it

    page.locator("#sidebar-toggle").click()
    expect(page.locator("#sidebar")).to_be_visible()
    page.locator(".scrim").click(position={"x": PHONE["width"] - 10, "y": 400})  # beside the drawer
    expect(page.locator("#sidebar")).to_be_hidden()
    page.context.close()


# --- scrolling -------------------------------------------------------------------------------------------------


def long_conversation(owner, endpoint, messages: int = 12):
    from chat.forms import family_defaults
    from chat.models import Conversation

    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint, title="A long one", options=family_defaults(endpoint))
    parent = None
    for i in range(messages):  # several screens
        parent = Message.objects.create(conversation=conversation, parent=parent, position=i, role="user" if i % 2 == 0 else "assistant",
                                        content=f"Message {i}\n\n" * 5)
    return conversation


def test_the_thread_opens_at_the_newest_message_and_other_pages_at_the_top(live_server_url, browser, staff, endpoint):
    conversation = long_conversation(staff, endpoint)
    page = new_page(browser, PHONE)
    log_in(page, live_server_url, staff, "/")
    assert page.evaluate("window.scrollY") == 0
    page.goto(f"{live_server_url}/c/{conversation.public_id}/")
    wait_synced(page)
    at_end = "(() => { const t = document.getElementById('thread'); return t.scrollHeight - t.clientHeight - t.scrollTop < 2; })()"
    until(lambda: page.evaluate(at_end), timeout=5)
    assert page.evaluate("window.scrollY") == 0  # the page itself does not scroll
    expect(page.locator("#messages .message").last).to_be_in_viewport()
    expect(page.locator("#jump-latest")).to_be_hidden()

    # The reader scrolls up: nothing pulls them back, and Jump to latest brings them down.
    page.locator("#thread").evaluate("t => { t.scrollTop = 0; t.dispatchEvent(new Event('scroll')); }")
    expect(page.locator("#jump-latest")).to_be_visible()
    page.locator("#jump-latest").click()
    until(lambda: page.evaluate(at_end), timeout=5)
    expect(page.locator("#jump-latest")).to_be_hidden()
    page.context.close()


def test_autoscroll_follows_a_stream_until_the_reader_scrolls_up(live_server_url, browser, owner, endpoint):
    conversation = long_conversation(owner, endpoint, messages=8)
    page = new_page(browser, PHONE)
    log_in(page, live_server_url, owner, f"/c/{conversation.public_id}/")
    wait_synced(page)
    at_end = "(() => { const t = document.getElementById('thread'); return t.scrollHeight - t.clientHeight - t.scrollTop < 50; })()"
    page.fill("#composer textarea", "Tell me a long story")
    page.keyboard.press("Enter")
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "streaming")
    assert page.evaluate(at_end)  # following the stream
    page.locator("#thread").evaluate("t => { t.scrollTop = 0; }")
    expect(page.locator("#jump-latest")).to_be_visible()
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle", timeout=20_000)
    assert page.evaluate("document.getElementById('thread').scrollTop") == 0  # left where the reader is
    page.context.close()


# --- theme --------------------------------------------------------------------------------------------


def test_the_theme_switch_is_remembered_and_themes_the_console_too(live_server_url, browser, staff):
    page = new_page(browser, DESKTOP, theme="light")
    log_in(page, live_server_url, staff, "/")
    root = page.locator("html")
    expect(root).to_have_attribute("data-theme", "auto")
    background = "getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(background)
    page.locator(".theme-switch label", has_text="Dark").click()
    expect(root).to_have_attribute("data-theme", "dark")
    assert page.evaluate(background) != light
    assert page.evaluate("getComputedStyle(document.documentElement).colorScheme") == "dark"
    page.reload()
    expect(root).to_have_attribute("data-theme", "dark")
    expect(page.locator(".theme-switch input[value=dark]")).to_be_checked()
    dark = page.evaluate(background)
    page.goto(f"{live_server_url}/admin/")
    expect(root).to_have_attribute("data-theme", "dark")  # Django's theme.js reads the same key
    assert page.evaluate(background) == dark  # and the console wears the same colours
    page.goto(f"{live_server_url}/")
    page.locator(".theme-switch label", has_text="System").click()
    expect(root).to_have_attribute("data-theme", "auto")
    assert page.evaluate(background) == light  # the system (light, here) again
    page.context.close()


# --- messages: actions, copy, dialogs, confirmations ----------------------------------------------------------


def test_message_actions_show_on_hover_and_focus_and_always_on_touch(live_server_url, browser, staff, rich):
    page = new_page(browser, DESKTOP)
    log_in(page, live_server_url, staff, f"/c/{rich.public_id}/")
    wait_synced(page)
    answer = page.locator("#messages article.message.assistant", has_text="22 °C").first
    actions = answer.locator(".message-actions")
    opacity = "el => getComputedStyle(el).opacity"
    page.mouse.move(0, 0)
    until(lambda: actions.evaluate(opacity) == "0")
    answer.hover()
    until(lambda: actions.evaluate(opacity) == "1")
    page.mouse.move(0, 0)
    actions.get_by_role("button", name="Copy").focus()  # keyboard focus reveals them as well
    until(lambda: actions.evaluate(opacity) == "1")
    page.context.close()

    touch = new_page(browser, PHONE, has_touch=True, is_mobile=True)
    log_in(touch, live_server_url, staff, f"/c/{rich.public_id}/")
    wait_synced(touch)
    first = touch.locator("#messages .message-actions").first
    assert first.evaluate(opacity) == "1"
    touch.context.close()


def test_copy_buttons_on_messages_and_code_blocks(live_server_url, browser, staff, rich):
    page = new_page(browser, DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    log_in(page, live_server_url, staff, f"/c/{rich.public_id}/")
    wait_synced(page)
    answer = page.locator("#messages article.message.assistant", has_text="22 °C").first
    answer.hover()
    answer.locator(".message-actions").get_by_role("button", name="Copy").click()
    expect(answer.locator(".message-actions").get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == ANSWER  # the markdown, as the model wrote it

    block = answer.locator(".content .code-block")
    expect(block.locator("pre .highlight, pre span").first).to_be_attached()
    block.hover()
    block.get_by_role("button", name="Copy the code").click()
    assert page.evaluate("navigator.clipboard.readText()").startswith('weather = {"location": "Paris, France"')

    call = page.locator(".tool-call .code-block").first
    call.get_by_role("button", name="Copy the code").click()
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == {"location": "Paris, France"}
    page.context.close()


def test_dialogs_close_on_escape_and_backdrop_and_return_focus(live_server_url, browser, staff, rich):
    page = new_page(browser, DESKTOP)
    log_in(page, live_server_url, staff, f"/c/{rich.public_id}/")
    wait_synced(page)
    dialog = page.locator("#dialog")
    for link in ("View code", "Inspect"):
        opener = page.locator(".row-usage").get_by_text(link)
        opener.click()
        expect(dialog).to_be_visible()
        assert dialog.evaluate("d => d.open && d.matches(':modal')")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(opener).to_be_focused()
    opener = page.locator(".row-usage").get_by_text("View code")
    opener.click()
    expect(dialog).to_be_visible()
    page.mouse.click(5, 5)  # the backdrop
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()

    preview = page.locator("#next-request-button")
    preview.click()
    expect(page.locator("#next-request-dialog")).to_be_visible()
    page.mouse.click(5, 5)
    expect(page.locator("#next-request-dialog")).to_be_hidden()
    expect(preview).to_be_focused()

    # The Export menu closes like a menu: Esc, or a click elsewhere.
    export = page.locator("details.export")
    export.locator("summary").click()
    expect(export.get_by_role("link", name="Export JSON")).to_be_visible()
    page.keyboard.press("Escape")
    expect(export).not_to_have_attribute("open", "")
    export.locator("summary").click()
    page.locator("#conversation-title").click()
    expect(export).not_to_have_attribute("open", "")
    page.context.close()


def test_removing_a_message_asks_first_in_a_dialog(live_server_url, browser, staff, rich):
    page = new_page(browser, DESKTOP)
    log_in(page, live_server_url, staff, f"/c/{rich.public_id}/")
    wait_synced(page)
    question = page.locator("#messages article.message.user").first
    count = page.locator("#messages article.message").count()
    question.hover()
    question.get_by_role("button", name="Remove").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("Remove this message from the conversation?")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice first
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(page.locator("#messages article.message")).to_have_count(count)

    question.hover()
    question.get_by_role("button", name="Remove").click()
    confirm.get_by_role("button", name="Remove").click()
    expect(page.locator("#messages article.message")).to_have_count(count - 1)
    page.context.close()


# --- the settings panel -----------------------------------------------------------------------------------


def test_the_settings_filter_and_the_modified_only_view(live_server_url, browser, staff, rich):
    page = new_page(browser, DESKTOP)
    log_in(page, live_server_url, staff, f"/c/{rich.public_id}/")
    wait_synced(page)
    panel = page.locator("#settings-panel")
    most_used = [f"#field-{name}" for name in ("temperature", "top_p", "max_tokens", "thinking", "stop")]
    fields = panel.locator(".field")
    ids = fields.evaluate_all("els => els.map((el) => '#' + el.id)")
    assert ids[1:6] == most_used  # right after the endpoint
    helps = panel.locator(".help").all_text_contents()
    assert len(helps) == len(set(helps)), "a help text is shown once"
    saves = []
    page.on("request", lambda r: saves.append(r) if r.url.endswith("/settings") else None)

    penalties = panel.locator("details.option-group[data-group='penalties']")
    expect(penalties).not_to_have_attribute("open", "")
    page.locator("#settings-filter").fill("penalty")
    expect(penalties).to_have_attribute("open", "")  # a group with matches opens
    expect(panel.locator("#field-presence_penalty")).to_be_visible()
    expect(panel.locator("#field-temperature")).to_be_hidden()
    expect(panel.locator("details.option-group[data-group='tools']")).to_be_hidden()
    page.locator("#settings-filter").fill("no such option")
    expect(page.locator("#settings-filter-empty")).to_be_visible()
    page.locator("#settings-filter").fill("")
    expect(penalties).not_to_have_attribute("open", "")  # as the reader left it
    expect(panel.locator("#field-temperature")).to_be_visible()

    page.locator("#settings-modified").check()
    expect(panel.locator("#field-temperature")).to_be_visible()  # set (0.6 for Qwen)
    expect(panel.locator("#field-n")).to_be_visible()  # n = 3
    expect(panel.locator("#field-presence_penalty")).to_be_hidden()  # unset
    expect(panel.locator("#field-system_prompt")).to_be_hidden()
    page.wait_for_timeout(600)  # (an autosave would have gone out by now)
    assert saves == []  # neither the filter nor the switch is a setting
    page.locator("#settings-modified").uncheck()
    expect(panel.locator("#field-presence_penalty")).to_be_attached()

    # Empty JSON editors are not errors (blank means unset).
    panel.locator("details.option-group[data-group='tools'] > summary").click()
    panel.locator("details.option-group[data-group='output format'] > summary").click()
    expect(panel.locator("#field-canned_results .cm-editor")).to_be_visible()
    assert panel.locator(".cm-lint-marker-error, .cm-lintRange-error").count() == 0
    page.context.close()
