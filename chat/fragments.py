"""HTML fragments for the socket: htmx swaps each top-level element out of band, by id.

This module and the partials in templates/chat/conversation.html are the only places
that know DOM ids. All model text is escaped here or by template auto-escaping.
"""

from __future__ import annotations

import hashlib

from html import escape

from django.template.loader import render_to_string

PAGE = "chat/conversation.html"


def dom_id(message, part: str = "") -> str:
    return f"msg-{message.public_id}" + (f"-{part}" if part else "")


def _partial(name: str, **context) -> str:
    # A message that just finished has no tool results yet.
    return render_to_string(f"{PAGE}#{name}", {"answered_calls": (), **context})


def message(message, *, oob: str = "") -> str:
    return _partial("message", message=message, oob=oob)


def row(messages, *, oob: str = "") -> str:
    """One message, or the n choices of one completion side by side."""
    return _partial("message-row", row=messages, oob=oob)


def new_message(msg) -> str:
    """Append a message (the user's, or an assistant placeholder) to the list."""
    return f'<div id="messages" hx-swap-oob="beforeend">{row([msg])}</div>'


def opening(user_message, reply) -> str:
    """What a send shows at once: the user's message (unless re-running), the placeholder, streaming,
    and the title (a first message names the conversation)."""
    shown = new_message(user_message) if user_message is not None else ""
    return (shown + new_message(reply) + stream_status(streaming=True) + title(reply.conversation)
            + run_pending((), streaming=True))


def title(conversation) -> str:
    return f'<h1 id="conversation-title" hx-swap-oob="true">{escape(str(conversation))}</h1>'



def append_content(msg, text: str) -> str:
    return f'<div id="{dom_id(msg, "content")}" hx-swap-oob="beforeend">{escape(text)}</div>'


def append_reasoning(msg, text: str) -> str:
    return f'<div id="{dom_id(msg, "reasoning")}" hx-swap-oob="beforeend">{escape(text)}</div>'


def append_tokens(msg, views: dict[str, tuple[str, str]]) -> str:
    """Tokens for the live token views (chat/_logprobs.html), from chat.logprobs.LiveTokens (escaped):
    {"reasoning" | "content": (spans continuing the view's last line block, new line blocks)}."""
    parts = []
    for view, (carry, lines) in views.items():
        target = dom_id(msg, "lp-" + view)
        if carry:
            parts.append(f'<div hx-swap-oob="beforeend:#{target} > :last-child">{carry}</div>')
        if lines:
            parts.append(f'<div id="{target}" hx-swap-oob="beforeend">{lines}</div>')
    return "".join(parts)


def thinking(msg, reasoning: str, *, is_open: bool) -> str:
    """The whole Thinking block: shown open while reasoning streams, folded once the answer starts."""
    return _partial("thinking", message=msg, reasoning=reasoning, is_open=is_open, oob="outerHTML")


def tool_calls(msg, calls: list[dict]) -> str:
    return _partial("tool-calls", message=msg, calls=calls, oob="outerHTML")


def final(msg, completion, choices=()) -> str:
    """The finished message (markdown, thinking, tools, footer) and any other choices, replacing the
    placeholder's row, and the idle status."""
    for m in (msg, *choices):
        m.completion = completion
    # The thread now ends with this answer: nothing is left for Run.
    return row([msg, *choices], oob="outerHTML") + stream_status(streaming=False) + run_pending((), streaming=False)


def stream_status(*, streaming: bool) -> str:
    return _partial("stream-status", streaming=streaming, oob="true")


def run_pending(messages, *, streaming: bool) -> str:
    """The composer's Run button, shown when the shown branch ends with an unanswered user message."""
    return _partial("run-pending", thread=list(messages), streaming=streaming, oob="true")


def message_list(messages, *, streaming: bool, answered_calls=None) -> str:
    """The whole shown branch (Conversation.thread(annotate=True)): for a (re)connecting viewer
    whose page is not current, and for every viewer after a branching action."""
    from chat.models import message_rows

    if answered_calls is None:
        answered_calls = {m.tool_call_id for m in messages if m.role == "tool"}
    from chat.nextrequest import forcing_tool_choice

    conversation = messages[0].conversation if messages else None
    context = {"thread": messages, "rows": message_rows(messages), "oob": "true", "answered_calls": answered_calls,
               "conversation": conversation, "continue_forcing": forcing_tool_choice(conversation) if conversation else ""}
    return (render_to_string(f"{PAGE}#message-list", context) + stream_status(streaming=streaming)
            + run_pending(messages, streaming=streaming) + synced())


def synced() -> str:
    """Sent on connect whether or not the list was: the page is current from here on."""
    return '<span id="sync-state" hx-swap-oob="true" data-synced hidden></span>'


def list_version(messages) -> str:
    """What the shown list was rendered from. A page passes it when its socket connects, and the
    list is sent again only if it changed: a page load does not render every message twice."""
    state = "|".join(f"{m.public_id}:{m.updated_at.isoformat()}:{m.status}" for m in messages)
    return hashlib.sha256(state.encode()).hexdigest()[:20]


def frame_error(text: str) -> str:
    return f'<div id="frame-error" class="error" role="alert" hx-swap-oob="true">{escape(text)}</div>'


def clear_frame_error() -> str:
    return '<div id="frame-error" class="error" role="alert" hx-swap-oob="true"></div>'
