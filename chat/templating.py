"""Prompt templates: `{{name}}` placeholders in message contents (no Django here).

A name is a letter or underscore, then letters, digits or underscores (up to 64), with optional
spaces inside the braces: `{{ city }}` is `city`. Any other `{{...}}` is an error, so a typo never
goes out as literal braces. Rendering is one pass: a value that itself contains `{{x}}` is sent
as written, never expanded again.
"""

from __future__ import annotations

import re

NAME = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
PLACEHOLDER = re.compile(r"\{\{\s*(" + NAME + r")\s*\}\}")
ANY_BRACES = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
NAME_RE = re.compile(NAME + r"\Z")
ROLES = ("system", "developer", "user", "assistant")


class TemplateError(ValueError):
    """What is wrong with a template or its values, in words a user can act on."""


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name))


def _contents(messages) -> list[str]:
    if not isinstance(messages, list):
        raise TemplateError("The messages must be a list.")
    contents = []
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise TemplateError(f"Message {number} needs a role and a text content.")
        contents.append(message["content"])
    return contents


def check(messages) -> None:
    """Raise TemplateError for a malformed placeholder or role ("{{1x}}", "{{a b}}", "{{}}")."""
    for number, (message, content) in enumerate(zip(messages, _contents(messages)), 1):
        if message.get("role") not in ROLES:
            raise TemplateError(f"Message {number}: the role must be one of {', '.join(ROLES)}.")
        for match in ANY_BRACES.finditer(content):
            if not PLACEHOLDER.fullmatch(match.group(0)):
                raise TemplateError(
                    f"Message {number}: {match.group(0)!r} is not a valid variable; names start with a letter "
                    "or _ and hold only letters, digits and _ (up to 64)."
                )


def variables(messages) -> list[str]:
    """The variables used, in order of first appearance."""
    seen: dict[str, None] = {}
    for content in _contents(messages):
        for match in PLACEHOLDER.finditer(content):
            seen.setdefault(match.group(1), None)
    return list(seen)


def render(messages, values: dict) -> list[dict]:
    """The messages with every placeholder replaced by its value (as text).

    Every variable the messages use must have a value, and every value given must be used:
    either mistake is a TemplateError naming the variable, raised before anything is sent.
    """
    check(messages)
    if not isinstance(values, dict):
        raise TemplateError("The values must be a mapping of variable names to text.")
    used = variables(messages)
    missing = [name for name in used if name not in values]
    if missing:
        raise TemplateError(f"No value for {_names(missing)}.")
    unused = [name for name in values if name not in used]
    if unused:
        raise TemplateError(f"{_names(unused).capitalize()} {'is' if len(unused) == 1 else 'are'} not used by the prompt.")
    text = {name: _text(name, value) for name, value in values.items()}
    return [
        {**message, "content": PLACEHOLDER.sub(lambda m: text[m.group(1)], message["content"])}
        for message in messages
    ]


def _text(name: str, value) -> str:
    if value is None:
        raise TemplateError(f"No value for the variable {name!r}.")
    if isinstance(value, (dict, list)):
        raise TemplateError(f"The value of {name!r} must be text, not a {type(value).__name__}.")
    return value if isinstance(value, str) else str(value)


def _names(names: list[str]) -> str:
    quoted = ", ".join(repr(n) for n in names)
    return f"the variable {quoted}" if len(names) == 1 else f"the variables {quoted}"
