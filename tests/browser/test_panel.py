"""The settings panel in Chromium: tool loop, schema editor, image parts, n choices, thinking toggle."""

from __future__ import annotations

import base64

import pytest
from django.conf import settings
from playwright.sync_api import expect

from chat.models import Completion, Conversation, Message
from tests.browser.conftest import open_conversation, saved_options, sim_endpoint, until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A 1x1 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def open_page(page, live_server_url, owner, model="sim/qwen3", **endpoint_fields) -> Conversation:
    endpoint = sim_endpoint(live_server_url + "/simulator/v1", settings.SIMULATOR_API_KEY, model, **endpoint_fields)
    return open_conversation(page, live_server_url, owner, endpoint)


def open_group(page, name: str) -> None:
    group = page.locator(f"details.option-group[data-group='{name}']")
    if group.get_attribute("open") is None:
        group.locator("summary").click()


def send(page, text: str) -> None:
    page.fill("#composer textarea", text)
    page.keyboard.press("Enter")
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "streaming")
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle", timeout=20_000)


def test_the_tool_loop_end_to_end(live_server_url, page, owner):
    conversation = open_page(page, live_server_url, owner)
    open_group(page, "tools")
    page.get_by_role("button", name="get_weather").click()
    expect(page.locator("#field-tools .cm-content")).to_contain_text("get_weather")  # the JSON editor
    conversation.refresh_from_db()
    assert conversation.tools[0]["function"]["name"] == "get_weather"

    send(page, "What's the weather in Paris?")
    call = page.locator(".message.assistant .tool-call").first
    expect(call.locator(".tool-name")).to_have_text("get_weather")
    expect(call.locator("pre")).to_contain_text('"location"')
    form = page.locator("form.tool-result").first
    form.locator("textarea").fill("22 degrees and sunny")
    form.get_by_role("button", name="Add result").click()
    expect(page.locator(".message.tool .content")).to_have_text("22 degrees and sunny")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle", timeout=20_000)
    last = page.locator(".message.assistant").last
    expect(last).to_have_attribute("data-status", "complete")
    expect(last.locator(".content")).to_contain_text("22 degrees")
    body = Completion.objects.filter(conversation=conversation).latest("started_at").request_body
    assert body["messages"][-1]["role"] == "tool" and body["messages"][-1]["content"] == "22 degrees and sunny"


def test_the_schema_editor_blocks_an_invalid_schema(live_server_url, page, owner):
    conversation = open_page(page, live_server_url, owner)
    open_group(page, "output format")
    page.select_option("#id_response_format__type", "json_schema")
    editor = page.locator("#field-response_format__schema .cm-content")
    editor.click()
    page.keyboard.type('{"type": "strng"}')
    page.locator("#settings-panel h2").click()  # leaving the editor saves
    expect(page.locator("#panel-status")).to_contain_text("Not saved")
    expect(page.locator("#field-response_format__type .error")).to_contain_text("strng")
    conversation.refresh_from_db()
    assert conversation.response_format is None  # nothing stored, nothing sent

    open_group(page, "output format")
    page.get_by_role("button", name="tagline_response").click()
    expect(page.locator("#field-response_format__schema .cm-content")).to_contain_text("taglines")
    conversation.refresh_from_db()
    assert conversation.response_format["json_schema"]["name"] == "tagline_response"
    send(page, "Three taglines please")
    expect(page.locator(".message.assistant .schema-ok")).to_contain_text("valid JSON for the schema")


def test_an_image_part_for_gemma(live_server_url, page, owner, tmp_path):
    conversation = open_page(page, live_server_url, owner, model="sim/gemma-4", image_input=True, family="gemma")
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    page.get_by_text("Add a message of any role").click()
    form = page.locator("#add-message")
    form.locator("textarea[name=content]").fill("What is in this picture?")
    form.locator("input[type=file]").set_input_files(str(image))
    form.get_by_role("button", name="Add message").click()
    expect(page.locator(".message.user img.thumb")).to_be_visible()
    page.locator("#run-form button").click()
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle", timeout=20_000)
    expect(page.locator(".message.assistant")).to_have_attribute("data-status", "complete")
    sent = Completion.objects.get(conversation=conversation).request_body["messages"][0]["content"]
    assert sent[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_images_are_disabled_with_a_reason_for_text_models(live_server_url, page, owner):
    open_page(page, live_server_url, owner)
    page.get_by_text("Add a message of any role").click()
    expect(page.locator("#add-message input[name=image_url]")).to_be_disabled()
    expect(page.locator("#add-message")).to_contain_text("does not take images")


def test_two_choices_side_by_side_and_picking_one(live_server_url, page, owner):
    conversation = open_page(page, live_server_url, owner)
    page.fill("#id_n", "2")
    page.fill("#id_seed", "5")
    page.locator("#settings-panel h2").click()
    expect(page.locator("#id_seed")).to_have_value("5")
    until(lambda: saved_options(conversation).get("n") == 2)
    send(page, "Hello")
    row = page.locator(".message-row.choices")
    expect(row.locator(".message.assistant")).to_have_count(2)
    row.get_by_role("button", name="Continue with choice 2").click()
    expect(page.locator(".message-row.choices")).to_have_count(0)
    chosen = Message.objects.get(conversation=conversation, role="assistant", is_active=True)
    assert chosen.choice_index == 1


def test_the_thinking_toggle(live_server_url, page, owner):
    conversation = open_page(page, live_server_url, owner)
    page.select_option("#id_thinking", "off")
    until(lambda: saved_options(conversation).get("chat_template_kwargs") == {"enable_thinking": False})
    send(page, "Hello")
    reply = page.locator(".message.assistant")
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator("details.thinking")).to_be_hidden()  # no reasoning came back
    page.select_option("#id_thinking", "on")
    until(lambda: saved_options(conversation).get("chat_template_kwargs") == {"enable_thinking": True})
    send(page, "Hello again")
    expect(page.locator(".message.assistant").last.locator("details.thinking")).to_be_visible()
