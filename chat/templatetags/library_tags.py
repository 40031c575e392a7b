"""The prompt library in templates: a snapshot's summary, JSON shown as text, and the library's
pieces on a conversation page (Use a prompt, Presets), which query what this viewer may use."""

from __future__ import annotations

import json

from django import template
from django.db.models import Prefetch

from chat import library
from chat.models_library import Preset, Prompt, PromptVersion
from chat.sharing import VisibilityForm

register = template.Library()


@register.filter
def preset_summary(values) -> str:
    return ", ".join(library.describe(values if isinstance(values, dict) else {}))


@register.filter
def pretty_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@register.filter
def visibility_form(row, user) -> VisibilityForm:
    return VisibilityForm(initial=VisibilityForm.initial_for(row), teams=user.groups.order_by("name"))


@register.filter
def get_item(mapping, key):
    return mapping.get(key, "") if isinstance(mapping, dict) else ""


@register.inclusion_tag("chat/_library_conversation.html#use-prompt", takes_context=True)
def use_prompt(context, conversation) -> dict:
    """Prompts with at least one version that this viewer may use, newest version first."""
    user = context["request"].user
    prompts = (Prompt.objects.visible_to(user).filter(versions__isnull=False).distinct()
               .prefetch_related(Prefetch("versions", queryset=PromptVersion.objects.order_by("-number")))
               .order_by("name"))
    return {"conversation": conversation, "prompts": prompts, "request": context["request"],
            "csrf_token": context.get("csrf_token")}


@register.inclusion_tag("chat/_library_conversation.html#presets", takes_context=True)
def conversation_presets(context, conversation) -> dict:
    user = context["request"].user
    return {"conversation": conversation, "can_edit": conversation.can_edit(user), "request": context["request"],
            "presets": Preset.objects.visible_to(user).order_by("name"), "csrf_token": context.get("csrf_token")}


@register.inclusion_tag("chat/_library_conversation.html#pane-preset", takes_context=True)
def pane_presets(context, conversation, pane) -> dict:
    """A pane's preset picker, for its owner (the board is also redrawn from socket frames, without a
    request: only the owner ever gets can_edit, so the owner's presets are listed)."""
    request = context.get("request")
    user = request.user if request is not None else (conversation.owner if context.get("can_edit") else None)
    presets = Preset.objects.visible_to(user).order_by("name").only("public_id", "name") if user else []
    return {"conversation": conversation, "pane": pane, "presets": presets}


@register.simple_tag(takes_context=True)
def prompt_used(context, conversation):
    """The prompt version this conversation last used, if this viewer may see the prompt (else None)."""
    if not conversation.prompt_version_id:
        return None
    version = PromptVersion.objects.select_related("prompt").filter(pk=conversation.prompt_version_id).first()
    request = context.get("request")
    if version is None or request is None:
        return None
    return version if Prompt.objects.visible_to(request.user).filter(pk=version.prompt_id).exists() else None
