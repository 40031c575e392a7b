"""Forms: every input from a page or a websocket frame goes through one of these."""

from __future__ import annotations

from django import forms

from chat.models import Endpoint
from chat.upstream.export import parse_curl
from chat.upstream.families import FAMILIES

MAX_MESSAGE_CHARS = 100_000


class NewConversationForm(forms.Form):
    endpoint = forms.ModelChoiceField(Endpoint.objects.none(), empty_label=None)

    def __init__(self, *args, user, **kwargs):
        kwargs.setdefault("auto_id", "new_%s")  # the history page has three endpoint fields: ids stay unique
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = Endpoint.objects.usable_by(user)


class FrameForm(forms.Form):
    """One websocket frame from the composer or a message's buttons."""

    ACTIONS = ["send", "stop", "regenerate", "edit", "run", "resync"]

    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    content = forms.CharField(required=False, max_length=MAX_MESSAGE_CHARS, strip=False)
    message = forms.UUIDField(required=False)
    # The settings panel's form data as shown (URL-encoded): the request is built from it.
    settings = forms.CharField(required=False, max_length=2_000_000, strip=False)
    # A continuation after tool results: "" lets a forcing tool_choice fall back to auto.
    tool_choice = forms.ChoiceField(choices=[("", "default"), ("auto", "auto"), ("none", "none"), ("settings", "as in the settings")], required=False)

    def clean(self):
        data = super().clean()
        if data.get("action") in ("send", "edit") and not (data.get("content") or "").strip():
            self.add_error("content", "Type a message first.")
        if data.get("action") == "edit" and not data.get("message"):
            self.add_error("message", "Which message should be edited?")
        return data


def family_defaults(endpoint: Endpoint) -> dict:
    """Option values for a new conversation: the family's page defaults, the endpoint's, streaming with usage."""
    family = FAMILIES[endpoint.family]
    options = {**family.defaults, **endpoint.default_options}
    if family.thinking == "toggle":
        options.update(family.thinking_values(family.thinking_default))
    options.setdefault("stream", True)
    if options["stream"]:
        options.setdefault("stream_options", {"include_usage": True})
    return options


class ImportCurlForm(forms.Form):
    """A pasted cURL command; the endpoint is the one serving its model, else the one picked."""

    command = forms.CharField(widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}), max_length=500_000,
                              help_text="Paste any example from the vendor pages, or a similar command.")
    endpoint = forms.ModelChoiceField(Endpoint.objects.none(), required=False, empty_label="(the one serving its model)")

    def __init__(self, *args, user, **kwargs):
        kwargs.setdefault("auto_id", "import_%s")
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = Endpoint.objects.usable_by(user)

    def clean(self):
        data = super().clean()
        if "command" not in data:
            return data
        try:
            imported = parse_curl(data["command"])
        except ValueError as e:
            raise forms.ValidationError(f"That command could not be read: {e}") from None
        usable = self.fields["endpoint"].queryset
        endpoint = data.get("endpoint") or usable.filter(model_id=imported.model).first()
        if endpoint is None:
            raise forms.ValidationError(f"No endpoint you may use serves {imported.model!r}: pick one.")
        data["imported"], data["endpoint"] = imported, endpoint
        return data
