"""The prompt library in Chromium (issue 16): a prompt with two variables saved twice and diffed; a test
set from a 20-row CSV, a bad CSV refused with its row and column named (nothing imported), pasted JSONL,
rows edited in the table; Use a prompt and presets in a conversation, checked in the request body the
upstream (a simulator on a real socket) received. Every check is on the page as it is, without a reload.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chat.models import Conversation
from chat.models_library import Preset, Prompt, PromptVersion, TestCase, TestSet
from tests.browser.conftest import open_conversation, saved_options, served_simulator, sim_endpoint, until, wait_synced
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "browser-library-key"


@pytest.fixture(scope="module")
def sim():
    with served_simulator(KEY, token_delay=0.002) as app:
        yield app


def log_in(page, live_server_url, user, path="/library/"):
    page.goto(live_server_url + path)
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(path) + "$"))


def type_into(locator, text: str) -> None:
    locator.click()
    locator.press_sequentially(text, delay=12)  # a person typing


def saved_system_prompt(conversation) -> str:
    conversation.refresh_from_db(fields=["system_prompt"])
    return conversation.system_prompt


def chat_bodies(sim) -> list[dict]:
    return [r.json for r in sim.requests if r.path.endswith("/chat/completions")]


# --- prompts: two variables, two versions, a diff ---------------------------------------------------------


def test_a_prompt_with_two_variables_saved_twice_and_diffed(live_server_url, page, owner):
    log_in(page, live_server_url, owner)
    type_into(page.get_by_placeholder("Name"), "Trip planner")
    page.get_by_role("button", name="Create prompt").click()
    page.wait_for_url(re.compile(r"/p/[0-9a-f-]{36}/$"))
    prompt = Prompt.objects.get(name="Trip planner", owner=owner)

    type_into(page.get_by_label("Content of message 1"), "You plan trips.")
    user_box = page.get_by_label("Content of message 2")
    type_into(user_box, "Plan a day in {{city}}")
    found = page.locator("#prompt-variables-found code.variable")
    expect(found).to_have_text(["city"])  # detected while typing
    type_into(user_box, " in {{month}} for {{ bad name }}")
    expect(page.locator("#prompt-variables-found .error")).to_contain_text("'{{ bad name }}' is not a valid variable")
    for _ in " for {{ bad name }}":
        user_box.press("Backspace")
    expect(found).to_have_text(["city", "month"])
    expect(page.locator("#prompt-variables-found .error")).to_have_count(0)
    type_into(page.get_by_label("Note for this version"), "first draft")
    page.get_by_role("button", name="Save as v1").click()
    expect(page.locator("#save-status")).to_have_text("Saved v1.")
    expect(page.locator("#prompt-versions li")).to_have_count(1)

    # A second version: one more message (an example answer) and a changed user message
    page.get_by_role("button", name="Add a message").click()
    expect(page.get_by_label("Content of message 3")).to_be_visible()
    expect(page.get_by_label("Role of message 3")).to_have_value("assistant")
    type_into(page.get_by_label("Content of message 3"), "Morning: the old town.")
    user_box = page.get_by_label("Content of message 2")
    user_box.fill("")
    type_into(user_box, "Plan a relaxed day in {{city}} in {{month}}")
    type_into(page.get_by_label("Note for this version"), "relaxed, with an example")
    page.get_by_role("button", name="Save as v2").click()
    expect(page.locator("#save-status")).to_have_text("Saved v2.")
    expect(page.locator("#prompt-versions li")).to_have_count(2)
    expect(page.locator("#version-2")).to_contain_text("relaxed, with an example")
    expect(page.locator("#version-1")).to_contain_text(owner.username)

    versions = list(prompt.versions.order_by("number"))
    assert [v.number for v in versions] == [1, 2]
    assert versions[0].messages == [{"role": "system", "content": "You plan trips."},
                                    {"role": "user", "content": "Plan a day in {{city}} in {{month}}"}]
    assert versions[1].variables == ["city", "month"] and versions[1].messages[2]["role"] == "assistant"

    page.get_by_role("button", name="Compare").click()
    diff = page.locator("#prompt-diff")
    expect(diff).to_be_visible()
    expect(diff.locator("h2")).to_have_text("v1 → v2")
    expect(diff.locator(".diff-cell.new ins").first).to_have_text(" relaxed")
    expect(diff.locator(".diff-row.changed")).to_have_count(2)  # the user message and the added one
    expect(diff.locator(".diff-cell.new ins", has_text="Morning: the old town.")).to_have_count(1)
    expect(diff.locator(".diff-cell.old del")).to_have_count(0)  # nothing was taken out of v1's words


# --- test sets ---------------------------------------------------------------------------------------


def test_csv_upload_bad_csv_jsonl_paste_and_table_edits(live_server_url, page, owner, tmp_path):
    good = tmp_path / "cities.csv"
    good.write_text("city,month,expected\n" + "".join(f"City {i},Month {i},Answer {i}\n" for i in range(1, 21)))
    bad = tmp_path / "broken.csv"
    bad.write_text("city,month\nParis,May\nRome,June\nOslo,\nBerlin,July\n")

    log_in(page, live_server_url, owner)
    # A bad file first: refused, the row and column named, nothing imported
    page.get_by_text("New test set from a CSV or JSONL file, or pasted rows").click()
    type_into(page.locator("#new_testset_name"), "Broken cities")
    page.set_input_files("#new_testset_file", str(bad))
    page.get_by_role("button", name="Create test set").click()
    expect(page.locator(".import-error")).to_have_text('Row 3 (line 4), column "month": empty (every variable needs a value).')
    assert not TestSet.objects.filter(name="Broken cities").exists() and TestCase.objects.count() == 0
    expect(page.locator("#new_testset_name")).to_have_value("Broken cities")  # what was typed is kept

    # The 20-row CSV
    page.locator("#new_testset_name").fill("")
    type_into(page.locator("#new_testset_name"), "Cities")
    page.set_input_files("#new_testset_file", str(good))
    page.get_by_role("button", name="Create test set").click()
    page.wait_for_url(re.compile(r"/t/[0-9a-f-]{36}/$"))
    expect(page.locator("#rows-heading")).to_have_text("20 rows")
    expect(page.locator("table.cases tbody tr")).to_have_count(20)
    expect(page.locator("#case-19 td.cell").first).to_have_text("City 20")
    testset = TestSet.objects.get(name="Cities")
    assert testset.variables == ["city", "month"] and testset.cases.count() == 20
    assert testset.cases.get(position=0).expected == "Answer 1"

    # Edit a row in place: an empty cell is refused by column, then a good value saved
    page.get_by_role("button", name="Edit row 2", exact=True).click()
    city = page.get_by_label("city of row 2", exact=True)
    city.fill("")
    page.locator("#case-1").get_by_role("button", name="Save").click()
    expect(page.locator("#case-1 .error")).to_have_text('Column "city": empty (every variable needs a value).')
    type_into(page.get_by_label("city of row 2", exact=True), "Lisbon")
    page.locator("#case-1").get_by_role("button", name="Save").click()
    expect(page.locator("#case-1 td.cell").first).to_have_text("Lisbon")
    assert testset.cases.get(position=1).values == {"city": "Lisbon", "month": "Month 2"}

    # Add a row, delete one
    page.get_by_role("button", name="Add a row").click()
    type_into(page.get_by_label("city of the new row"), "Tallinn")
    type_into(page.get_by_label("month of the new row"), "August")
    page.locator("#case-new").get_by_role("button", name="Add").click()
    expect(page.locator("#case-20 td.cell").first).to_have_text("Tallinn")
    expect(page.locator("#rows-heading")).to_have_text("21 rows")
    page.get_by_role("button", name="Delete row 1", exact=True).click()
    page.locator("#confirm-yes").click()
    expect(page.locator("#case-0")).to_have_count(0)
    expect(page.locator("#rows-heading")).to_have_text("20 rows")
    until(lambda: testset.cases.count() == 20)
    assert testset.cases.filter(values__city="Tallinn").exists()

    # A pasted JSONL set, from the library page
    page.goto(live_server_url + "/library/")
    page.get_by_text("New test set from a CSV or JSONL file, or pasted rows").click()
    type_into(page.locator("#new_testset_name"), "Math")
    page.locator("#new_testset_text").fill('{"question": "2+2", "expected": "4"}\n{"question": "3*3", "expected": "9"}\n')
    page.get_by_role("button", name="Create test set").click()
    page.wait_for_url(re.compile(r"/t/[0-9a-f-]{36}/$"))
    expect(page.locator("table.cases tbody tr")).to_have_count(2)
    expect(page.locator("#case-1 td.expected")).to_have_text("9")
    # Appending a paste with another column is refused whole
    page.get_by_text("Add rows from a file or a paste").click()
    page.locator("#import_text").fill('{"question": "1+1"}\n{"q": "x"}\n')
    page.locator("#testset-import-form").get_by_role("button", name="Import").click()
    expect(page.locator(".import-error")).to_contain_text('Row 2 (line 2), column "question": missing')
    assert TestSet.objects.get(name="Math").cases.count() == 2


# --- in a conversation: Use a prompt, presets ---------------------------------------------------------------


def test_use_a_prompt_in_a_conversation(live_server_url, page, owner, sim):
    endpoint = sim_endpoint(sim.url, KEY, "sim/qwen3")
    prompt = Prompt.objects.create(owner=owner, name="Guide")
    PromptVersion.objects.create(prompt=prompt, number=1, messages=[
        {"role": "system", "content": "You are a guide to {{city}}."},
        {"role": "user", "content": "Three sights in {{city}} for {{who}}?"},
    ])
    version = PromptVersion.objects.create(prompt=prompt, number=2, note="shorter", values={
        "system_prompt": "", "options": {"temperature": 0.3, "max_tokens": 50}, "tools": [], "response_format": None,
        "canned_results": {}}, messages=[
        {"role": "system", "content": "Guide to {{city}}."},
        {"role": "user", "content": "One sight in {{city}} for {{who}}?"},
    ])
    conversation = open_conversation(page, live_server_url, owner, endpoint, options={"temperature": 1.1})
    expect(page.locator("#id_temperature")).to_have_value("1.1")
    page.get_by_text("Use a prompt from the library…").click()
    page.select_option("#use-prompt-choice", str(prompt.public_id))
    expect(page.locator("#use-prompt-version")).to_have_value("2")
    type_into(page.locator("#var-city"), "Kyoto")
    page.get_by_role("button", name="Add and send").click()
    expect(page.locator("#use-prompt-error")).to_have_text("No value for the variable 'who'.")  # nothing added
    expect(page.locator("#messages article.message")).to_have_count(0)
    type_into(page.locator("#var-who"), "a family")
    before = len(chat_bodies(sim))
    page.get_by_role("button", name="Add and send").click()
    expect(page.locator("#messages article.message.assistant")).to_have_count(1)
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle", timeout=20_000)
    until(lambda: len(chat_bodies(sim)) == before + 1)
    body = chat_bodies(sim)[-1]
    assert body["messages"] == [{"role": "system", "content": "Guide to Kyoto."},
                                {"role": "user", "content": "One sight in Kyoto for a family?"}]
    # The version's settings went through the panel: it shows them, and the run carried them
    assert body["temperature"] == 0.3 and body["max_tokens"] == 50
    expect(page.locator("#id_temperature")).to_have_value("0.3")
    expect(page.locator("#prompt-source")).to_contain_text("Guide v2")
    expect(page.locator("#conversation-title")).to_have_text("Guide v2")
    expect(page.locator("#messages article.message.user .content")).to_have_text("One sight in Kyoto for a family?")
    conversation.refresh_from_db()
    assert conversation.prompt_version == version and conversation.options["temperature"] == 0.3


def test_save_a_preset_and_apply_it_to_another_conversation(live_server_url, page, owner, sim):
    endpoint = sim_endpoint(sim.url, KEY, "sim/qwen3")
    first = open_conversation(page, live_server_url, owner, endpoint)
    temperature = page.locator("#id_temperature")
    temperature.fill("")
    type_into(temperature, "0.25")
    system = page.locator("#id_system_prompt")
    system.click()  # leaving the temperature saves it
    until(lambda: saved_options(first).get("temperature") == 0.25, timeout=20)
    type_into(system, "Answer in one sentence.")
    expect(system).to_have_value("Answer in one sentence.")
    # Saved from the panel as shown (its values are posted along, validated)
    type_into(page.locator("#preset_name"), "Terse")
    until(lambda: saved_system_prompt(first) == "Answer in one sentence.", timeout=20)  # saved on leaving the field
    page.get_by_role("button", name="Save settings as preset").click()
    expect(page.locator("#conversation-presets [role=status]")).to_contain_text("Saved “Terse”")
    preset = Preset.objects.get(name="Terse", owner=owner)
    assert preset.values["options"]["temperature"] == 0.25 and preset.values["system_prompt"] == "Answer in one sentence."

    second = Conversation.objects.create(owner=owner, endpoint=endpoint, options={"temperature": 1.3})
    page.goto(f"{live_server_url}/c/{second.public_id}/")
    wait_synced(page)
    expect(page.locator("#id_temperature")).to_have_value("1.3")
    page.select_option("#preset-choice", str(preset.public_id))
    page.locator("#preset-apply").get_by_role("button", name="Apply").click()
    expect(page.locator("#panel-status")).to_contain_text("Preset “Terse” applied")
    expect(page.locator("#id_temperature")).to_have_value("0.25")
    expect(page.locator("#id_system_prompt")).to_have_value("Answer in one sentence.")
    second.refresh_from_db()
    assert second.options["temperature"] == 0.25 and second.system_prompt == "Answer in one sentence."

    before = len(chat_bodies(sim))
    box = page.locator("#composer textarea")
    type_into(box, "Why is the sea salty?")
    page.keyboard.press("Enter")
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "idle", timeout=20_000)
    until(lambda: len(chat_bodies(sim)) == before + 1)
    body = chat_bodies(sim)[-1]
    assert body["temperature"] == 0.25
    assert body["messages"][0] == {"role": "system", "content": "Answer in one sentence."}
    assert first.pk != second.pk


def test_a_preset_on_a_comparison_pane(live_server_url, page, owner, sim):
    from chat import compare

    endpoint = sim_endpoint(sim.url, KEY, "sim/qwen3")
    comparison = compare.new_comparison(owner, [(endpoint, {}), (endpoint, {"temperature": 1.2})], title="Two panes")
    first, second = comparison.panes.all()
    preset = Preset.objects.create(owner=owner, name="Cold", values={
        "system_prompt": "", "options": {"temperature": 0.1, "max_tokens": 40}, "tools": [], "response_format": None,
        "canned_results": {}})
    log_in(page, live_server_url, owner, f"/c/{comparison.public_id}/")
    wait_synced(page)
    page.select_option(f"#pane-preset-{second.public_id}", str(preset.public_id))
    page.get_by_role("button", name="Apply the preset to pane 2").click()
    expect(page.get_by_text("Preset “Cold” applied to pane 2.")).to_be_visible()
    expect(page.locator(f"#pane-{second.public_id} .chip")).to_have_text(["temperature 0.1", "max_tokens 40"])
    expect(page.locator(f"#pane-{first.public_id} .chip")).to_have_count(0)
    wait_synced(page)

    before = len(chat_bodies(sim))
    box = page.locator("#composer textarea")
    type_into(box, "Name a colour.")
    box.press("Enter")
    expect(page.locator(".turn")).to_have_count(1)
    expect(page.locator(".pane-state[data-state='streaming']")).to_have_count(0, timeout=30_000)
    until(lambda: len(chat_bodies(sim)) == before + 2)
    bodies = chat_bodies(sim)[before:]
    cold = [b for b in bodies if b.get("temperature") == 0.1]
    assert len(cold) == 1 and cold[0]["max_tokens"] == 40  # pane 2 sent the preset's values; pane 1 did not
