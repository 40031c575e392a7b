"""Branches: a conversation's messages form a tree; the thread shown is one walk through it.

Each message follows its `parent` (None for a first message). An edited user message or a
regenerated answer is a new child of the same parent: a sibling. Among siblings, `is_active`
marks the selected branch, and every parent remembers its own selection, so switching back to
an earlier branch shows that branch's whole continuation as it was left.

An *alternative* is one sibling, or the n choices of one completion (selected together and
shown side by side). The shown branch is what the next request sends: `Conversation.thread()`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db import transaction


def alternative_key(message) -> tuple:
    """The n choices of one completion are one alternative; every other message is its own."""
    if message.role == "assistant" and message.completion_id is not None:
        return ("completion", message.completion_id)
    return ("message", message.pk)


@dataclass(frozen=True)
class Branch:
    """Where a shown message sits among its alternatives: `index` of `count` (1-based)."""

    index: int
    count: int
    previous: object | None  # a message of the alternative before, to switch to
    next: object | None


class Tree:
    """All (not removed) messages of one conversation, indexed by parent."""

    def __init__(self, messages) -> None:
        self.messages = sorted(messages, key=lambda m: (m.created_at, m.choice_index, m.pk))
        self.children: dict[int | None, list] = defaultdict(list)
        for message in self.messages:
            self.children[message.parent_id].append(message)

    def has_selected_child(self, parent) -> bool:
        return any(child.is_active for child in self.children.get(parent.pk if parent else None, ()))

    def alternatives(self, parent_id) -> list[list]:
        """The alternatives under one parent, oldest first; each a list ordered by choice index."""
        groups: dict[tuple, list] = {}
        for child in self.children.get(parent_id, ()):
            groups.setdefault(alternative_key(child), []).append(child)
        return [sorted(group, key=lambda m: m.choice_index) for group in groups.values()]

    def selected(self, parent_id) -> list:
        """The selected alternative under a parent; the newest if (inconsistent) several are active."""
        active = [child for child in self.children.get(parent_id, ()) if child.is_active]
        if not active:
            return []
        key = alternative_key(active[-1])
        return sorted((m for m in active if alternative_key(m) == key), key=lambda m: m.choice_index)

    def path(self) -> list:
        """The shown branch, root first. Of n choices shown side by side, the first is continued."""
        shown, parent_id = [], None
        while group := self.selected(parent_id):
            shown.extend(group)
            parent_id = group[0].pk
        return shown

    def annotate(self, shown: list) -> list:
        """Give every shown message its `branch` (index/count and its neighbours) for ◀ i/N ▶."""
        for message in shown:
            groups = self.alternatives(message.parent_id)
            key = alternative_key(message)
            index = next((i for i, g in enumerate(groups) if alternative_key(g[0]) == key), 0)
            message.branch = Branch(
                index=index + 1, count=len(groups),
                previous=groups[index - 1][0] if index > 0 else None,
                next=groups[index + 1][0] if index + 1 < len(groups) else None,
            )
        return shown


def load(conversation, *, related=("completion",)) -> Tree:
    """`related`: the foreign keys to read with the messages; none when empty (a bare
    select_related() would follow every non-null one; `message.conversation` is the given one anyway).
    Unordered: the Tree sorts them itself (the model's ordering cost a third of the query)."""
    messages = conversation.messages.filter(removed=False).order_by()
    return Tree(messages.select_related(*related) if related else messages)


def tail(shown: list):
    """The message the next one follows: the last shown, or the first of n choices shown last."""
    if not shown:
        return None
    last = shown[-1]
    row = [m for m in shown if m.parent_id == last.parent_id and alternative_key(m) == alternative_key(last)]
    return min(row, key=lambda m: m.choice_index)


def context(shown: list, parent) -> list:
    """The shown messages a new child of `parent` answers: everything up to `parent`, inclusive."""
    if parent is None:
        return []
    return [m for m in shown if m.position < parent.position] + [parent]


@transaction.atomic
def select(conversation, message) -> None:
    """Show the alternative `message` belongs to (and, below it, each level's remembered choice)."""
    siblings = list(conversation.messages.filter(parent_id=message.parent_id, removed=False).select_for_update())
    key = alternative_key(message)
    group = [m for m in siblings if alternative_key(m) == key]
    # Of n choices, the one that was continued (it has children) stays the pick; else all are shown.
    continued = {
        pk for pk in conversation.messages.filter(parent__in=group, removed=False).values_list("parent_id", flat=True)
    }
    chosen = {m.pk for m in group if m.pk in continued} or {m.pk for m in group}
    for sibling in siblings:
        active = sibling.pk in chosen
        if sibling.is_active != active:
            sibling.is_active = active
            sibling.save(update_fields=["is_active", "updated_at"])


def add_child(conversation, parent, *, siblings_selected: bool = True, **fields):
    """A new message after `parent`, selected at its level (its siblings step aside; pass
    `siblings_selected=False` when none is selected, e.g. after the last shown message)."""
    from chat.models import Message

    if siblings_selected:
        conversation.messages.filter(parent_id=parent.pk if parent else None, is_active=True).update(is_active=False)
    position = parent.position + 1 if parent is not None else 0
    return Message.objects.create(conversation=conversation, parent=parent, position=position, **fields)


@transaction.atomic
def remove(conversation, message) -> None:
    """Take a message out of the thread: its continuation now follows the message before it.

    The message is kept (removed) for the record; completions keep the exact requests sent."""
    message.removed = True
    message.is_active = False
    message.save(update_fields=["removed", "is_active", "updated_at"])
    # Its children (with their own selection) move up a level: the selected one takes its place.
    children = list(conversation.messages.filter(parent=message).values_list("pk", flat=True))
    conversation.messages.filter(pk__in=children).update(parent_id=message.parent_id)
    _shift(conversation, children, -1)


def _shift(conversation, roots: list[int], delta: int) -> None:
    """Move whole subtrees up or down by `delta` positions (positions are depths)."""
    from django.db.models import F

    level = roots
    while level:
        conversation.messages.filter(pk__in=level).update(position=F("position") + delta)
        level = list(conversation.messages.filter(parent_id__in=level).values_list("pk", flat=True))
