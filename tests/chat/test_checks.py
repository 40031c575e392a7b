"""A test set's checks (chat.checks): what passes, what fails and why, and bad specs refused."""

from __future__ import annotations

import json

import pytest

from chat.checks import Answer, CheckError, evaluate, validate

SCHEMA_BODY = {"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {
    "type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}}}}


def answer(content="", tool_calls=None, body=None, expected="", **values) -> Answer:
    return Answer(content=content, tool_calls=tool_calls, request_body=body or {}, values={**values, "expected": expected},
                  expected=expected)


def outcomes(checks, a):
    return [(o["label"], o["passed"], o["detail"]) for o in evaluate(validate(checks), a)]


def test_contains_fills_in_the_rows_variables_and_ignores_case_unless_asked():
    checks = [{"kind": "contains", "value": "{{city}}"}, {"kind": "contains", "value": "PARIS", "case_sensitive": True}]
    assert outcomes(checks, answer("It rains in paris.", city="Paris")) == [
        ('Contains "{{city}}"', True, ""), ('Contains "PARIS"', False, "'PARIS' not in the answer")]


def test_a_regex_matches_a_variable_literally():
    checks = [{"kind": "regex", "pattern": r"^\d+ in {{city}}$"}]
    assert outcomes(checks, answer("12 in St. Louis", city="St. Louis"))[0][1] is True
    assert outcomes(checks, answer("12 in StX Louis", city="St. Louis"))[0][1] is False  # the dot is not "any"


def test_equals_expected_json_and_schema():
    checks = [{"kind": "equals"}, {"kind": "json"}, {"kind": "schema"}]
    assert [o[1] for o in outcomes(checks, answer(' {"age": 3}\n', body=SCHEMA_BODY, expected='{"age": 3}'))] == [True, True, True]
    result = outcomes(checks, answer('{"age": "three"}', body=SCHEMA_BODY, expected='{"age": 3}'))
    assert result[0][1] is False and result[1][1] is True
    assert result[2] == ("Matches schema", False, "at age: 'three' is not of type 'integer'")
    assert outcomes([{"kind": "schema"}], answer('{"age": 3}'))[0][2] == "the request had no JSON schema in its response format"
    assert outcomes([{"kind": "json"}], answer("{age: 3}"))[0][2].startswith("not valid JSON")


def call(name, **arguments):
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def test_a_tool_call_by_name_and_argument_values():
    check = [{"kind": "tool_call", "name": "get_weather", "arguments": {"location": "{{city}}", "days": "3"}}]
    assert outcomes(check, answer(tool_calls=[call("get_weather", location="Paris", days=3)], city="Paris")) == [
        ("Calls tool get_weather(location, days)", True, "")]
    assert outcomes(check, answer(tool_calls=[call("get_weather", location="Lyon", days=3)], city="Paris"))[0][2] == \
        "location='Lyon' (expected 'Paris')"
    assert outcomes(check, answer(tool_calls=[call("get_time")], city="Paris"))[0][2] == "called get_time, not get_weather"
    assert outcomes(check, answer("no tools", city="Paris"))[0][2] == "called no tool, not get_weather"
    # Of two calls, one matching is enough (parallel calls).
    two = [call("get_weather", location="Lyon", days=3), call("get_weather", location="Paris", days=3)]
    assert outcomes(check, answer(tool_calls=two, city="Paris"))[0][1] is True


@pytest.mark.parametrize("checks, message", [
    ({"kind": "json"}, "must be a list"),
    ([{"kind": "nope"}], "Check 1: the kind must be one of"),
    ([{"kind": "json"}, {"kind": "contains"}], "Check 2 (contains): give the text"),
    ([{"kind": "regex", "pattern": "(unclosed"}], "Check 1 (regex): '(unclosed' is not a valid regular expression"),
    ([{"kind": "tool_call", "name": "f", "arguments": [1]}], "`arguments` must be an object"),
])
def test_bad_checks_are_named(checks, message):
    with pytest.raises(CheckError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(checks)
