"""`{% logprob_view message as lp %}`: a message's token views for templates/chat/_logprobs.html."""

from dataclasses import replace

from django import template
from django.utils.safestring import mark_safe

from chat.logprobs import TokenView, token_view

register = template.Library()


@register.simple_tag
def logprob_view(message) -> TokenView | None:
    """None for messages without token logprobs, except a streaming assistant message,
    which gets empty views for the live tokens to be appended to."""
    if getattr(message, "role", None) != "assistant":
        return None
    view = token_view(
        message.logprobs, reasoning=message.reasoning or "", content=message.text,
        live=message.status == "streaming",
    )
    if view is None:
        return None
    # chat.logprobs escapes every piece of model text it puts into this HTML.
    return replace(
        view,
        reasoning=replace(view.reasoning, html=mark_safe(view.reasoning.html)),
        content=replace(view.content, html=mark_safe(view.content.html)),
    )
