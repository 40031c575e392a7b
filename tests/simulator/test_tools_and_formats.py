"""Tool calls and constrained output: arguments and structured answers that
conform to the schema the request gave (checked with jsonschema, with an
explicit referencing registry), streamed as vLLM streams them."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import referencing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import accumulate, chat, stream
from .test_generation import WEATHER_TOOLS


def validate(instance, schema) -> None:
    cls = jsonschema.validators.validator_for(schema)
    cls(schema, registry=referencing.Registry(), format_checker=cls.FORMAT_CHECKER).validate(instance)


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _calls(body: dict) -> list[tuple[str, dict]]:
    message = body["choices"][0]["message"]
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message.get("tool_calls", [])]


def _schema(name: str) -> dict:
    return next(t["function"]["parameters"] for t in WEATHER_TOOLS if t["function"]["name"] == name)


# --------------------------------------------------------------------------- tools

def test_auto_calls_the_tool_the_prompt_mentions(client):
    body = chat(client, messages=_ask("What's the weather in Paris?"), tools=WEATHER_TOOLS,
                chat_template_kwargs={"enable_thinking": False})
    assert _calls(body) == [("get_weather", {"city": "Paris"})]
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["id"].startswith("chatcmpl-tool-")

    body = chat(client, messages=_ask("What time is it in Tokyo?"), tools=WEATHER_TOOLS)
    assert _calls(body) == [("get_time", {"timezone": "Asia/Tokyo"})]
    for name, arguments in _calls(body):
        validate(arguments, _schema(name))


def test_auto_without_a_matching_tool_answers_in_text(client):
    body = chat(client, messages=_ask("Hello!"), tools=WEATHER_TOOLS)
    choice = body["choices"][0]
    assert "tool_calls" not in choice["message"] and choice["finish_reason"] == "stop"
    assert "get_weather" in choice["message"]["content"]


def test_two_things_give_two_calls_unless_parallel_is_off(client):
    ask = _ask("What's the weather in Paris and Tokyo?")
    assert _calls(chat(client, messages=ask, tools=WEATHER_TOOLS)) == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"})]
    assert _calls(chat(client, messages=ask, tools=WEATHER_TOOLS, parallel_tool_calls=False)) == [
        ("get_weather", {"city": "Paris"})]
    assert len(_calls(chat(client, messages=ask, tools=WEATHER_TOOLS, tool_choice="required",
                           parallel_tool_calls=False))) == 1


def test_two_different_tools_by_name(client):
    ask = _ask("Use get_weather for Paris and get_time for Tokyo")
    assert [name for name, _ in _calls(chat(client, messages=ask, tools=WEATHER_TOOLS))] == ["get_weather", "get_time"]


def test_optional_arguments_appear_when_mentioned(client):
    body = chat(client, messages=_ask("Weather in Berlin in fahrenheit please"), tools=WEATHER_TOOLS)
    assert _calls(body) == [("get_weather", {"city": "Berlin", "unit": "fahrenheit"})]


def test_required_calls_a_tool_even_for_small_talk(client):
    body = chat(client, messages=_ask("Hello!"), tools=WEATHER_TOOLS, tool_choice="required")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == ""
    (name, arguments), = _calls(body)
    validate(arguments, _schema(name))


def test_named_tool_choice_finishes_with_stop(client):
    body = chat(client, messages=_ask("What's the weather in Paris?"), tools=WEATHER_TOOLS,
                tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert _calls(body) == [("get_time", {"timezone": "Europe/Paris"})]
    assert body["choices"][0]["finish_reason"] == "stop"  # as real vLLM (04e)
    assert body["choices"][0]["message"]["content"] == ""


def test_tool_choice_none_answers_in_text(client):
    body = chat(client, messages=_ask("What's the weather in Paris?"), tools=WEATHER_TOOLS, tool_choice="none")
    message = body["choices"][0]["message"]
    assert "tool_calls" not in message and "tool_choice is none" in message["content"]


def test_answer_after_a_tool_result_uses_it(client):
    messages = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 22, \"condition\": \"sunny\"}"},
    ]
    content = chat(client, messages=messages, tools=WEATHER_TOOLS)["choices"][0]["message"]["content"]
    assert "get_weather" in content and "Paris" in content and "22" in content and "sunny" in content


def test_tool_calls_stream_like_vllm(client):
    streamed = stream(client, messages=_ask("What's the weather in Paris and Tokyo?"), tools=WEATHER_TOOLS,
                      chat_template_kwargs={"enable_thinking": False})
    deltas = [c["choices"][0]["delta"] for c in streamed.chunks[1:-1]]
    calls = [d["tool_calls"][0] for d in deltas]
    assert all(d["content"] is None for d in deltas)
    headers = [c for c in calls if "id" in c]
    assert [(h["index"], h["type"], h["function"]) for h in headers] == [
        (0, "function", {"name": "get_weather"}), (1, "function", {"name": "get_weather"})]
    fragments = [c for c in calls if "id" not in c]
    assert all(set(f) == {"index", "function"} and 0 < len(f["function"]["arguments"]) <= 8 for f in fragments)
    assert len(fragments) >= 8
    folded = accumulate(streamed.chunks)[0]
    assert [json.loads(c["arguments"]) for c in folded["tool_calls"].values()] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert folded["finish_reason"] == "tool_calls"


def test_a_tool_call_cut_by_max_tokens_stays_text(client):
    body = chat(client, messages=_ask("What's the weather in Paris?"), tools=WEATHER_TOOLS, max_tokens=8,
                chat_template_kwargs={"enable_thinking": False})
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and "tool_calls" not in choice["message"]
    assert choice["message"]["content"].startswith("<tool_call>")


def test_mistral_tool_call_ids_are_nine_characters(client):
    body = chat(client, model="sim/mistral-small", messages=_ask("What's the weather in Paris?"), tools=WEATHER_TOOLS)
    assert re.fullmatch(r"[A-Za-z0-9]{9}", body["choices"][0]["message"]["tool_calls"][0]["id"])


# --------------------------------------------------------------------------- constrained output

PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 20},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 2, "maxItems": 3},
    "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "tags", "age"], "additionalProperties": False}

RICH = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 0},
                                                           "y": {"type": "integer", "multipleOf": 5, "minimum": 7}},
                        "required": ["x", "y"], "additionalProperties": False}},
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "when": {"type": "string", "format": "date-time"},
        "email": {"type": "string", "format": "email"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
        "kind": {"enum": ["a", "b"]},
        "fixed": {"const": 42},
        "maybe": {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 3}]},
        "both": {"allOf": [{"type": "object", "properties": {"p": {"type": "boolean"}}, "required": ["p"]},
                           {"properties": {"q": {"type": "string"}}, "required": ["q"]}]},
        "points": {"type": "array", "items": {"$ref": "#/$defs/point"}, "minItems": 1, "uniqueItems": True},
        "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        "ratio": {"type": ["number", "null"], "minimum": 0.25, "maximum": 0.5},
    },
    "required": ["id", "when", "email", "code", "kind", "fixed", "maybe", "both", "points", "pair", "ratio"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("schema", [PERSON, RICH], ids=["person", "rich"])
def test_json_schema_output_conforms(client, schema):
    for body in (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}},
        {"structured_outputs": {"json": schema}},
        {"structured_outputs": {"json": json.dumps(schema)}},
    ):
        content = chat(client, messages=_ask("Describe a person as JSON."), **body)["choices"][0]["message"]["content"]
        validate(json.loads(content), schema)


def test_json_schema_with_thinking_reasons_first(client):
    message = chat(client, messages=_ask("Describe a person as JSON."), chat_template_kwargs={"enable_thinking": True},
                   response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}})["choices"][0]["message"]
    assert message["reasoning"]
    validate(json.loads(message["content"]), PERSON)


def test_json_object(client):
    content = chat(client, messages=_ask("Give me a JSON object."), response_format={"type": "json_object"},
                   chat_template_kwargs={"enable_thinking": False})["choices"][0]["message"]["content"]
    assert isinstance(json.loads(content), dict)


@pytest.mark.parametrize("pattern", [r"\+1-[0-9]{3}-[0-9]{3}-[0-9]{4}", r"(yes|no)!?", r"[a-z]+@[a-z]+\.(com|org)",
                                     r"\d{2,4}-[^\s]{3}", r"(ab)+c?\1"])
def test_regex(client, pattern):
    content = chat(client, messages=_ask("Give me a phone number."),
                   structured_outputs={"regex": pattern})["choices"][0]["message"]["content"]
    assert re.fullmatch(pattern, content)


def test_choice_prefers_the_option_the_prompt_mentions(client):
    content = chat(client, messages=_ask("Is the sky blue? Answer maybe."),
                   structured_outputs={"choice": ["yes", "no", "maybe"]})["choices"][0]["message"]["content"]
    assert content == "maybe"
    content = chat(client, messages=_ask("Is it?"), structured_outputs={"choice": ["yes", "no"]})["choices"][0]["message"]["content"]
    assert content in ("yes", "no")


@pytest.mark.parametrize(("grammar", "accept"), [
    ('root ::= "red" | "green" | "blue"', r"red|green|blue"),
    ('root ::= greeting " " name\ngreeting ::= "hi" | "hello"\nname ::= [A-Z] [a-z]+', r"(hi|hello) [A-Z][a-z]+"),
    ('root ::= "[" item ("," item)* "]"\nitem ::= [0-9]+', r"\[[0-9]+(,[0-9]+)*\]"),
    ('?start: "yes" | "no"', r"yes|no"),
])
def test_grammar_subset(client, grammar, accept):
    content = chat(client, messages=_ask("Pick a color."),
                   structured_outputs={"grammar": grammar})["choices"][0]["message"]["content"]
    assert re.fullmatch(accept, content)


def test_structural_tags(client):
    legacy = {"type": "structural_tag", "triggers": ["<function="], "structures": [
        {"begin": "<function=get_weather>", "schema": _schema("get_weather"), "end": "</function>"}]}
    content = chat(client, messages=_ask("Weather in Paris?"), response_format=legacy)["choices"][0]["message"]["content"]
    inner = re.search(r"<function=get_weather>(.*)</function>$", content).group(1)
    validate(json.loads(inner), _schema("get_weather"))

    modern = {"type": "structural_tag", "format": {"type": "triggered_tags", "triggers": ["<tool>"], "tags": [
        {"begin": "<tool>", "content": {"type": "json_schema", "json_schema": PERSON}, "end": "</tool>"}]}}
    content = chat(client, messages=_ask("Describe Bob"),
                   structured_outputs={"structural_tag": json.dumps(modern)})["choices"][0]["message"]["content"]
    validate(json.loads(re.search(r"<tool>(.*)</tool>$", content).group(1)), PERSON)


def test_structured_output_streams_in_pieces(client):
    folded = accumulate(stream(client, messages=_ask("Describe a person as JSON."),
                               response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
                               chat_template_kwargs={"enable_thinking": False}).chunks)[0]
    validate(json.loads(folded["content"]), PERSON)


def test_unsatisfiable_constraints_are_400(client):
    for body in ({"structured_outputs": {"regex": "(unclosed"}},
                 {"structured_outputs": {"grammar": "this is not a grammar"}},
                 {"structured_outputs": {"regex": "a", "choice": ["b"]}}):
        response = client.post("/v1/chat/completions", json={"model": "sim/qwen3", "messages": _ask("x"), **body})
        assert response.status_code == 400, body
        assert response.json()["error"]["type"] == "BadRequestError"


# A property test: any schema built from these pieces gets a conforming answer.
_leaf = st.one_of(
    st.builds(lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
              st.integers(-50, 50), st.integers(0, 20)),
    st.builds(lambda lo: {"type": "number", "exclusiveMinimum": lo}, st.floats(-5, 5, allow_nan=False)),
    st.builds(lambda lo, span: {"type": "string", "minLength": lo, "maxLength": lo + span},
              st.integers(0, 5), st.integers(0, 10)),
    st.sampled_from([{"type": "boolean"}, {"type": "null"}, {"enum": ["x", 1, None]}, {"const": "k"},
                     {"type": "string", "format": "date"}, {"type": "string", "pattern": "^[a-f]{2}[0-9]$"}]),
)
_schemas = st.recursive(_leaf, lambda inner: st.one_of(
    st.builds(lambda items, lo, extra: {"type": "array", "items": items, "minItems": lo, "maxItems": lo + extra},
              inner, st.integers(0, 3), st.integers(0, 2)),
    st.builds(lambda props, req: {"type": "object", "properties": props,
                                  "required": sorted(props)[: req], "additionalProperties": False},
              st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), inner, max_size=4), st.integers(0, 4)),
    st.builds(lambda a, b: {"anyOf": [a, b]}, inner, inner),
), max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=_schemas)
def test_any_schema_gets_a_conforming_answer(client, schema):
    body = chat(client, messages=_ask("Fill this in."), structured_outputs={"json": schema},
                chat_template_kwargs={"enable_thinking": False})
    validate(json.loads(body["choices"][0]["message"]["content"]), schema)
