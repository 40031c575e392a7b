"""The next request: what a Send, Run, Regenerate or Edit would send now.

The socket's frames and the composer's preview both build through here, from the settings the
panel shows at that moment (its form data travels with every frame), so the preview is exactly
the body that a click then sends, and a value the panel shows is never replaced by a stale one.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import QueryDict

from chat import branches
from chat.upstream.payload import PayloadError, build_payload

FORCING = ("required",)  # tool_choice values that make the model call a tool (a named one too)


class NotSendable(ValueError):
    """The request cannot be made as asked; the message says why, for the user."""


class SettingsInvalid(NotSendable):
    """The panel holds an invalid value: nothing is sent, and the message names the field."""

    def __init__(self, form) -> None:
        self.form = form
        names = []
        for name, errors in form.errors.items():
            label = "Settings" if name == "__all__" else str(form.fields[name].label or name)
            names.append((label, errors[0]))
        label, first = names[0]
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        super().__init__(f"Not sent: {label} is invalid{more} — {first}")
        self.fields = [name for name in form.errors if name != "__all__"]


def panel_form(conversation, user, settings: str | QueryDict | None):
    """The panel's form bound to the values shown in the browser (URL-encoded), validated;
    None when the frame carried no settings (the stored ones apply)."""
    from chat.panel import PanelForm

    if settings is None:
        return None
    data = settings if isinstance(settings, QueryDict) else QueryDict(settings)
    form = PanelForm(data, user=user, conversation=conversation)
    if not form.is_valid():
        raise SettingsInvalid(form)
    return form


@dataclass
class Plan:
    """Where the new messages go: after `parent`, answering `context` (+ a new user message)."""

    action: str
    parent: object | None  # the message the new one follows (None: a first message)
    context: list  # the shown messages the request answers, `parent` last
    content: str | None = None  # a new user message's text (send, edit)
    tool_choice_note: str = ""  # said to the user when a continuation does not force a tool


def plan(shown: list, action: str, *, content: str = "", message=None) -> Plan:
    """What `action` does to the shown branch. `message` is the public id an edit or a
    regenerate targets (a regenerate without one answers again the last answer)."""
    if action in ("send", "run"):
        parent = branches.tail(shown)
        if action == "run" and parent is None:
            raise NotSendable("Add a message first.")
        return Plan(action, parent, branches.context(shown, parent), content if action == "send" else None)
    if action == "edit":
        target = next((m for m in shown if m.public_id == message and m.role == "user"), None)
        if target is None:
            raise NotSendable("That message cannot be edited (it is not one of the shown user messages).")
        parent = _parent_in(shown, target)
        return Plan(action, parent, branches.context(shown, parent), content)
    if action == "regenerate":
        answers = [m for m in shown if m.role == "assistant"]
        target = next((m for m in answers if m.public_id == message), None) if message else (answers[-1] if answers else None)
        if target is None:
            raise NotSendable("That answer cannot be regenerated (it is not one of the shown answers).")
        parent = _parent_in(shown, target)
        if parent is None:
            raise NotSendable("There is no message to answer before this one.")
        return Plan(action, parent, branches.context(shown, parent))
    raise NotSendable(f"Unknown action {action!r}.")


def _parent_in(shown: list, message):
    return next((m for m in shown if m.pk == message.parent_id), None)


def option_values(conversation, form=None, *, plan: Plan | None = None, tool_choice: str = "") -> dict:
    """The option values to send: the panel's (as shown, or as stored), with a continuation's
    tool_choice. After tool results, a `required` or named tool_choice would make the model call
    the tool again and never answer: unless the user keeps it, the continuation uses `auto`."""
    values = dict(form.values) if form is not None else conversation.option_values()
    if plan is not None and plan.context and plan.context[-1].role == "tool" and plan.content is None:
        configured = values.get("tool_choice")
        forcing = configured in FORCING or isinstance(configured, dict)
        if tool_choice in ("auto", "none"):
            values["tool_choice"] = tool_choice
        elif tool_choice != "settings" and forcing:
            values["tool_choice"] = "auto"
        if values.get("tool_choice") != configured:
            plan.tool_choice_note = f"This continuation sent tool_choice {values['tool_choice']!r} (the settings say {_describe(configured)})."
    return values


def _describe(choice) -> str:
    if isinstance(choice, dict):
        return f"the function {_function_name(choice)!r}"
    return repr(choice) if choice is not None else "unset"


def build(conversation, plan: Plan, values: dict, *, model: str, system_prompt: str | None = None) -> dict:
    """The request body for `plan`, exactly as it goes out (the new user message not yet saved)."""
    from chat.models import Message

    messages = list(plan.context)
    if plan.content is not None:
        messages.append(Message(conversation=conversation, role="user", content=plan.content, position=0))
    api = conversation.api_messages(messages, system_prompt=system_prompt)
    try:
        return build_payload(model, api, values)
    except PayloadError as e:
        raise NotSendable(f"The request is not valid: {e}") from None


def preview(conversation, user, *, settings=None, content: str = "") -> dict:
    """The body the composer would send now: a Send of `content`, or a Run when it is empty."""
    form = panel_form(conversation, user, settings)
    shown = conversation.thread()
    the_plan = plan(shown, "send" if content.strip() else "run", content=content)
    values = option_values(conversation, form, plan=the_plan)
    endpoint = form.cleaned_data["endpoint"] if form is not None else conversation.endpoint
    if endpoint is None:
        raise NotSendable("This conversation has no endpoint; pick one in the settings.")
    system_prompt = form.cleaned_data["system_prompt"] if form is not None else None
    return build(conversation, the_plan, values, model=endpoint.model_id, system_prompt=system_prompt)


def forcing_tool_choice(conversation) -> str:
    """The stored tool_choice when it would force another tool call after tool results ("" if not)."""
    choice = conversation.options.get("tool_choice") if isinstance(conversation.options, dict) else None
    if isinstance(choice, dict):
        return f"function {_function_name(choice)}"
    return choice if choice in FORCING else ""


def _function_name(choice: dict) -> str:
    function = choice.get("function")
    return str(function.get("name", "?")) if isinstance(function, dict) else "?"
