"""Issue 17 in Chromium: a conversation's request headers typed in the settings reach the simulator,
x-sim-status: 500 set there yields the error in the thread; the token meter follows typing; What the
model sees shows the template. The simulator runs in the test process on a real socket, so the
requests it received are checked where they landed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import open_conversation, served_simulator, sim_endpoint, until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "sim-browser-insight-key"


@pytest.fixture(scope="module")
def sim():
    with served_simulator(KEY) as app:
        yield app


def open_advanced(page) -> None:
    group = page.locator("details.option-group[data-group='advanced']")
    if group.get_attribute("open") is None:
        group.locator("summary").click()


def set_headers(page, conversation, text: str) -> None:
    """Type the headers as a person does, leave the box (the panel saves), wait for the save."""
    box = page.locator("#id_headers")
    box.click()
    box.press("Control+A")
    box.press("Delete")
    box.press_sequentially(text, delay=15)
    page.locator("#settings-panel h2").click()

    def stored() -> bool:
        conversation.refresh_from_db(fields=["headers"])
        return "\n".join(f"{k}: {v}" for k, v in conversation.headers.items()) == text

    until(stored)
    expect(page.locator("#panel-status")).to_contain_text("Saved")


def send(page, text: str) -> None:
    box = page.locator("#composer textarea")
    box.press_sequentially(text, delay=15)
    page.keyboard.press("Enter")
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle", timeout=20_000)


def chat_requests(sim):
    return [r for r in sim.requests if r.path == "/v1/chat/completions"]


def test_a_conversation_header_reaches_the_simulator_and_x_sim_status_shows_the_error(live_server_url, page, owner, sim):
    conversation = open_conversation(page, live_server_url, owner, sim_endpoint(sim.url, KEY))
    open_advanced(page)
    set_headers(page, conversation, "X-Trace-Id: trace-from-the-browser")
    send(page, "Hello there")
    expect(page.locator(".message.assistant").last).to_have_attribute("data-status", "complete")
    assert chat_requests(sim)[-1].headers["x-trace-id"] == "trace-from-the-browser"

    open_advanced(page)
    set_headers(page, conversation, "x-sim-status: 500")
    send(page, "Again please")
    answer = page.locator(".message.assistant").last
    expect(answer).to_have_attribute("data-status", "error")
    expect(answer).to_contain_text("HTTP 500")
    expect(answer).to_contain_text("Simulated Internal Server Error (x-sim-status: 500)")
    assert chat_requests(sim)[-1].headers["x-sim-status"] == "500"
    # Refused before anything is stored: the panel names the header and why.
    open_advanced(page)
    box = page.locator("#id_headers")
    box.click()
    box.press("Control+A")
    box.press_sequentially("Authorization: Bearer mine", delay=10)
    page.locator("#settings-panel h2").click()
    expect(page.locator("#field-headers .error")).to_contain_text("Authorization cannot be set here")
    conversation.refresh_from_db(fields=["headers"])
    assert conversation.headers == {"x-sim-status": "500"}


def test_the_token_meter_follows_typing_and_what_the_model_sees(live_server_url, page, owner, sim):
    open_conversation(page, live_server_url, owner, sim_endpoint(sim.url, KEY))
    meter = page.locator("#token-meter .meter")
    expect(page.locator("#token-meter")).to_be_empty()  # nothing to send yet: nothing to count
    box = page.locator("#composer textarea")
    box.press_sequentially("What is the weather like in Paris today, and should I take an umbrella?", delay=20)
    # Typing was never held up, and the count followed it once the typing paused.
    expect(box).to_have_value("What is the weather like in Paris today, and should I take an umbrella?")
    expect(meter).to_contain_text("prompt tokens of 32768")
    expect(meter).to_have_attribute("data-count", lambda_count_above(page, 20))
    tokenized = [r for r in sim.requests if r.path == "/tokenize"]
    assert tokenized and tokenized[-1].json["messages"][-1]["content"].startswith("What is the weather")

    page.locator("#prompt-button").click()
    dialog = page.locator("#prompt-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("mark.special-token").first).to_have_text("<|im_start|>")
    expect(dialog.locator(".prompt-text")).to_contain_text("should I take an umbrella?")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def lambda_count_above(page, floor: int):
    """A pattern for data-count: a number above `floor` (the prompt with the typed text)."""
    import re

    return re.compile(r"^(%s)$" % "|".join(str(n) for n in range(floor + 1, floor + 200)))


def test_an_admin_probes_an_endpoint_from_its_page(live_server_url, page, staff):
    """The Probe button on the endpoint page, through Daphne, against the server's own simulator mount."""
    import re

    from django.conf import settings

    from chat.models import Endpoint
    from tests.conftest import PASSWORD

    endpoint = sim_endpoint(live_server_url + "/simulator/v1", settings.SIMULATOR_API_KEY, "sim/llama-3.3", reasoning_parser=True)
    path = f"/admin/chat/endpoint/{endpoint.pk}/change/"
    page.goto(f"{live_server_url}/login/?next={path}")
    page.fill("input[name=username]", staff.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(path)))
    expect(page.get_by_text("Not probed yet.")).to_be_visible()
    page.get_by_role("button", name="Probe capabilities").click()
    expect(page.locator(".messagelist")).to_contain_text("probe 16/18 pass · 2 not supported", timeout=30_000)
    grid = page.locator("table.probe-grid")
    expect(grid.locator("tbody tr")).to_have_count(18)
    expect(grid.locator("tr[data-probe='reasoning'] .probe-status")).to_have_text("– not supported")
    expect(grid.locator("tr[data-probe='tools_named'] .probe-status")).to_have_text("✔ pass")
    expect(page.locator("#id_reasoning_parser")).not_to_be_checked()  # set from what the server did
    endpoint.refresh_from_db()
    assert endpoint.reasoning_parser is False and endpoint.probed_at is not None
