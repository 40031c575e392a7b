"""The prompt library's rules: settings snapshots (presets, prompt versions), versions and their diff,
lookups under the conversations' access rules, and what the history search finds in the library.

A settings snapshot is the part of a conversation the settings panel stores, without the endpoint:
{"system_prompt", "options", "tools", "response_format", "canned_results"}. It is taken from a
validated PanelForm and applied back through one, so a preset can never put into a conversation
what the panel would refuse, and the panel shows exactly what the next request carries.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max, Q, Value
from django.http import Http404
from django.urls import reverse

from chat.models import Conversation
from chat.models_library import Preset, Prompt, PromptVersion, TestCase, TestSet
from chat.panel import PanelForm
from chat.templating import TemplateError, check, render
from chat.textdiff import Segment, word_diff

SNAPSHOT_KEYS = ("system_prompt", "options", "tools", "response_format", "canned_results")
MAX_MESSAGES = 50
MAX_TEMPLATE_CHARS = 100_000


# --- settings snapshots --------------------------------------------------------------------------


def snapshot(stored: dict) -> dict:
    """A snapshot from PanelForm.stored() (or a conversation's fields)."""
    return {
        "system_prompt": stored.get("system_prompt") or "",
        "options": dict(stored.get("options") or {}),
        "tools": list(stored.get("tools") or []),
        "response_format": stored.get("response_format") or None,
        "canned_results": dict(stored.get("canned_results") or {}),
    }


def snapshot_of(conversation: Conversation) -> dict:
    return snapshot({key: getattr(conversation, key) for key in SNAPSHOT_KEYS})


def option_values(values: dict) -> dict:
    """What build_payload takes from a snapshot (as Conversation.option_values)."""
    options = dict(values.get("options") or {})
    if values.get("tools"):
        options["tools"] = values["tools"]
    if values.get("response_format"):
        options["response_format"] = values["response_format"]
    return options


def api_messages(rendered: list[dict], values: dict) -> list[dict]:
    """The messages to send for rendered prompt messages under a snapshot: its system prompt first."""
    system = (values or {}).get("system_prompt") or ""
    return ([{"role": "system", "content": system}] if system else []) + list(rendered)


def panel_data(conversation: Conversation, values: dict, *, user) -> dict:
    """The settings panel's POST data that would store `values` on `conversation` (its endpoint kept)."""
    target = Conversation(endpoint=conversation.endpoint, **snapshot(values))
    initial = PanelForm.initial_for(target)
    initial["endpoint"] = conversation.endpoint_id
    unbound = PanelForm(initial=initial, user=user, conversation=target)
    data = {}
    for bound in unbound:
        value = bound.value()
        data[bound.name] = "" if value is None else str(value)
    return data


def apply(conversation: Conversation, values: dict, *, user) -> PanelForm:
    """Store a snapshot on a conversation through the settings panel's own form (validated as a
    panel save is). The form comes back: unsaved, with its errors, when something was refused."""
    form = PanelForm(panel_data(conversation, values, user=user), user=user, conversation=conversation)
    if form.is_valid():
        form.save()
    return form


def pane_overrides(values: dict) -> tuple[dict, list[str]]:
    """A snapshot as a comparison pane's overrides (chat.compare), each checked as a pane checks it
    (CompareError names a value it refuses), and what a pane cannot take (the system prompt is the
    comparison's, shared by every pane)."""
    from chat import compare

    overrides: dict = {}
    options = option_values(values)
    kwargs = options.pop("chat_template_kwargs", None)
    if isinstance(kwargs, dict):  # before enable_thinking: merge() applies overrides in order
        rest = {k: v for k, v in kwargs.items() if k != compare.THINKING}
        if rest:
            overrides["chat_template_kwargs"] = compare.check_override("chat_template_kwargs", rest)
        if compare.THINKING in kwargs:
            overrides[compare.THINKING] = compare.check_override(compare.THINKING, kwargs[compare.THINKING])
    for name, value in options.items():
        overrides[name] = compare.check_override(name, value)
    skipped = []
    if values.get("system_prompt"):
        skipped.append("the system prompt (the comparison's shared settings have it)")
    if values.get("canned_results"):
        skipped.append("the canned tool results")
    return overrides, skipped


def describe(values: dict) -> list[str]:
    """A snapshot in a few words, for lists: which settings it holds."""
    parts = []
    if values.get("system_prompt"):
        parts.append("system prompt")
    options = values.get("options") or {}
    for name in ("temperature", "top_p", "max_tokens"):
        if name in options:
            parts.append(f"{name} {options[name]}")
    others = len([k for k in options if k not in ("temperature", "top_p", "max_tokens")])
    if others:
        parts.append(f"{others} more option{'s' if others != 1 else ''}")
    if values.get("tools"):
        parts.append(f"{len(values['tools'])} tool{'s' if len(values['tools']) != 1 else ''}")
    if values.get("response_format"):
        parts.append(f"response format {values['response_format'].get('type', '')}".strip())
    return parts or ["no settings"]


# --- access --------------------------------------------------------------------------------------


def visible(model, user, public_id, *, edit: bool = False):
    """One preset, prompt or test set the user may see (with `edit`: owns); anyone else gets 404."""
    rows = model.objects.filter(owner=user) if edit else model.objects.visible_to(user)
    row = rows.select_related("owner", "team").filter(public_id=public_id).first()
    if row is None:
        raise Http404(f"No such {model._meta.verbose_name}")
    return row


def share(row, team) -> None:
    """Private (team None) or shared with one of the owner's teams (the form offers only those)."""
    row.team = team
    row.visibility = "team" if team else "private"
    row.save(update_fields=["team", "visibility", "updated_at"])


@transaction.atomic
def duplicate(row, user):
    """A private copy of a prompt (its latest version as v1), test set (every row) or preset that
    `user` may see, as with a conversation's fork: the copy is theirs to change."""
    name = f"{row.name} (copy)"[:200]
    if isinstance(row, Preset):
        return Preset.objects.create(owner=user, name=name, values=row.values)
    if isinstance(row, TestSet):
        copy = TestSet.objects.create(owner=user, name=name, variables=row.variables, checks=row.checks)
        TestCase.objects.bulk_create(
            TestCase(test_set=copy, position=case.position, values=case.values, expected=case.expected)
            for case in row.cases.order_by("position")
        )
        return copy
    preset = row.preset if row.preset and Preset.objects.visible_to(user).filter(pk=row.preset_id).exists() else None
    copy = Prompt.objects.create(owner=user, name=name, description=row.description, preset=preset)
    latest = row.latest()
    if latest is not None:
        PromptVersion.objects.create(
            prompt=copy, number=1, messages=latest.messages, values=latest.values, created_by=user,
            note=f"copied from {row.name} v{latest.number} by {row.owner.get_username()}"[:500],
        )
    return copy


# --- prompt versions ------------------------------------------------------------------------------


def clean_messages(roles: list[str], contents: list[str]) -> list[dict]:
    """Editor rows as template messages; a TemplateError says what is wrong, row by row."""
    messages = [{"role": role, "content": content} for role, content in zip(roles, contents)]
    if not messages:
        raise TemplateError("A prompt needs at least one message.")
    if len(messages) > MAX_MESSAGES:
        raise TemplateError(f"A prompt has at most {MAX_MESSAGES} messages.")
    for number, message in enumerate(messages, 1):
        if not message["content"].strip():
            raise TemplateError(f"Message {number} is empty.")
        if len(message["content"]) > MAX_TEMPLATE_CHARS:
            raise TemplateError(f"Message {number} is too long ({len(message['content'])} characters).")
    check(messages)
    return messages


@transaction.atomic
def save_version(prompt: Prompt, *, messages: list[dict], note: str, user) -> PromptVersion:
    """A new version, numbered after the last (the prompt row is locked so two saves never share a number).
    Its settings are the prompt's preset's, copied: a version never changes afterwards."""
    Prompt.objects.select_for_update().filter(pk=prompt.pk).first()
    last = prompt.versions.aggregate(n=Max("number"))["n"] or 0
    values = snapshot(prompt.preset.values) if prompt.preset else {}
    version = PromptVersion.objects.create(
        prompt=prompt, number=last + 1, messages=messages, values=values, note=note.strip()[:500], created_by=user
    )
    prompt.save(update_fields=["updated_at"])
    return version


def render_version(version: PromptVersion, values: dict) -> list[dict]:
    """The version's messages with the variables filled in (TemplateError names a missing or unused one)."""
    return render(version.messages, values)


# --- diff ------------------------------------------------------------------------------------------

@dataclass
class MessageDiff:
    old_role: str
    new_role: str
    old: list[Segment]
    new: list[Segment]
    changed: bool


def diff_versions(old: PromptVersion, new: PromptVersion) -> dict:
    """Side by side: each message pair word by word, then the settings line by line."""
    messages = []
    for number in range(max(len(old.messages), len(new.messages))):
        a = old.messages[number] if number < len(old.messages) else {"role": "", "content": ""}
        b = new.messages[number] if number < len(new.messages) else {"role": "", "content": ""}
        left, right = word_diff(a["content"], b["content"])
        messages.append(MessageDiff(a["role"], b["role"], left, right, changed=a != b))
    old_lines = json.dumps(old.values, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    new_lines = json.dumps(new.values, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    # The changed lines with three of context; the file and hunk headers say nothing here.
    settings = [line for line in difflib.unified_diff(old_lines, new_lines, lineterm="", n=3)
                if not line.startswith(("---", "+++", "@@"))]
    return {"old": old, "new": new, "messages": messages, "settings": settings,
            "changed": any(m.changed for m in messages) or bool(settings)}


# --- the history search ----------------------------------------------------------------------------

LIBRARY_MATCHES = 20


@dataclass
class LibraryItem:
    kind: str  # "Prompt", "Preset", "Test set"
    name: str
    url: str
    owner: str
    team: str | None  # the team it is shared with (None: private)
    updated_at: object


# History filters that only conversations have: with one of them set, the library is not listed.
CONVERSATION_ONLY = ("endpoint", "model", "family", "kind")


def library_matches(user, scope, teams, data: dict) -> list[LibraryItem]:
    """Prompts, presets and test sets in a history scope ("mine", "all", a team) whose name matches
    the search (for prompts: also any version's messages), by the author and dates filtered on,
    the newest first: one query whatever their number."""
    if any(data.get(name) for name in CONVERSATION_ONLY):
        return []
    shared = Q(visibility="team")
    if scope.key == "mine":
        where = Q(owner=user)
    elif scope.team is not None:
        where = shared & Q(team=scope.team)
    else:
        where = Q(owner=user) | (shared & Q(team__in=[t.pk for t in teams]))
    if data.get("author"):
        where &= Q(owner__username=data["author"])
    if data.get("since"):
        where &= Q(updated_at__date__gte=data["since"])
    if data.get("until"):
        where &= Q(updated_at__date__lte=data["until"])
    text = (data.get("q") or "").strip()
    parts = []
    for model, kind in ((Prompt, "prompt"), (Preset, "preset"), (TestSet, "testset")):
        rows = model.objects.filter(where)
        if text:
            match = Q(name__icontains=text)
            if model is Prompt:
                match |= Q(versions__messages__icontains=text)  # a text match on the stored JSON
            rows = rows.filter(match)
        parts.append(rows.annotate(kind=Value(kind)).values(
            "kind", "public_id", "name", "updated_at", "visibility", "owner__username", "team__name"
        ).order_by())
    rows = parts[0].union(*parts[1:]).order_by("-updated_at")[:LIBRARY_MATCHES]  # UNION: a prompt found twice is one row
    items = []
    for row in rows:
        kind = row["kind"]
        if kind == "preset":
            url = reverse("chat:library") + f"#preset-{row['public_id']}"
        else:
            url = reverse("chat:prompt" if kind == "prompt" else "chat:testset", args=[row["public_id"]])
        items.append(LibraryItem(
            kind={"prompt": "Prompt", "preset": "Preset", "testset": "Test set"}[kind], name=row["name"], url=url,
            owner=row["owner__username"], team=row["team__name"] if row["visibility"] == "team" else None,
            updated_at=row["updated_at"],
        ))
    return items
