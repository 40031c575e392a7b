"""A test set's checks, applied to one answer of a batch run (no Django here).

A check is a JSON object with a `kind` (the list below) and its parameters; a test set keeps a
list of them (TestSet.checks) and every row's answer must pass all of them. String parameters
may name the row's variables as `{{name}}` (and `{{expected}}`), so one check serves every row:
`{"kind": "contains", "value": "{{city}}"}`, or a tool call whose `location` is the row's city.

    contains      {"value": "Paris", "case_sensitive": false}
    regex         {"pattern": "^\\d+$"}               Python `re`, searched anywhere (anchor it to match whole)
    equals        {}                                  the answer equals the row's expected value (trimmed)
    json          {}                                  the answer is valid JSON
    schema        {}                                  valid against the response format's JSON schema (jsonschema)
    tool_call     {"name": "get_weather", "arguments": {"location": "{{city}}"}}
                                                      a call of that tool; the listed arguments have those values
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from chat.schemas import check_answer, requested_schema
from chat.templating import PLACEHOLDER

KINDS = {
    "contains": "Contains",
    "regex": "Matches",
    "equals": "Equals expected",
    "json": "Valid JSON",
    "schema": "Matches schema",
    "tool_call": "Calls tool",
}
MAX_CHECKS = 20


class CheckError(ValueError):
    """A check spec that cannot be used; the message names it."""


@dataclass
class Answer:
    """What a check looks at: the saved answer and the request that asked for it."""

    content: str
    tool_calls: list | None
    request_body: dict
    values: dict  # the row's variables, plus "expected"
    expected: str = ""


def validate(checks) -> list[dict]:
    """The checks as stored, or CheckError naming the first bad one (1-based)."""
    if not isinstance(checks, list):
        raise CheckError("The checks must be a list.")
    if len(checks) > MAX_CHECKS:
        raise CheckError(f"At most {MAX_CHECKS} checks.")
    for number, check in enumerate(checks, 1):
        where = f"Check {number}"
        if not isinstance(check, dict) or check.get("kind") not in KINDS:
            raise CheckError(f"{where}: the kind must be one of {', '.join(KINDS)}.")
        kind = check["kind"]
        if kind == "contains" and not (isinstance(check.get("value"), str) and check["value"]):
            raise CheckError(f"{where} (contains): give the text to look for as `value`.")
        if kind == "regex":
            pattern = check.get("pattern")
            if not isinstance(pattern, str) or not pattern:
                raise CheckError(f"{where} (regex): give the pattern as `pattern`.")
            try:
                re.compile(PLACEHOLDER.sub("x", pattern))
            except re.error as e:
                raise CheckError(f"{where} (regex): {pattern!r} is not a valid regular expression ({e}).") from None
        if kind == "tool_call":
            if not (isinstance(check.get("name"), str) and check["name"]):
                raise CheckError(f"{where} (tool_call): give the tool's name as `name`.")
            if not isinstance(check.get("arguments", {}), dict):
                raise CheckError(f"{where} (tool_call): `arguments` must be an object of argument values.")
    return checks


def label(check: dict) -> str:
    """A short name for a column head: `Contains "Paris"`, `Calls get_weather(location)`."""
    kind = check.get("kind")
    if kind == "contains":
        return f'{KINDS[kind]} "{check["value"]}"'
    if kind == "regex":
        return f"{KINDS[kind]} /{check['pattern']}/"
    if kind == "tool_call":
        return f"{KINDS[kind]} {check['name']}({', '.join(check.get('arguments') or {})})"
    return KINDS.get(kind, str(kind))


def evaluate(checks: list[dict], answer: Answer) -> list[dict]:
    """Each check's outcome: {"label", "passed", "detail"} (detail says why it failed)."""
    return [dict(label=label(check), **_one(check, answer)) for check in checks]


def _fill(text: str, values: dict, escape=lambda s: s) -> str:
    return PLACEHOLDER.sub(lambda m: escape(str(values.get(m.group(1), m.group(0)))), text)


def _one(check: dict, answer: Answer) -> dict:
    kind, text, values = check["kind"], answer.content, answer.values
    if kind == "contains":
        needle = _fill(check["value"], values)
        found = needle in text if check.get("case_sensitive") else needle.casefold() in text.casefold()
        return _outcome(found, f"{needle!r} not in the answer")
    if kind == "regex":
        try:
            found = re.search(_fill(check["pattern"], values, re.escape), text) is not None
        except re.error as e:
            return _outcome(False, f"the pattern is invalid ({e})")
        return _outcome(found, "no match")
    if kind == "equals":
        return _outcome(text.strip() == answer.expected.strip(), f"expected {answer.expected.strip()[:200]!r}")
    if kind == "json":
        try:
            json.loads(text)
        except ValueError as e:
            return _outcome(False, f"not valid JSON ({e})")
        return _outcome(True)
    if kind == "schema":
        expects_json, schema = requested_schema(answer.request_body)
        if not expects_json or schema is None:
            return _outcome(False, "the request had no JSON schema in its response format")
        result = check_answer(answer.request_body, text)
        return _outcome(bool(result and result["valid"]), (result or {}).get("error", ""))
    if kind == "tool_call":
        return _tool_call(check, answer)
    return _outcome(False, f"unknown check {kind!r}")


def _tool_call(check: dict, answer: Answer) -> dict:
    name = check["name"]
    calls = [c.get("function") or {} for c in answer.tool_calls or [] if isinstance(c, dict)]
    matching = [c for c in calls if c.get("name") == name]
    if not matching:
        called = ", ".join(str(c.get("name")) for c in calls) or "no tool"
        return _outcome(False, f"called {called}, not {name}")
    wanted = {key: _fill(value, answer.values) if isinstance(value, str) else value
              for key, value in (check.get("arguments") or {}).items()}
    problems = []
    for call in matching:
        try:
            arguments = json.loads(call.get("arguments") or "{}")
        except ValueError:
            problems.append("its arguments are not valid JSON")
            continue
        if not isinstance(arguments, dict):
            problems.append("its arguments are not an object")
            continue
        wrong = [f"{key}={arguments.get(key)!r} (expected {value!r})" for key, value in wanted.items() if not _same(arguments.get(key), value)]
        if not wrong:
            return _outcome(True)
        problems.append(", ".join(wrong))
    return _outcome(False, "; ".join(problems))


def _same(actual, wanted) -> bool:
    """A filled-in `{{variable}}` is text: 3 and "3" are the same argument value."""
    return actual == wanted or (isinstance(wanted, str) and not isinstance(actual, str) and json.dumps(actual) == wanted)


def _outcome(passed: bool, detail: str = "") -> dict:
    return {"passed": bool(passed), "detail": "" if passed else detail}
