"""What you see in the settings panel is what is sent (issue 11, points 2 and 3), in Chromium.

The upstream is a simulator in the test process, so each check reads the request body it actually
received. People type at a human pace; saves that land while they type are made slow on purpose
(DevTools network latency) so they land mid-word.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from chat.models import Conversation
from tests.browser.conftest import served_simulator, open_conversation, saved_options, sim_endpoint, until, wait_synced

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "browser-settings-key"


@pytest.fixture(scope="module")
def sim():
    with served_simulator(KEY, token_delay=0.002) as app:
        yield app


@pytest.fixture(autouse=True)
def _no_requests_yet(sim):
    sim.requests.clear()


def open_page(page, live_server_url, owner, sim) -> Conversation:
    return open_conversation(page, live_server_url, owner, sim_endpoint(sim.url, KEY))


def group(page, name: str):
    return page.locator(f"details.option-group[data-group='{name}']")


def open_group(page, name: str) -> None:
    if group(page, name).get_attribute("open") is None:
        group(page, name).locator("summary").click()
    expect(group(page, name)).to_have_attribute("open", "")


def retype(locator, text: str, delay: int = 90) -> None:
    """Click into a field, select what it holds and type over it, key by key."""
    locator.click()
    locator.press("Control+a")
    locator.press_sequentially(text, delay=delay)


def compose(page, text: str) -> None:
    box = page.locator("#composer textarea")
    box.click()
    box.press_sequentially(text, delay=15)


def wait_idle(page, answers: int) -> None:
    expect(page.locator("#messages article.message.assistant")).to_have_count(answers)
    expect(page.locator('#messages article.message[data-status="streaming"]')).to_have_count(0, timeout=20_000)
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle")


def chat_requests(sim) -> list[dict]:
    return [r.json for r in sim.requests if r.path.endswith("/chat/completions")]


def is_save(request) -> bool:
    return request.method == "POST" and request.url.endswith("/settings")


def send_and_read(page, sim, text: str) -> dict:
    """Type `text`, press Enter, wait for the answer: the request body the simulator received."""
    compose(page, text)
    page.keyboard.press("Enter")
    wait_idle(page, 1)
    return chat_requests(sim)[-1]


def normal_network(cdp) -> None:
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})


def slow_network(page, latency_ms: int):
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions",
             {"offline": False, "latency": latency_ms, "downloadThroughput": -1, "uploadThroughput": -1})
    return cdp


def test_typing_while_an_autosave_lands_keeps_the_value_the_focus_and_the_open_groups(live_server_url, page, owner, sim):
    conversation = open_page(page, live_server_url, owner, sim)
    open_group(page, "penalties")  # a group the user opened (closed by default)
    top_p = page.locator("#id_top_p")
    expect(top_p).to_have_value("0.8")
    cdp = slow_network(page, 1500)

    retype(page.locator("#id_seed"), "7")
    with page.expect_request(is_save) as posted:
        top_p.click()  # leaving seed saves it, 400 ms later
    assert "seed=7" in posted.value.post_data and "top_p=0.8" in posted.value.post_data
    with page.expect_response(lambda r: is_save(r.request)):
        top_p.press("Control+a")
        top_p.press_sequentially("0.", delay=120)  # mid-word when the save (top_p 0.8) comes back
    expect(page.locator("#panel-status")).to_contain_text("Saved")
    top_p.press_sequentially("6", delay=120)

    expect(top_p).to_be_focused()
    expect(top_p).to_have_value("0.6")
    expect(group(page, "penalties")).to_have_attribute("open", "")
    expect(group(page, "sampling")).to_have_attribute("open", "")
    assert saved_options(conversation)["seed"] == 7 and saved_options(conversation)["top_p"] == 0.8

    normal_network(cdp)
    page.locator("#settings-panel h2").click()  # leaving top_p saves what was typed
    until(lambda: saved_options(conversation).get("top_p") == 0.6)
    expect(top_p).to_have_value("0.6")
    sent = send_and_read(page, sim, "Hello")
    assert sent["top_p"] == 0.6 and sent["seed"] == 7


def test_a_preset_morphs_the_panel_and_the_json_editor_shows_the_new_value(live_server_url, page, owner, sim):
    conversation = open_page(page, live_server_url, owner, sim)
    open_group(page, "advanced")
    open_group(page, "tools")
    page.locator("#field-tools .cm-content").click()  # the editor works before any swap
    page.get_by_role("button", name="get_weather", exact=True).click()
    editor = page.locator("#field-tools .cm-editor")
    expect(editor).to_have_count(1)  # kept, not destroyed nor doubled
    expect(editor.locator(".cm-content")).to_contain_text('"get_weather"')
    expect(page.locator("#id_tools")).to_be_hidden()
    expect(group(page, "advanced")).to_have_attribute("open", "")
    page.get_by_role("button", name="get_current_weather", exact=True).click()
    expect(editor.locator(".cm-content")).to_contain_text('"get_current_weather"')
    expect(editor).to_have_count(1)
    assert [t["function"]["name"] for t in Conversation.objects.get(pk=conversation.pk).tools] == ["get_weather", "get_current_weather"]

    # Typing in the editor then leaving it saves what was typed; the editor still shows it.
    editor.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Backspace")  # the list's closing bracket: now invalid JSON
    page.locator("#settings-panel h2").click()
    expect(page.locator("#field-tools")).to_have_class(re.compile(r"\binvalid\b"))
    expect(page.locator("#field-tools .error")).to_contain_text("not valid JSON")
    expect(editor).to_have_count(1)
    assert not editor.locator(".cm-content").text_content().rstrip().endswith("]")


def test_a_change_made_while_a_preset_answer_is_on_its_way_is_kept_and_sent(live_server_url, page, owner, sim):
    """A CI failure: the answer to a preset click landed after the user had typed elsewhere and
    left the field, and reset that field to the value the server knew; the save that followed then
    posted the reset value, so the typed text was neither shown nor sent."""
    open_page(page, live_server_url, owner, sim)
    open_group(page, "tools")
    system_prompt = page.locator("#id_system_prompt")
    cdp = slow_network(page, 1500)
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/preset")):
        page.get_by_role("button", name="get_weather", exact=True).click()
    system_prompt.click()
    system_prompt.press_sequentially("Be brief.", delay=20)
    page.locator("#settings-panel h2").click()  # left before the preset's answer lands
    editor = page.locator("#field-tools .cm-editor")
    expect(editor.locator(".cm-content")).to_contain_text('"get_weather"', timeout=10_000)
    assert system_prompt.input_value() == "Be brief."  # at the moment the preset's answer landed
    expect(editor).to_have_count(1)

    normal_network(cdp)
    expect(page.locator("#panel-status")).to_contain_text("Saved", timeout=10_000)
    expect(system_prompt).to_have_value("Be brief.")
    sent = send_and_read(page, sim, "Weather?")
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]


def test_a_field_typed_just_before_a_preset_button_keeps_its_value_and_both_are_sent(live_server_url, page, owner, sim):
    """The preset buttons apply to the stored settings: a field typed just before one (its save not
    yet made) keeps what was typed through the preset's answer, and the save that follows carries it
    with the preset's values."""
    open_page(page, live_server_url, owner, sim)
    seed, temperature = page.locator("#id_seed"), page.locator("#id_temperature")
    cdp = slow_network(page, 1000)
    retype(seed, "7")
    page.get_by_role("button", name="Thinking preset").click()  # leaving seed; its save waits for the preset's answer
    expect(temperature).to_have_value("0.6", timeout=10_000)  # the preset's answer has landed
    assert seed.input_value() == "7"
    normal_network(cdp)
    expect(page.locator("#panel-status")).to_contain_text("Saved", timeout=10_000)
    expect(seed).to_have_value("7")
    sent = send_and_read(page, sim, "Think about it")
    assert sent["seed"] == 7 and sent["temperature"] == 0.6 and sent["max_tokens"] == 1024
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}


def test_an_invalid_field_blocks_send_and_run_and_is_shown(live_server_url, page, owner, sim):
    conversation = open_page(page, live_server_url, owner, sim)
    open_group(page, "penalties")
    field = page.locator("#id_presence_penalty")
    retype(field, "5")
    compose(page, "Hello there")  # leaving the field saves it: refused, marked
    expect(page.locator("#field-presence_penalty")).to_have_class(re.compile(r"\binvalid\b"))
    expect(page.locator("#panel-status")).to_contain_text("Not saved")
    group(page, "penalties").locator("summary").click()  # the user folds it away and sends anyway
    expect(group(page, "penalties")).not_to_have_attribute("open", "")

    page.locator("#composer textarea").press("Enter")
    error = page.locator("#frame-error")
    expect(error).to_contain_text("Not sent: presence_penalty is invalid")
    expect(error).to_be_visible()
    expect(group(page, "penalties")).to_have_attribute("open", "")  # its group opens
    expect(field).to_be_focused()
    expect(field).to_have_value("5")
    expect(page.locator("#composer textarea")).to_have_value("Hello there")  # the text is kept
    expect(page.locator("#messages article.message")).to_have_count(0)

    page.get_by_text("Add a message of any role").click()
    page.locator("#run-form button").click()  # Run is blocked the same way
    expect(error).to_contain_text("Not sent: presence_penalty is invalid")
    assert chat_requests(sim) == []  # nothing reached the upstream
    assert "presence_penalty" not in saved_options(conversation)

    retype(field, "1")
    page.locator("#send-button").click()
    wait_idle(page, 1)
    expect(error).to_be_empty()
    expect(page.locator("#composer textarea")).to_have_value("")  # cleared once the send was accepted
    [sent] = chat_requests(sim)
    assert sent["presence_penalty"] == 1 and sent["messages"][-1] == {"role": "user", "content": "Hello there"}


def test_a_number_that_is_not_one_blocks_the_send_by_name(live_server_url, page, owner, sim):
    """A number input holding "1e" reports the value "": it must not be sent as unset."""
    open_page(page, live_server_url, owner, sim)
    retype(page.locator("#id_temperature"), "1e")
    compose(page, "Hi")
    page.keyboard.press("Enter")
    expect(page.locator("#frame-error")).to_contain_text("temperature is invalid")
    expect(page.locator("#field-temperature")).to_have_class(re.compile(r"\binvalid\b"))
    assert chat_requests(sim) == []


def test_the_next_request_preview_is_the_body_then_sent(live_server_url, page, owner, sim):
    open_page(page, live_server_url, owner, sim)
    retype(page.locator("#id_temperature"), "0.3")  # shown, not saved yet
    compose(page, "Preview me")
    opener = page.locator("#next-request-button")
    opener.click()
    dialog = page.locator("#next-request-dialog")
    expect(dialog).to_be_visible()
    shown = page.locator("#next-request-json")
    expect(shown).to_contain_text("Preview me")
    preview = json.loads(shown.text_content())
    assert preview["temperature"] == 0.3 and preview["messages"][-1] == {"role": "user", "content": "Preview me"}
    expect(page.locator("#next-request-curl")).to_contain_text("$HEXGRID_API_KEY")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()  # focus returns to the button that opened it

    page.locator("#send-button").click()
    wait_idle(page, 1)
    assert chat_requests(sim)[-1] == preview


def test_the_preview_follows_the_message_list_while_open(live_server_url, page, owner, sim):
    conversation = open_page(page, live_server_url, owner, sim)
    page.locator("#next-request-button").click()
    expect(page.locator("#next-request-view")).to_contain_text("Add a message first")  # a Run of nothing

    # The owner's other tab adds a message: the open preview is fetched again.
    other = page.context.new_page()
    other.goto(f"{live_server_url}/c/{conversation.public_id}/")
    wait_synced(other)
    other.get_by_text("Add a message of any role").click()
    other.locator("#add-message textarea[name=content]").press_sequentially("Added elsewhere", delay=10)
    other.get_by_role("button", name="Add message").click()
    shown = page.locator("#next-request-json")
    expect(shown).to_contain_text("Added elsewhere")
    assert json.loads(shown.text_content())["messages"] == [{"role": "user", "content": "Added elsewhere"}]
    other.close()


def test_stream_off_clears_stream_options_and_says_so(live_server_url, page, owner, sim):
    conversation = open_page(page, live_server_url, owner, sim)
    open_group(page, "streaming")
    include_usage = page.locator("#id_stream_options__include_usage")
    expect(include_usage).to_have_value("true")
    page.select_option("#id_stream", "false")
    expect(page.locator("#panel-status")).to_contain_text("stream_options cleared: they only apply to streamed requests")
    expect(page.locator("#panel-status")).to_contain_text("Saved")
    expect(include_usage).to_have_value("")
    expect(group(page, "streaming")).to_have_attribute("open", "")
    until(lambda: saved_options(conversation).get("stream") is False)
    assert "stream_options" not in saved_options(conversation)
    sent = send_and_read(page, sim, "Hello")
    assert sent["stream"] is False and "stream_options" not in sent


@pytest.fixture
def clipboard_page(browser):
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def test_copy_buttons_copy_the_code(live_server_url, clipboard_page, owner, sim):
    page = clipboard_page
    open_page(page, live_server_url, owner, sim)
    compose(page, "Copy me")
    page.locator("#next-request-button").click()
    expect(page.locator("#next-request-json")).to_contain_text("Copy me")
    button = page.locator("[data-copy='next-request-json']")
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == page.locator("#next-request-json").text_content()
    page.locator("#next-request-view .close-dialog").click()
    expect(page.locator("#next-request-dialog")).to_be_hidden()

    page.locator("#send-button").click()
    wait_idle(page, 1)
    page.locator(".message.assistant .metrics").get_by_text("View code").click()
    curl = page.locator("#dialog pre[id$='-curl']")
    expect(curl).to_contain_text("curl")
    copy = page.locator("#dialog [data-copy$='-curl']")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == curl.text_content()
