"""The option registry covers the pages, and validate_value explains refusals."""

from __future__ import annotations

import re

import pytest

from chat.upstream.options import GROUPS, OPTIONS, OPTIONS_BY_NAME, OptionError, validate_value
from chat.upstream.payload import CONTENT_PART_KEYS, MESSAGE_KEYS

from .conftest import PAGE_FAMILY, page_attribute_names, page_texts

ISSUE_LIST = (
    "temperature top_p top_k min_p n max_tokens max_completion_tokens min_tokens stop stream stream_options "
    "presence_penalty frequency_penalty repetition_penalty logprobs top_logprobs logit_bias seed response_format "
    "structured_outputs tools tool_choice parallel_tool_calls functions function_call user metadata "
    "chat_template_kwargs extra_body"
).split()


def known_names() -> set[str]:
    names = {"model", "messages", "role", "content", *CONTENT_PART_KEYS}
    names |= set().union(*MESSAGE_KEYS.values())
    for option in OPTIONS:
        names |= {option.name, *option.keys}
    return names


def test_every_attribute_of_the_pages_is_known():
    named = set().union(*page_attribute_names().values())
    assert len(named) > 35
    assert named - known_names() == set()


def test_every_attribute_of_the_issue_is_an_option():
    assert [name for name in ISSUE_LIST if name not in OPTIONS_BY_NAME] == []


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_families_are_the_pages_that_show_the_option(option):
    showing = {PAGE_FAMILY[page] for page, names in page_attribute_names().items() if option.name in names}
    assert option.families == showing


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.families], ids=lambda o: o.name)
def test_description_is_the_pages_wording(option):
    first_sentence = re.split(r"(?<=[.)])\s", option.description)[0]
    pages = " ".join(" ".join(text.split()) for text in page_texts().values())
    assert first_sentence in pages


def test_registry_shape():
    assert len(OPTIONS_BY_NAME) == len(OPTIONS)
    assert {o.group for o in OPTIONS} == set(GROUPS)
    assert all(o.description and o.name not in ("model", "messages") for o in OPTIONS)
    extensions = {o.name for o in OPTIONS if o.vllm_extension}
    assert extensions == {
        "top_k", "min_p", "repetition_penalty", "min_tokens", "chat_template_kwargs", "structured_outputs",
        "stop_token_ids", "ignore_eos", "skip_special_tokens",
    }
    assert OPTIONS_BY_NAME["stop"].types == ("string", "array") and OPTIONS_BY_NAME["stop"].max_items == 4
    assert OPTIONS_BY_NAME["top_logprobs"].minimum == 0 and OPTIONS_BY_NAME["top_logprobs"].maximum == 20
    assert OPTIONS_BY_NAME["response_format"].choices == ("text", "json_object", "json_schema", "structural_tag")
    assert {"json", "regex", "choice", "grammar", "structural_tag"} <= set(OPTIONS_BY_NAME["structured_outputs"].keys)
    assert OPTIONS_BY_NAME["stream_options"].keys[0] == "include_usage"
    assert OPTIONS_BY_NAME["chat_template_kwargs"].keys == ("enable_thinking",)


WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}

GOOD = [
    ("temperature", 0), ("temperature", 1.5), ("top_p", 1), ("top_k", -1), ("top_k", 40), ("min_p", 0.0),
    ("n", 2), ("max_tokens", 1), ("min_tokens", 0), ("stop", "\n"), ("stop", ["a", "b", "c", "d"]),
    ("presence_penalty", -2), ("frequency_penalty", 2.0), ("repetition_penalty", 1.05), ("logprobs", True),
    ("top_logprobs", 20), ("logit_bias", {"1234": -5, "5678": 3}), ("seed", 1234), ("user", "u-1"),
    ("metadata", {"team": "red"}), ("stream", False), ("stream_options", {"include_usage": True}),
    ("stream_options", {"include_usage": True, "continuous_usage_stats": True}),
    ("tools", [WEATHER]), ("tool_choice", "required"),
    ("tool_choice", {"type": "function", "function": {"name": "get_weather"}}),
    ("parallel_tool_calls", False), ("functions", [{"name": "f", "parameters": {"type": "object"}}]),
    ("function_call", "auto"), ("function_call", {"name": "f"}),
    ("response_format", {"type": "text"}), ("response_format", {"type": "json_object"}),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}, "strict": True}}),
    ("response_format", {"type": "structural_tag", "structures": [], "triggers": []}),
    ("structured_outputs", {"json": {"type": "object"}}), ("structured_outputs", {"json": '{"type": "string"}'}),
    ("structured_outputs", {"regex": r"\d+"}), ("structured_outputs", {"choice": ["yes", "no"]}),
    ("structured_outputs", {"grammar": 'root ::= "a"'}), ("structured_outputs", {"structural_tag": "{}"}),
    ("chat_template_kwargs", {"enable_thinking": False, "custom": 1}), ("extra_body", {"ignore_eos": True}),
    ("stop_token_ids", [151645]), ("ignore_eos", True), ("skip_special_tokens", False), ("temperature", None),
]


@pytest.mark.parametrize("name, value", GOOD)
def test_valid_values_pass_unchanged(name, value):
    assert validate_value(name, value) is value


BAD = [
    ("temperature", -1.0, "temperature: must be at least 0, got -1.0"),
    ("temperature", "0.7", "temperature: must be a number, not a string"),
    ("temperature", True, "must be a number, not a boolean"),
    ("temperature", float("nan"), "must be a finite number"),
    ("top_p", 0, "must be greater than 0"),
    ("top_p", 1.1, "must be at most 1"),
    ("top_k", -2, "must be at least -1"),
    ("n", 0, "n: must be at least 1"),
    ("n", 1.0, "must be an integer, not a number"),
    ("max_tokens", 0, "must be at least 1"),
    ("presence_penalty", 2.5, "must be at most 2"),
    ("repetition_penalty", 0, "must be greater than 0"),
    ("top_logprobs", 50, "top_logprobs: must be at most 20, got 50"),
    ("logprobs", 1, "must be a boolean, not an integer"),
    ("stop", ["a", "b", "c", "d", "e"], "at most 4 sequences, got 5"),
    ("stop", ["a", ""], "stop[1]: each stop sequence must be a non-empty string"),
    ("stop", {"a": 1}, "must be a string or array, not an object"),
    ("stop_token_ids", [1, -2], "token IDs"),
    ("logit_bias", {"hello": 1}, "keys must be token IDs"),
    ("logit_bias", {"12": 101}, "from -100 to 100"),
    ("metadata", {"a": 1}, "metadata['a']: values must be strings"),
    ("stream_options", {"include_usage": "yes"}, "stream_options.include_usage: must be true or false"),
    ("chat_template_kwargs", {"enable_thinking": "no"}, "chat_template_kwargs.enable_thinking"),
    ("tools", [{"type": "retrieval"}], 'each tool must be {"type": "function"'),
    ("tools", [{"type": "function", "function": {"name": "get weather"}}], "tools[0].function.name"),
    ("tools", [{"type": "function", "function": {"name": "f", "description": 3}}], "tools[0].function.description"),
    ("tools", [{"type": "function", "function": "f"}], "must be an object with a name"),
    ("tools", [WEATHER, WEATHER], "tools[1].function.name: duplicate tool name 'get_weather'"),
    ("tools", [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
     'tools[0].function.parameters: must be a JSON Schema with "type": "object"'),
    ("tools", [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": "city"}}}],
     "tools[0].function.parameters.required: is not a valid JSON Schema"),
    ("tools", [{"type": "function", "function": {"name": "f", "strict": "yes"}}], "tools[0].function.strict"),
    ("functions", [{"name": "f"}, {"name": "f"}], "duplicate function name 'f'"),
    ("tool_choice", "always", "must be one of auto, none, required, not 'always'"),
    ("tool_choice", {"type": "function", "function": {}}, "a named tool choice is"),
    ("function_call", {"nom": "f"}, "a named function call is"),
    ("response_format", {"type": "xml"}, "response_format.type: type must be one of text, json_object"),
    ("response_format", {"type": "json_schema"}, 'needs a "json_schema" object'),
    ("response_format", {"type": "json_schema", "json_schema": {"schema": {}}}, "response_format.json_schema.name"),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "p"}}, "needs the schema to follow"),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "strin"}}},
     "response_format.json_schema.schema.type: is not a valid JSON Schema"),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "p", "schema": []}}, "must be a JSON Schema object"),
    ("structured_outputs", {}, "needs exactly one of json, regex, choice, grammar, structural_tag, json_object (found: none)"),
    ("structured_outputs", {"regex": "a", "choice": ["a"]}, "(found: regex, choice)"),
    ("structured_outputs", {"json": "{nope"}, "structured_outputs.json: is not valid JSON"),
    ("structured_outputs", {"json": {"type": 5}}, "structured_outputs.json.type: is not a valid JSON Schema"),
    ("structured_outputs", {"regex": " "}, "structured_outputs.regex: must be a non-empty string"),
    ("structured_outputs", {"choice": []}, "must be a non-empty list of strings"),
    ("structured_outputs", {"structural_tag": 3}, "must be a string or an object"),
    ("extra_body", {"model": "x"}, "cannot set 'model'"),
    ("nonsense", 1, "nonsense: unknown option"),
    ("temperature", (1,), "must be a number, not tuple"),
]


@pytest.mark.parametrize("name, value, message", BAD)
def test_invalid_values_are_refused_with_a_clear_message(name, value, message):
    with pytest.raises(OptionError) as caught:
        validate_value(name, value)
    assert message in str(caught.value)
    assert caught.value.name == name


def test_remote_refs_are_never_fetched():
    # A $ref to a URL is not resolved while checking the schema (no network).
    schema = {"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/nowhere.json"}}}
    validate_value("response_format", {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "definitions": {"a": 1}}
    with pytest.raises(OptionError, match=r"definitions\.a: is not a valid JSON Schema"):
        validate_value("structured_outputs", {"json": draft7})
