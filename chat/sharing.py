"""Sharing a conversation: visibility, rename, fork, export, delete.

Permissions are per operation: whoever may see a conversation may fork and export it; only its
owner may rename, share, unshare or delete it. Forms take names (team names, endpoint names) and
message UUIDs, and only ever look them up among what the user may use or see.
"""

from __future__ import annotations

import json
import logging
import re

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django import forms
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from chat.forms import EndpointChoiceField
from chat.models import Conversation, Endpoint, Message
from chat.upstream.families import FAMILIES
from chat.upstream.payload import PayloadError, build_payload

log = logging.getLogger(__name__)

# Fields a fork does not take from its source: identity, ownership, sharing, lineage, timestamps.
NOT_FORKED = {"id", "public_id", "owner", "team", "visibility", "forked_from", "endpoint", "created_at", "updated_at"}
# Message fields that stay behind: identity, the conversation, the source's completion rows.
NOT_COPIED = {"id", "public_id", "conversation", "completion", "parent", "created_at", "updated_at"}


class RenameForm(forms.Form):
    title = forms.CharField(max_length=200, required=False, label="Title")


class VisibilityForm(forms.Form):
    """Private, or shared with one of the owner's teams (by name; other teams are not offered nor accepted)."""

    share = forms.ChoiceField(label="Visibility")

    def __init__(self, *args, teams, **kwargs):
        super().__init__(*args, **kwargs)
        self.teams = {team.name: team for team in teams}
        self.fields["share"].choices = [("", "Private")] + [(name, f"Shared with {name}") for name in self.teams]
        self.fields["share"].required = False

    @classmethod
    def initial_for(cls, conversation: Conversation) -> dict:
        shared = conversation.visibility == Conversation.Visibility.TEAM and conversation.team
        return {"share": conversation.team.name if shared else ""}

    def save(self, conversation: Conversation) -> Conversation:
        team = self.teams.get(self.cleaned_data["share"])
        conversation.team = team
        conversation.visibility = Conversation.Visibility.TEAM if team else Conversation.Visibility.PRIVATE
        conversation.save(update_fields=["team", "visibility", "updated_at"])
        return conversation


class ForkForm(forms.Form):
    """Fork onto an endpoint the user may use, up to one of the shown messages (blank: all of them)."""

    endpoint = EndpointChoiceField(Endpoint.objects.none(), to_field_name="name", empty_label=None)
    upto = forms.ChoiceField(required=False, label="Keep messages up to")

    def __init__(self, *args, user, messages: list[Message], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = Endpoint.objects.usable_by(user)
        self.messages = {str(m.public_id): m for m in messages}
        self.fields["upto"].choices = [("", "the end (all messages)")] + [
            (key, f"#{m.position + 1} {m.get_role_display()}: {m.text[:60] or '…'}") for key, m in self.messages.items()
        ]

    def upto_message(self) -> Message | None:
        return self.messages.get(self.cleaned_data.get("upto") or "")


def forkable_messages(conversation: Conversation) -> list[Message]:
    """The shown branch, without an answer still streaming."""
    return [m for m in conversation.thread() if m.status != Message.Status.STREAMING]


@transaction.atomic
def fork(source: Conversation, *, user, endpoint: Endpoint, messages: list[Message], upto: Message | None) -> Conversation:
    """A private copy for `user`: settings, tools, schema, and the messages up to `upto` (not completions)."""
    fields = {
        f.attname: getattr(source, f.attname)
        for f in Conversation._meta.concrete_fields
        if f.name not in NOT_FORKED
    }
    copy = Conversation.objects.create(**fields, owner=user, endpoint=endpoint, forked_from=source)
    if upto is not None:
        messages = [m for m in messages if m.position <= upto.position]
    # The shown branch only, each copy following the copy of its parent (n choices share one).
    copies: dict[int, Message] = {}
    rows: set[tuple] = set()
    for message in messages:
        if message.completion_id is not None:  # of n choices shown side by side, the continued one
            if (message.parent_id, message.completion_id) in rows:
                continue
            rows.add((message.parent_id, message.completion_id))
        values = {f.attname: getattr(message, f.attname) for f in Message._meta.concrete_fields if f.name not in NOT_COPIED}
        values["parent_id"] = copies[message.parent_id].pk if message.parent_id in copies else None
        copies[message.pk] = Message.objects.create(**values, conversation=copy)
    return copy


# --- export ------------------------------------------------------------------------------


def request_body(conversation: Conversation) -> dict:
    """The request a completion of this conversation would send now (the key is a header: never here)."""
    model = conversation.endpoint.model_id if conversation.endpoint else ""
    messages, values = conversation.api_messages(), conversation.option_values()
    try:
        return build_payload(model, messages, values)
    except PayloadError:  # exported as it stands, even if it would not be sent as is
        return {"model": model, "messages": messages, **{k: v for k, v in values.items() if v is not None}}


def filename(conversation: Conversation, extension: str) -> str:
    return f"{slugify(conversation.title)[:60] or 'conversation'}-{str(conversation.public_id)[:8]}.{extension}"


def export_json(conversation: Conversation) -> str:
    return json.dumps(request_body(conversation), indent=2, ensure_ascii=False) + "\n"


def fence(text: str, language: str = "") -> str:
    """A code fence longer than any run of backticks inside the text."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{language}\n{text}\n{ticks}"


def escape_html(text: str) -> str:
    """Markdown viewers render raw HTML: message text (model output, pasted text) must not bring
    its own tags. Escaped as entities, it reads the same once rendered."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _content_markdown(message: Message) -> str:
    if isinstance(message.content, str):
        return escape_html(message.content)
    parts = []
    for part in message.content or []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            parts.append(escape_html(part.get("text", "")))
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            parts.append("*(an inline image)*" if url.startswith("data:") else f"![image]({url})")
    return "\n\n".join(parts)


def export_markdown(conversation: Conversation) -> str:
    endpoint = conversation.endpoint
    lines = [f"# {escape_html(str(conversation))}", ""]
    if endpoint:
        family = FAMILIES.get(endpoint.family)
        lines.append(f"- Model: `{endpoint.model_id}` ({endpoint.name}{', ' + family.label if family else ''})")
    lines += [f"- Exported: {timezone.now():%Y-%m-%d %H:%M} UTC", "", "## Settings", "", fence(json.dumps(conversation.options, indent=2, ensure_ascii=False), "json"), ""]
    if conversation.tools:
        lines += ["## Tools", "", fence(json.dumps(conversation.tools, indent=2, ensure_ascii=False), "json"), ""]
    if conversation.response_format:
        lines += ["## Response format", "", fence(json.dumps(conversation.response_format, indent=2, ensure_ascii=False), "json"), ""]
    if conversation.system_prompt:
        lines += ["## System", "", escape_html(conversation.system_prompt), ""]
    for message in conversation.thread():
        heading = message.get_role_display()
        if message.choice_index:
            heading += f" (choice {message.choice_index + 1})"
        if message.tool_call_id:
            heading += f" (`{message.tool_call_id}`)"
        lines += [f"## {heading}", ""]
        if message.reasoning:
            lines += ["<details><summary>Thinking</summary>", "", escape_html(message.reasoning), "", "</details>", ""]
        for call in message.tool_calls or []:
            function = call.get("function") or {}
            lines += [f"**Tool call** `{function.get('name', '')}` (`{call.get('id', '')}`):", "", fence(function.get("arguments") or "", "json"), ""]
        text = _content_markdown(message)
        if text:
            lines += [text, ""]
        if message.error:
            lines += [f"> Error: {escape_html(message.error)}", ""]
    return "\n".join(lines)


# --- live viewers ----------------------------------------------------------------------------

GONE = '<div id="messages" hx-swap-oob="true"><p class="muted">This conversation is no longer available to you.</p></div>'


def recheck_viewers(conversation: Conversation) -> None:
    """Sockets open on the conversation check access again; those who lost it are emptied and closed."""
    from chat.consumers import group_name

    _recheck(group_name(conversation.public_id))


def recheck_user(user_pk: int) -> None:
    """Every socket the user has open checks access again, once the change is committed (a user
    removed from a team, or deactivated, stops seeing the team's conversations live)."""
    from chat.consumers import user_group_name

    transaction.on_commit(lambda: _recheck(user_group_name(user_pk)))


def _recheck(group: str) -> None:
    # A channel layer that is down must not fail the change itself: every frame is re-authorized anyway.
    try:
        async_to_sync(get_channel_layer().group_send)(group, {"type": "conversation.recheck", "html": GONE})
    except Exception:
        log.warning("could not tell the open sockets of %s to re-check access", group, exc_info=True)
