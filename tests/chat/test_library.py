"""The prompt library (issue 16): {{variables}}, prompt versions and their diff, presets through the
settings panel's form, test set files (all or nothing, errors naming row and column), table edits,
Use a prompt in a conversation, access (owner edits, team reads, outsiders 404), the history search."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat import library, testdata
from chat.forms import family_defaults
from chat.models import Conversation, Endpoint, Message
from chat.models_library import Preset, Prompt, PromptVersion, TestCase, TestSet
from chat.panel import PanelForm
from chat.templating import TemplateError, check, render, variables

HTMX = {"HX-Request": "true"}


@pytest.fixture
def qwen(db) -> Endpoint:
    return Endpoint.objects.create(name="qwen", base_url="http://127.0.0.1:9/v1", model_id="Qwen/Qwen3-8B")


def page(client, user, url, **kwargs):
    client.force_login(user)
    return client.get(url, **kwargs)


# --- templating --------------------------------------------------------------------------------------------


def test_variables_in_order_of_first_use_with_spaces_inside_braces():
    messages = [{"role": "system", "content": "You speak {{ language }}."},
                {"role": "user", "content": "Describe {{city}} in {{language}} for {{_who2}}."}]
    assert variables(messages) == ["language", "city", "_who2"]


def test_render_fills_once_and_never_expands_a_value():
    messages = [{"role": "user", "content": "Say {{a}} and {{b}}"}]
    assert render(messages, {"a": "{{b}}", "b": 3}) == [{"role": "user", "content": "Say {{b}} and 3"}]


@pytest.mark.parametrize("values, message", [
    ({"a": "x"}, "No value for the variable 'b'."),
    ({"a": "x", "b": "y", "c": "z"}, "The variable 'c' is not used by the prompt."),
    ({"a": "x", "b": "y", "c": "z", "d": "w"}, "The variables 'c', 'd' are not used by the prompt."),
    ({"a": "x", "b": None}, "No value for the variable 'b'."),
    ({"a": "x", "b": ["list"]}, "The value of 'b' must be text, not a list."),
])
def test_render_names_an_undefined_or_unused_variable(values, message):
    with pytest.raises(TemplateError) as error:
        render([{"role": "user", "content": "{{a}} {{b}}"}], values)
    assert str(error.value) == message


@pytest.mark.parametrize("content", ["{{1x}}", "{{a b}}", "{{}}", "{{a-b}}", "{{ " + "x" * 65 + " }}"])
def test_invalid_variable_names_are_refused_by_name(content):
    with pytest.raises(TemplateError) as error:
        check([{"role": "user", "content": f"Hello {content}"}])
    assert "is not a valid variable" in str(error.value) and "Message 1" in str(error.value)


def test_roles_are_checked():
    with pytest.raises(TemplateError, match="role must be one of"):
        check([{"role": "tool", "content": "x"}])


# --- test set files -------------------------------------------------------------------------------------


def test_csv_with_expected_column_and_blank_lines():
    parsed = testdata.parse('city,language,expected\nParis,French,"Bonjour, Paris"\n\nBerlin,German,\n', "csv")
    assert parsed.variables == ["city", "language"]
    assert parsed.rows == [
        {"values": {"city": "Paris", "language": "French"}, "expected": "Bonjour, Paris"},
        {"values": {"city": "Berlin", "language": "German"}, "expected": ""},
    ]


@pytest.mark.parametrize("text, message", [
    ("city,language\nParis,French\nBerlin\n", "Row 2 (line 3): 1 field, but the header has 2 columns."),
    ("city,language\nParis,French\nRome, \n", 'Row 2 (line 3), column "language": empty (every variable needs a value).'),
    ("city,2nd\nParis,x\n", 'The header (line 1): column 2 "2nd" is not a valid variable name'),
    ("city,city\nParis,x\n", 'The header (line 1): column 2 "city" appears twice.'),
    ('city,language\nParis,French\n"Rome"x,Italian\n', "Row 2 (line 3): not valid CSV"),
    ("city\n", "The file has no rows."),
    ("expected\nx\n", "names no variable column"),
])
def test_bad_csv_is_refused_naming_the_row_and_column(text, message):
    with pytest.raises(testdata.DataError) as error:
        testdata.parse(text, "csv")
    assert message in str(error.value)


def test_jsonl_rows_and_errors():
    parsed = testdata.parse('{"q": "2+2", "n": 4, "expected": "4"}\n\n{"q": "1+1", "n": 2, "expected": "2"}\n', "jsonl")
    assert parsed.variables == ["q", "n"]
    assert parsed.rows[0] == {"values": {"q": "2+2", "n": "4"}, "expected": "4"}
    for text, message in [
        ('{"q": "a"}\n{"q": "b", "z": 1}', 'Row 2 (line 2), column "z": not in the first row\'s columns'),
        ('{"q": "a", "r": "b"}\n{"q": "b"}', 'Row 2 (line 2), column "r": missing'),
        ('{"q": "a"}\n{"q": [1]}', 'Row 2 (line 2), column "q": a list'),
        ('{"q": "a"}\n{"q": NaN}', "Row 2 (line 2): not valid JSON"),
        ('["a"]', "Row 1 (line 1): a JSON object is expected"),
    ]:
        with pytest.raises(testdata.DataError) as error:
            testdata.parse(text, "jsonl")
        assert message in str(error.value)


def test_files_that_are_not_utf8_text_are_named():
    with pytest.raises(testdata.DataError, match="Line 2 is not UTF-8"):
        testdata.decode(b"city\n\xff\xfe\n")
    with pytest.raises(testdata.DataError, match="NUL"):
        testdata.parse("city\nPar\x00is\n", "csv")


# --- prompts: versions, diff, access ------------------------------------------------------------------------


def save(client, prompt, messages, note=""):
    data = {"role": [m[0] for m in messages], "content": [m[1] for m in messages], "note": note}
    return client.post(reverse("chat:prompt_save", args=[prompt.public_id]), data, headers=HTMX)


def test_each_save_is_a_numbered_version_with_who_and_note(client, owner):
    prompt = Prompt.objects.create(owner=owner, name="Travel")
    client.force_login(owner)
    response = save(client, prompt, [("system", "You are a guide."), ("user", "Tell me about {{city}} in {{month}}.")], "first")
    assert response.status_code == 200 and "Saved v1." in response.content.decode()
    save(client, prompt, [("system", "You are a terse guide."), ("user", "Tell me about {{city}} in {{month}}.")], "terse")
    versions = list(prompt.versions.order_by("number"))
    assert [(v.number, v.note, v.created_by) for v in versions] == [(1, "first", owner), (2, "terse", owner)]
    assert versions[1].variables == ["city", "month"]
    # Saving the same messages again is refused, and says so
    again = save(client, prompt, [("system", "You are a terse guide."), ("user", "Tell me about {{city}} in {{month}}.")])
    assert "Nothing changed since v2" in again.content.decode() and prompt.versions.count() == 2


def test_a_bad_template_is_not_saved_and_the_typed_text_comes_back(client, owner):
    prompt = Prompt.objects.create(owner=owner, name="Bad")
    client.force_login(owner)
    response = save(client, prompt, [("user", "Hello {{first name}}")])
    body = response.content.decode()
    assert "is not a valid variable" in body and "Hello {{first name}}" in body
    assert prompt.versions.count() == 0


def test_live_variables_and_editor_rows(client, owner):
    prompt = Prompt.objects.create(owner=owner, name="Live")
    client.force_login(owner)
    found = client.post(reverse("chat:prompt_variables", args=[prompt.public_id]),
                        {"role": ["user"], "content": ["{{a}} and {{ b }} and {{a}}"]}, headers=HTMX).content.decode()
    assert found.count('class="variable"') == 2 and ">a<" in found and ">b<" in found
    added = client.post(reverse("chat:prompt_editor", args=[prompt.public_id]),
                        {"role": ["user"], "content": ["typed"], "add": "1"}, headers=HTMX).content.decode()
    assert added.count('name="content"') == 2 and "typed" in added


def test_diff_marks_words_side_by_side(client, owner, teammate, team):
    prompt = Prompt.objects.create(owner=owner, name="Diffed", team=team, visibility="team")
    v1 = PromptVersion.objects.create(prompt=prompt, number=1, messages=[{"role": "user", "content": "Tell me about {{city}} today."}])
    PromptVersion.objects.create(prompt=prompt, number=2, messages=[{"role": "user", "content": "Tell me briefly about {{city}}."},
                                                                    {"role": "assistant", "content": "Sure."}])
    response = page(client, teammate, reverse("chat:prompt_diff", args=[prompt.public_id]), data={"a": 1, "b": 2})
    body = response.content.decode()
    assert "Tell me<ins> briefly</ins> about {{city}}." in body
    assert "Tell me about {{city}}<del> today</del>." in body
    assert "<ins>Sure.</ins>" in body
    left, right = library.word_diff(v1.messages[0]["content"], "Tell me about {{city}} today.")
    assert all(s.op == "same" for s in left + right)


def test_prompt_access(client, owner, teammate, outsider, team):
    private = Prompt.objects.create(owner=owner, name="Mine only")
    shared = Prompt.objects.create(owner=owner, name="Team prompt", team=team, visibility="team")
    for prompt in (private, shared):
        assert page(client, owner, reverse("chat:prompt", args=[prompt.public_id])).status_code == 200
        assert page(client, outsider, reverse("chat:prompt", args=[prompt.public_id])).status_code == 404
    assert page(client, teammate, reverse("chat:prompt", args=[private.public_id])).status_code == 404
    assert page(client, teammate, reverse("chat:prompt", args=[shared.public_id])).status_code == 200
    # A teammate reads, but only the owner saves, renames, shares or deletes
    client.force_login(teammate)
    assert save(client, shared, [("user", "x")]).status_code == 404
    for name in ("prompt_settings", "prompt_editor", "prompt_variables"):
        assert client.post(reverse(f"chat:{name}", args=[shared.public_id]), {"name": "x"}).status_code == 404
    for name in ("item_visibility", "item_rename", "item_delete"):
        assert client.post(reverse(f"chat:{name}", args=["prompt", shared.public_id]), {"share": ""}).status_code == 404
    assert Prompt.objects.filter(pk=shared.pk, visibility="team", name="Team prompt").exists()
    client.logout()
    assert client.get(reverse("chat:prompt", args=[shared.public_id])).status_code == 302  # to the login page


def test_library_lists_what_the_user_may_see(client, owner, teammate, outsider, team):
    Prompt.objects.create(owner=owner, name="Private prompt")
    Prompt.objects.create(owner=owner, name="Shared prompt", team=team, visibility="team")
    TestSet.objects.create(owner=owner, name="Shared set", team=team, visibility="team", variables=["q"])
    Preset.objects.create(owner=owner, name="Private preset", values={})
    body = page(client, teammate, reverse("chat:library")).content.decode()
    assert "Shared prompt" in body and "Shared set" in body
    assert "Private prompt" not in body and "Private preset" not in body
    body = page(client, outsider, reverse("chat:library")).content.decode()
    assert "Shared" not in body


def test_sharing_offers_only_the_owners_teams(client, owner, other_team):
    prompt = Prompt.objects.create(owner=owner, name="P")
    client.force_login(owner)
    client.post(reverse("chat:item_visibility", args=["prompt", prompt.public_id]), {"share": other_team.name}, headers=HTMX)
    prompt.refresh_from_db()
    assert prompt.visibility == "private" and prompt.team is None
    body = client.post(reverse("chat:item_visibility", args=["prompt", prompt.public_id]), {"share": "red team"}, headers=HTMX).content.decode()
    prompt.refresh_from_db()
    assert prompt.visibility == "team" and prompt.team.name == "red team"
    # The page's "Shared with" line changes in place too
    assert f'<span id="prompt-{prompt.public_id}-sharing" hx-swap-oob="true">Shared with red team</span>' in body


def test_renaming_updates_the_name_where_the_page_shows_it(client, owner):
    testset = TestSet.objects.create(owner=owner, name="Old name", variables=["q"])
    client.force_login(owner)
    assert f'<span id="testset-{testset.public_id}-name" >Old name</span>' in client.get(
        reverse("chat:testset", args=[testset.public_id])).content.decode()
    body = client.post(reverse("chat:item_rename", args=["testset", testset.public_id]), {"name": "New <name>"},
                       headers=HTMX).content.decode()
    assert f'<span id="testset-{testset.public_id}-name" hx-swap-oob="true">New &lt;name&gt;</span>' in body
    body = client.post(reverse("chat:item_rename", args=["testset", testset.public_id]), {"name": "  "}, headers=HTMX).content.decode()
    assert "Give it a name." in body
    testset.refresh_from_db()
    assert testset.name == "New <name>"


# --- presets ------------------------------------------------------------------------------------------


def panel_post(conversation, **changes) -> dict:
    """The settings panel's POST as the browser sends it, with some fields changed."""
    data = library.panel_data(conversation, library.snapshot_of(conversation), user=conversation.owner)
    data.update(changes)
    return data


def test_preset_from_the_panel_as_shown_and_applied_in_one_step(client, owner, qwen):
    source = Conversation.objects.create(owner=owner, endpoint=qwen, options=family_defaults(qwen))
    target = Conversation.objects.create(owner=owner, endpoint=qwen, options={"temperature": 1.5})
    client.force_login(owner)
    tools = '[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]'
    data = panel_post(source, system_prompt="Be brief.", temperature="0.2", max_tokens="64", tools=tools,
                      response_format__type="json_object", name="Brief JSON")
    response = client.post(reverse("chat:preset_save", args=[source.public_id]), data, headers=HTMX)
    assert "Saved “Brief JSON”" in response.content.decode()
    preset = Preset.objects.get(name="Brief JSON", owner=owner)
    assert preset.values["system_prompt"] == "Be brief."
    assert preset.values["options"]["temperature"] == 0.2 and preset.values["options"]["max_tokens"] == 64
    assert preset.values["tools"][0]["function"]["name"] == "lookup"
    assert preset.values["response_format"] == {"type": "json_object"}

    response = client.post(reverse("chat:preset_apply", args=[target.public_id]), {"preset": str(preset.public_id)}, headers=HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "Preset “Brief JSON” applied" in body
    target.refresh_from_db()
    assert target.system_prompt == "Be brief." and target.options["temperature"] == 0.2
    assert target.tools == preset.values["tools"] and target.response_format == {"type": "json_object"}
    # The panel that came back shows exactly what the next request carries
    shown = PanelForm.initial_for(target)
    assert 'value="0.2"' in body and shown["system_prompt"] == "Be brief."


def test_a_preset_the_panel_would_refuse_is_not_applied(client, owner, qwen):
    conversation = Conversation.objects.create(owner=owner, endpoint=qwen, options={"temperature": 0.7})
    preset = Preset.objects.create(owner=owner, name="Broken", values={"options": {"top_p": 7}})
    client.force_login(owner)
    body = client.post(reverse("chat:preset_apply", args=[conversation.public_id]), {"preset": str(preset.public_id)},
                       headers=HTMX).content.decode()
    assert "Preset “Broken” not applied: top_p must be at most 1, got 7.0" in body
    conversation.refresh_from_db()
    assert conversation.options == {"temperature": 0.7}


def test_preset_access(client, owner, teammate, outsider, team, qwen):
    conversation = Conversation.objects.create(owner=owner, endpoint=qwen, team=team, visibility="team")
    private = Preset.objects.create(owner=owner, name="Private", values={"options": {"temperature": 0.1}})
    mine = Conversation.objects.create(owner=teammate, endpoint=qwen)
    client.force_login(teammate)
    # Someone else's private preset cannot be applied, even by guessing its id
    client.post(reverse("chat:preset_apply", args=[mine.public_id]), {"preset": str(private.public_id)}, headers=HTMX)
    mine.refresh_from_db()
    assert mine.options == {}
    # A teammate cannot apply anything to the owner's conversation, but may save its settings as their own preset
    assert client.post(reverse("chat:preset_apply", args=[conversation.public_id]), {"preset": ""}).status_code == 404
    client.post(reverse("chat:preset_save", args=[conversation.public_id]), {"name": "Copied"}, headers=HTMX)
    assert Preset.objects.get(name="Copied").owner == teammate
    client.force_login(outsider)
    assert client.post(reverse("chat:preset_save", args=[conversation.public_id]), {"name": "Stolen"}).status_code == 404
    assert client.post(reverse("chat:item_delete", args=["preset", private.public_id])).status_code == 404
    assert Preset.objects.filter(pk=private.pk).exists()


# --- test sets -------------------------------------------------------------------------------------------


def test_csv_upload_creates_the_set_and_a_bad_one_nothing(client, owner):
    client.force_login(owner)
    rows = "\n".join(f"City {i},Lang {i},answer {i}" for i in range(20))
    good = SimpleUploadedFile("cities.csv", f"city,language,expected\n{rows}\n".encode(), content_type="text/csv")
    response = client.post(reverse("chat:testset_new"), {"name": "Cities", "file": good})
    testset = TestSet.objects.get(name="Cities")
    assert response.status_code == 302 and testset.variables == ["city", "language"]
    assert testset.cases.count() == 20 and testset.cases.get(position=19).values == {"city": "City 19", "language": "Lang 19"}

    bad = SimpleUploadedFile("bad.csv", b"city,language\nParis,French\nRome,Italian\nOslo\n", content_type="text/csv")
    response = client.post(reverse("chat:testset_new"), {"name": "Broken", "file": bad})
    assert response.status_code == 400
    assert "Row 3 (line 4): 1 field, but the header has 2 columns." in response.content.decode()
    assert not TestSet.objects.filter(name="Broken").exists() and TestCase.objects.count() == 20


def test_paste_jsonl_and_append_or_replace(client, owner):
    client.force_login(owner)
    client.post(reverse("chat:testset_new"), {"name": "Math", "text": '{"q": "1+1", "expected": "2"}\n{"q": "2+2", "expected": "4"}'})
    testset = TestSet.objects.get(name="Math")
    url = reverse("chat:testset_import", args=[testset.public_id])
    body = client.post(url, {"text": "q,expected\n3+3,6\n"}, headers=HTMX).content.decode()
    assert "Added 1 row." in body and testset.cases.count() == 3 and testset.cases.get(position=2).values == {"q": "3+3"}
    # Other columns are refused for an append (nothing added), accepted as a replacement
    body = client.post(url, {"text": "a,b\n1,2\n"}, headers=HTMX).content.decode()
    assert "are not this set&#x27;s" in body and testset.cases.count() == 3
    body = client.post(url, {"text": "a,b\n1,2\n", "mode": "replace"}, headers=HTMX).content.decode()
    testset.refresh_from_db()
    assert "Replaced the rows with 1 row." in body and testset.variables == ["a", "b"] and testset.cases.count() == 1


def test_row_edits(client, owner, teammate, team):
    testset = TestSet.objects.create(owner=owner, name="T", variables=["q"], team=team, visibility="team")
    TestCase.objects.create(test_set=testset, position=0, values={"q": "old"})
    client.force_login(owner)
    url = reverse("chat:testset_row", args=[testset.public_id, 0])
    assert 'name="var_q"' in client.get(url + "?edit", headers=HTMX).content.decode()
    body = client.post(url, {"var_q": "", "expected": "x"}, headers=HTMX).content.decode()
    assert "Column &quot;q&quot;: empty" in body and testset.cases.get().values == {"q": "old"}
    body = client.post(url, {"var_q": "new <b>", "expected": "ok"}, headers=HTMX).content.decode()
    assert "new &lt;b&gt;" in body and testset.cases.get().values == {"q": "new <b>"}
    client.post(reverse("chat:testset_row_add", args=[testset.public_id]), {"var_q": "second", "expected": ""}, headers=HTMX)
    assert list(testset.cases.values_list("position", flat=True)) == [0, 1]
    client.post(reverse("chat:testset_column_add", args=[testset.public_id]), {"name": "lang", "value": "en"}, headers=HTMX)
    testset.refresh_from_db()
    assert testset.variables == ["q", "lang"] and all(c.values["lang"] == "en" for c in testset.cases.all())
    client.post(reverse("chat:testset_row_delete", args=[testset.public_id, 0]), headers=HTMX)
    assert testset.cases.count() == 1
    # The teammate reads the table, edits nothing
    client.force_login(teammate)
    assert client.get(reverse("chat:testset", args=[testset.public_id])).status_code == 200
    assert client.get(url.replace("row-0", "row-1") + "?edit").status_code == 404
    assert client.post(url.replace("row-0", "row-1"), {"var_q": "x", "var_lang": "y"}).status_code == 404
    assert client.post(reverse("chat:testset_import", args=[testset.public_id]), {"text": "q,lang\na,b"}).status_code == 404


def test_outsiders_get_404_on_test_sets(client, owner, outsider):
    testset = TestSet.objects.create(owner=owner, name="T", variables=["q"])
    TestCase.objects.create(test_set=testset, position=0, values={"q": "x"})
    client.force_login(outsider)
    assert client.get(reverse("chat:testset", args=[testset.public_id])).status_code == 404
    assert client.get(reverse("chat:testset_row", args=[testset.public_id, 0])).status_code == 404


# --- Use a prompt in a conversation ------------------------------------------------------------------------


@pytest.fixture
def travel(owner) -> PromptVersion:
    prompt = Prompt.objects.create(owner=owner, name="Travel")
    return PromptVersion.objects.create(prompt=prompt, number=1, messages=[
        {"role": "system", "content": "You are a guide for {{city}}."},
        {"role": "user", "content": "What should I see in {{city}} in {{month}}?"},
    ])


def test_use_prompt_adds_the_rendered_messages_and_records_the_version(client, owner, qwen, travel):
    conversation = Conversation.objects.create(owner=owner, endpoint=qwen)
    client.force_login(owner)
    form = client.get(reverse("chat:use_prompt_form", args=[conversation.public_id]), {"prompt": str(travel.prompt.public_id)},
                      headers=HTMX).content.decode()
    assert 'name="var_city"' in form and 'name="var_month"' in form
    response = client.post(reverse("chat:use_prompt", args=[conversation.public_id]),
                           {"prompt": str(travel.prompt.public_id), "version": "1", "var_city": "Kyoto", "var_month": "May"},
                           headers=HTMX)
    assert response.status_code == 200 and '"prompt-used": {"run": true}' in response["HX-Trigger-After-Settle"]
    body = response.content.decode()
    assert "Added Travel v1: running…" in body and ">Travel v1</a>" in body  # the header names the version
    conversation.refresh_from_db()
    assert conversation.prompt_version == travel and conversation.title == "Travel v1"
    page_html = client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    assert f'href="/p/{travel.prompt.public_id}/">Travel v1</a>' in page_html
    assert conversation.api_messages() == [
        {"role": "system", "content": "You are a guide for Kyoto."},
        {"role": "user", "content": "What should I see in Kyoto in May?"},
    ]


def test_use_prompt_names_a_missing_variable_and_adds_nothing(client, owner, qwen, travel):
    conversation = Conversation.objects.create(owner=owner, endpoint=qwen)
    client.force_login(owner)
    response = client.post(reverse("chat:use_prompt", args=[conversation.public_id]),
                           {"prompt": str(travel.prompt.public_id), "var_city": "Kyoto", "var_month": "  "}, headers=HTMX)
    assert "No value for the variable &#x27;month&#x27;." in response.content.decode()
    assert response["HX-Retarget"] == "#prompt-variables"
    assert "Kyoto" in response.content.decode()  # what was typed comes back
    assert Message.objects.filter(conversation=conversation).count() == 0


def test_use_prompt_applies_the_versions_settings(client, owner, qwen, travel):
    travel.values = {"system_prompt": "", "options": {"temperature": 0.3}, "tools": [], "response_format": None, "canned_results": {}}
    travel.save()
    conversation = Conversation.objects.create(owner=owner, endpoint=qwen, options={"temperature": 1.0})
    client.force_login(owner)
    body = client.post(reverse("chat:use_prompt", args=[conversation.public_id]),
                       {"prompt": str(travel.prompt.public_id), "var_city": "Oslo", "var_month": "June"}, headers=HTMX).content.decode()
    conversation.refresh_from_db()
    assert conversation.options == {"temperature": 0.3} and "Settings of Travel v1 applied" in body


def test_use_prompt_access(client, owner, teammate, outsider, team, qwen, travel):
    mine = Conversation.objects.create(owner=outsider, endpoint=qwen)
    client.force_login(outsider)  # the prompt is private: the outsider cannot use it
    client.post(reverse("chat:use_prompt", args=[mine.public_id]),
                {"prompt": str(travel.prompt.public_id), "var_city": "A", "var_month": "B"}, headers=HTMX)
    assert Message.objects.filter(conversation=mine).count() == 0
    owners = Conversation.objects.create(owner=owner, endpoint=qwen, team=team, visibility="team")
    client.force_login(teammate)  # nor may a teammate add messages to the owner's conversation
    assert client.post(reverse("chat:use_prompt", args=[owners.public_id]), {"prompt": str(travel.prompt.public_id)}).status_code == 404


# --- the history search ---------------------------------------------------------------------------------


def test_history_lists_library_items_in_scope_and_search(client, owner, teammate, outsider, team):
    shared = Prompt.objects.create(owner=owner, name="Weather prompt", team=team, visibility="team")
    PromptVersion.objects.create(prompt=shared, number=1, messages=[{"role": "user", "content": "Forecast for {{town}}"}])
    Prompt.objects.create(owner=owner, name="Secret weather")
    TestSet.objects.create(owner=owner, name="Weather cases", team=team, visibility="team", variables=["town"])
    Preset.objects.create(owner=teammate, name="Teammate preset", values={})
    body = page(client, teammate, reverse("chat:index"), data={"scope": "all", "q": "weather"}).content.decode()
    assert "Weather prompt" in body and "Weather cases" in body and "Secret weather" not in body
    body = page(client, teammate, reverse("chat:index"), data={"scope": "all", "q": "forecast"}).content.decode()
    assert "Weather prompt" in body  # found by its messages
    body = page(client, teammate, reverse("chat:index"), data={"scope": "mine"}).content.decode()
    assert "Teammate preset" in body and "Weather prompt" not in body
    body = page(client, outsider, reverse("chat:index"), data={"scope": "all", "q": "weather"}).content.decode()
    assert "Weather" not in body
    # Filters: by author and date as conversations; one that only conversations have leaves the library out
    body = page(client, teammate, reverse("chat:index"), data={"scope": "all", "author": "bob"}).content.decode()
    assert "Teammate preset" in body and "Weather prompt" not in body
    body = page(client, teammate, reverse("chat:index"), data={"scope": "all", "until": "2000-01-01"}).content.decode()
    assert "In the library" not in body
    body = page(client, teammate, reverse("chat:index"), data={"scope": "all", "q": "weather", "family": "qwen"}).content.decode()
    assert "Weather prompt" not in body


# --- a preset on a comparison pane -----------------------------------------------------------------------


def test_a_preset_becomes_a_panes_overrides_in_one_step(client, owner, teammate, team, qwen):
    from chat import compare

    comparison = compare.new_comparison(owner, [(qwen, {"temperature": 1.0}), (qwen, {})])
    comparison.team, comparison.visibility = team, "team"
    comparison.save()
    first, second = comparison.panes.all()
    preset = Preset.objects.create(owner=owner, name="Cool", values={
        "system_prompt": "Be brief.", "options": {"temperature": 0.1, "chat_template_kwargs": {"enable_thinking": False}},
        "tools": [], "response_format": {"type": "json_object"}, "canned_results": {}})
    url = reverse("chat:compare_pane_preset", args=[comparison.public_id, second.public_id])
    client.force_login(owner)
    response = client.post(url, {"preset": str(preset.public_id)}, headers=HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == reverse("chat:conversation", args=[comparison.public_id])
    second.refresh_from_db()
    assert second.overrides == {"enable_thinking": False, "temperature": 0.1, "response_format": {"type": "json_object"}}
    body = client.get(reverse("chat:conversation", args=[comparison.public_id])).content.decode()
    assert "Preset “Cool” applied to pane 2; not taken: the system prompt" in body
    assert "temperature 0.1" in body and 'aria-label="Apply the preset to pane 1"' in body
    values = compare.pane_values(comparison, second)
    assert values["temperature"] == 0.1 and values["chat_template_kwargs"]["enable_thinking"] is False
    first.refresh_from_db()
    assert first.overrides == {"temperature": 1.0}  # the other pane is as it was

    bad = Preset.objects.create(owner=owner, name="Bad", values={"options": {"top_p": 9}})
    client.post(url, {"preset": str(bad.public_id)}, headers=HTMX)
    second.refresh_from_db()
    assert second.overrides["temperature"] == 0.1
    assert "Preset “Bad” not applied to pane 2: top_p" in client.get(reverse("chat:conversation", args=[comparison.public_id])).content.decode()

    client.force_login(teammate)  # reads the shared comparison, changes no pane, sees no picker
    assert client.post(url, {"preset": str(preset.public_id)}).status_code == 404
    assert "Apply the preset to pane" not in client.get(reverse("chat:conversation", args=[comparison.public_id])).content.decode()
    chat = Conversation.objects.create(owner=owner, endpoint=qwen)
    client.force_login(owner)
    assert client.post(reverse("chat:compare_pane_preset", args=[chat.public_id, second.public_id]),
                       {"preset": str(preset.public_id)}).status_code == 404


def test_deleting_a_prompt_or_test_set_asks_first_and_goes_to_the_library(client, owner, teammate, team):
    prompt = Prompt.objects.create(owner=owner, name="Old", team=team, visibility="team")
    PromptVersion.objects.create(prompt=prompt, number=1, messages=[{"role": "user", "content": "x"}])
    testset = TestSet.objects.create(owner=owner, name="Old set", variables=["q"])
    client.force_login(owner)
    page_html = client.get(reverse("chat:prompt", args=[prompt.public_id])).content.decode()
    assert 'hx-confirm="Delete the prompt “Old” and all its versions?' in page_html
    response = client.post(reverse("chat:item_delete", args=["prompt", prompt.public_id]), headers=HTMX)
    assert response["HX-Redirect"] == reverse("chat:library") and not Prompt.objects.filter(pk=prompt.pk).exists()
    assert PromptVersion.objects.count() == 0
    response = client.post(reverse("chat:item_delete", args=["testset", testset.public_id]))
    assert response.status_code == 302 and not TestSet.objects.exists()


def test_whoever_may_see_an_item_may_duplicate_it(client, owner, teammate, outsider, team):
    preset = Preset.objects.create(owner=owner, name="Team preset", values={"options": {"temperature": 0.2}}, team=team, visibility="team")
    private_preset = Preset.objects.create(owner=owner, name="Mine", values={})
    prompt = Prompt.objects.create(owner=owner, name="Shared", team=team, visibility="team", preset=private_preset)
    PromptVersion.objects.create(prompt=prompt, number=1, messages=[{"role": "user", "content": "a {{x}}"}])
    PromptVersion.objects.create(prompt=prompt, number=2, messages=[{"role": "user", "content": "b {{x}}"}], values={"options": {}})
    testset = TestSet.objects.create(owner=owner, name="Cases", variables=["x"], team=team, visibility="team", checks=[{"kind": "contains"}])
    TestCase.objects.create(test_set=testset, position=0, values={"x": "1"}, expected="one")
    TestCase.objects.create(test_set=testset, position=3, values={"x": "2"})
    client.force_login(teammate)
    response = client.post(reverse("chat:item_duplicate", args=["prompt", prompt.public_id]))
    copy = Prompt.objects.get(owner=teammate)
    assert response.status_code == 302 and response["Location"] == reverse("chat:prompt", args=[copy.public_id])
    assert copy.name == "Shared (copy)" and copy.visibility == "private" and copy.preset is None  # not theirs to see
    assert [(v.number, v.messages, v.note) for v in copy.versions.all()] == [
        (1, [{"role": "user", "content": "b {{x}}"}], "copied from Shared v2 by alice")]
    client.post(reverse("chat:item_duplicate", args=["testset", testset.public_id]))
    copied = TestSet.objects.get(owner=teammate)
    assert [(c.position, c.values, c.expected) for c in copied.cases.all()] == [(0, {"x": "1"}, "one"), (3, {"x": "2"}, "")]
    assert copied.checks == [{"kind": "contains"}]
    client.post(reverse("chat:item_duplicate", args=["preset", preset.public_id]))
    assert Preset.objects.get(owner=teammate).values == {"options": {"temperature": 0.2}}
    assert client.post(reverse("chat:item_duplicate", args=["preset", private_preset.public_id])).status_code == 404
    client.force_login(outsider)
    assert client.post(reverse("chat:item_duplicate", args=["prompt", prompt.public_id])).status_code == 404
    assert not Prompt.objects.filter(owner=outsider).exists()
