"""HTML for a comparison: the board (pane heads, then each turn's shared messages above one cell
per pane), and the socket's fragments. Answers render with the conversation's own message-row
partial, so a pane's run targets the same DOM ids as a conversation's (chat.fragments)."""

from __future__ import annotations

import hashlib
from functools import cached_property

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from chat import compare, fragments
from chat.models import Message

PAGE = "chat/compare.html"


class Board:
    """What a comparison shows: its panes (with their chips) and its turns."""

    def __init__(self, conversation, user, messages=None) -> None:
        self.conversation = compare.mark_source(conversation)
        self.user = user
        self.can_edit = conversation.can_edit(user)
        self.panes = list(conversation.panes.select_related("endpoint"))
        for i, pane in enumerate(self.panes):
            pane.number = i + 1
            pane.chips = compare.chips(pane.overrides)
        self.messages = compare.messages_of(conversation) if messages is None else messages
        self.streaming_panes = {m.pane_id for m in self.messages if m.status == Message.Status.STREAMING}
        latest = {m.pane_id: m.completion for m in self.messages if m.pane_id and m.completion_id}  # (in order: the last wins)
        for pane in self.panes:
            pane.streaming = pane.pk in self.streaming_panes
            pane.last = latest.get(pane.pk)

    @cached_property
    def turns(self) -> list[compare.Turn]:
        turns = compare.turns(self.messages)
        for turn in turns:
            turn.cells = [(pane, turn.answers.get(pane.pk, []), None) for pane in self.panes]
        return turns

    @property
    def streaming(self) -> bool:
        return bool(self.streaming_panes)

    @property
    def version(self) -> str:
        """The messages, and the panes and shared settings: a page that missed a pane change while
        its socket was down is sent the board again when it reconnects."""
        c = self.conversation
        setup = "|".join([fragments.list_version(self.messages), repr(c.options), c.system_prompt,
                          *(f"{p.public_id}:{p.endpoint_id}:{p.overrides!r}" for p in self.panes)])
        return hashlib.sha256(setup.encode()).hexdigest()[:20]

    def context(self) -> dict:
        # The viewer (also for the socket's renders, which have no request): answers' owner-only actions.
        return {"board": self, "conversation": self.conversation, "can_edit": self.can_edit, "panes": self.panes,
                "answered_calls": (), "user": self.user, "max_panes": compare.MAX_PANES,
                "shared_chips": compare.shared_chips(self.conversation)}


def board(board: Board) -> str:
    """The whole board, out of band, for a page whose copy is not current."""
    html = render_to_string(f"{PAGE}#board", {**board.context(), "oob": "true"})
    return html + fragments.stream_status(streaming=board.streaming) + fragments.synced()


def setup(board: Board) -> str:
    """What shows the panes and shared settings outside the board, for one viewer, out of band: the
    diff's pane pickers and the shared settings (the owner's form fields, or a teammate's chips), the
    owner's pane count and whether another pane fits. Fields only, not forms: forms rendered here would
    have no CSRF token."""
    context = {**board.context(), "oob": "true"}
    parts = ["diff-panes"] + (["pane-count", "shared-fields", "add-pane-body"] if board.can_edit else ["shared-chips"])
    if board.can_edit:
        from chat.views_compare import PaneForm, shared_form

        last = board.panes[-1].endpoint if board.panes and board.panes[-1].endpoint else None
        context["pane_form"] = PaneForm(initial={"endpoint": last.pk} if last else {}, user=board.user, prefix="pane")
        context["shared_form"] = shared_form(board.conversation)
    return "".join(render_to_string(f"{PAGE}#{part}", context) for part in parts)


def changed(conversation, user) -> str:
    """A viewer's page after a pane change (chat.views_compare.announce): the board and the setup."""
    b = Board(conversation, user)
    return board(b) + setup(b)


def redraw(public_id, user) -> str:
    from chat.models import Conversation

    conversation = Conversation.objects.get(public_id=public_id)
    return board(Board(conversation, user)).replace(fragments.synced(), "")


def pane_state(pane, *, streaming: bool) -> str:
    return render_to_string(f"{PAGE}#pane-state", {"pane": pane, "streaming": streaming, "oob": "true"})


def opening(started: compare.Started) -> str:
    """A send: the new turn (the shared message, a placeholder or an error per pane), every running
    pane streaming, and the title."""
    user_message = started.user_message
    conversation = user_message.conversation
    replies = {pane.pk: reply for pane, _, reply in started.runs} | {pane.pk: reply for pane, reply in started.failed}
    panes = [pane for pane, *_ in started.runs] + [pane for pane, _ in started.failed]
    panes.sort(key=lambda p: (p.position, p.pk))
    for pane in panes:
        pane.chips, pane.last = compare.chips(pane.overrides), None
    turn = compare.Turn([user_message], {pk: [reply] for pk, reply in replies.items()})
    # The placeholders differ only in their ids: one is rendered, the others are copies of it
    # (this render is on the way to each pane's first token).
    placeholder, first = None, None
    rows = {}
    for pane, _, reply in started.runs:
        if placeholder is None:
            placeholder, first = fragments.row([reply]), str(reply.public_id)
        rows[pane.pk] = mark_safe(placeholder.replace(first, str(reply.public_id)))
    turn.cells = [(pane, turn.answers.get(pane.pk, []), rows.get(pane.pk)) for pane in panes]
    html = render_to_string(f"{PAGE}#turn", {"turn": turn, "conversation": conversation, "answered_calls": (), "oob": ""})
    parts = [f'<div id="messages" hx-swap-oob="beforeend">{html}</div>']
    parts += [pane_state(pane, streaming=True) for pane, *_ in started.runs]
    parts += [pane_state(pane, streaming=False) for pane, _ in started.failed]
    parts.append(fragments.stream_status(streaming=bool(started.runs)))
    parts.append(fragments.title(conversation))
    return "".join(parts)


def live_metrics(run, now: float) -> str:
    """A streaming pane's numbers so far: time to first token, chunks of text received, their rate."""
    ttft = (run.first_token_at - run.started) * 1000
    chunks = len(run.content) + len(run.reasoning)
    span = now - run.first_token_at
    rate = f" · {chunks / span:.1f}/s" if span > 0.2 else ""
    return (f'<span id="pane-live-{run.pane.public_id}" class="pane-live" hx-swap-oob="true">'
            f"TTFT {ttft:.0f} ms · {chunks} chunks{rate}</span>")


def pane_final(message, completion, choices=()) -> str:
    """A pane's finished answer (its metrics in its footer) and the pane idle; the page's status
    turns idle once no pane streams (compare.js)."""
    for m in (message, *choices):
        m.completion = completion
    message.pane.last = completion  # the head shows the pane's latest numbers
    return fragments.row([message, *choices], oob="outerHTML") + pane_state(message.pane, streaming=False)
