from django import template
from django.utils.safestring import mark_safe

from chat.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text) -> str:
    """Untrusted markdown -> sanitized HTML (markdown-it-py js-default, then nh3)."""
    return mark_safe(render_markdown(text or ""))  # noqa: S308 - sanitized by nh3 in render_markdown


@register.filter
def pretty_json_args(arguments: str) -> str:
    import json

    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return arguments or ""


@register.filter
def valid_json(arguments: str) -> bool:
    import json

    try:
        json.loads(arguments)
    except (TypeError, ValueError):
        return False
    return True


@register.filter
def highlight(code, language: str) -> str:
    """Our own code (View code, the inspector) highlighted by Pygments; escaped either way."""
    from chat.rendering import highlight_code

    return mark_safe(highlight_code(str(code or ""), language))  # noqa: S308 - Pygments escapes the text


@register.filter
def strip(text) -> str:
    """Text shown as is (white-space: pre-wrap) without the blank lines a model puts around it."""
    return (text or "").strip()
