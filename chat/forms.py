"""Forms: every input from a page or a websocket frame goes through one of these."""

from __future__ import annotations

from django import forms
from django.db.models import Case, F, OuterRef, Subquery, When

from chat import probe
from chat.models import Conversation, Endpoint
from chat.upstream.export import parse_curl
from chat.upstream.families import FAMILIES
from chat.upstream.payload import PayloadError, build_payload, check_image_url, validate_messages

MAX_MESSAGE_CHARS = 2_000_000  # a long paste; the socket's frame cap (8 MB) is above it


class EndpointChoiceField(forms.ModelChoiceField):
    """Every endpoint select: the model each endpoint serves is part of its label (a name alone,
    "Simulated vLLM (offline demo) — …", says little once a narrow select cuts it), and one whose
    last connection check failed says so. The `endpoint-select` class lets the label wrap (chat.css)."""

    widget = forms.Select(attrs={"class": "endpoint-select"})

    def label_from_instance(self, endpoint: Endpoint) -> str:
        label = endpoint.name_and_model
        if endpoint.last_check_ok is False:
            label += " (last check failed)"
        summary = probe.summary(endpoint, short=True)  # issue 17: what the capability probe found
        if summary:
            label += f" · {summary}"
        return label


def healthiest_first(endpoints):
    """Endpoints whose last connection check passed first, then unchecked ones, failed ones last."""
    health = Case(When(last_check_ok=True, then=0), When(last_check_ok__isnull=True, then=1), default=2)
    return endpoints.order_by(health, "name")


def default_endpoint(user) -> Endpoint | None:
    """Where a new conversation starts: the endpoint of the user's most recently updated conversation
    that they may still use, else the first usable one; never one whose last check failed (None when
    all did: the select then shows its first). One query."""
    last_used = Conversation.objects.filter(owner=user, endpoint=OuterRef("pk")).order_by("-updated_at").values("updated_at")[:1]
    return (
        Endpoint.objects.usable_by(user).exclude(last_check_ok=False)  # (exclude keeps the never checked)
        .annotate(last_used=Subquery(last_used)).order_by(F("last_used").desc(nulls_last=True), "name").first()
    )


class NewConversationForm(forms.Form):
    endpoint = EndpointChoiceField(Endpoint.objects.none(), empty_label=None)

    def __init__(self, *args, user, **kwargs):
        kwargs.setdefault("auto_id", "new_%s")  # the history page has three endpoint fields: ids stay unique
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = Endpoint.objects.usable_by(user)
        if not self.is_bound:
            self.fields["endpoint"].initial = default_endpoint(user)


class FrameForm(forms.Form):
    """One websocket frame from the composer or a message's buttons."""

    ACTIONS = ["send", "stop", "regenerate", "edit", "run", "resync", "replay"]  # replay: a comparison's (chat.compare)

    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    content = forms.CharField(required=False, max_length=MAX_MESSAGE_CHARS, strip=False)
    message = forms.UUIDField(required=False)
    pane = forms.UUIDField(required=False)  # a comparison's pane: Stop stops that one only
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
    """A pasted cURL command. The endpoint is the one picked, else the one serving its model; for the
    pages' placeholders ($QWEN_MODEL, ...) one of that page's family."""

    command = forms.CharField(widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}), max_length=500_000,
                              help_text="Paste any example from the vendor pages, or a similar command.")
    endpoint = EndpointChoiceField(Endpoint.objects.none(), required=False, empty_label="(the one serving its model)")

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
        endpoint = data.get("endpoint") or self._target(imported)
        self._check_messages(imported.messages, endpoint)
        values = dict(imported.values)
        if imported.unknown:  # outside the registry: sent through extra_body, as the panel would
            values["extra_body"] = {**(values.get("extra_body") or {}), **imported.unknown}
        # The same rules as a send from the settings panel: nothing is stored that could not be sent.
        try:
            build_payload(endpoint.model_id, imported.messages, values)
        except PayloadError as e:
            raise forms.ValidationError(f"That command cannot be imported: {e}. Nothing was created.") from None
        data["imported"], data["endpoint"], data["values"] = imported, endpoint, values
        return data

    def _target(self, imported) -> Endpoint:
        """The endpoint for the command's model, among those the user may use (a passing check preferred)."""
        usable = self.fields["endpoint"].queryset
        if not imported.model_placeholder:
            endpoint = healthiest_first(usable.filter(model_id=imported.model)).first()
            if endpoint is None:
                raise forms.ValidationError(f"No endpoint you may use serves {imported.model!r}: pick one.")
            return endpoint
        candidates = usable.filter(family=imported.family) if imported.family else usable
        endpoint = healthiest_first(candidates).first()
        if endpoint is None:
            family = FAMILIES[imported.family].label if imported.family else "any"
            raise forms.ValidationError(f"{imported.model} stands for a {family} model, and no endpoint you may use serves one: pick one.")
        return endpoint

    @staticmethod
    def _check_messages(messages: list, endpoint: Endpoint) -> None:
        """Image parts only where the endpoint takes images, from URLs vLLM may fetch (as the composer
        checks them); then every message's shape, so nothing is imported that could not be sent."""
        for i, message in enumerate(messages):
            parts = message.get("content") if isinstance(message, dict) else None
            for part in parts if isinstance(parts, list) else []:
                if not (isinstance(part, dict) and part.get("type") == "image_url"):
                    continue
                if not endpoint.image_input:
                    raise forms.ValidationError(
                        f"Message {i + 1} has an image, and {endpoint} does not take images (image input is off for it): "
                        "pick an endpoint that does, such as a Gemma 4 one."
                    )
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else None
                if isinstance(url, str):  # (a part without one is refused by validate_messages below)
                    try:
                        check_image_url(url)
                    except ValueError as e:
                        raise forms.ValidationError(f"The image URL of message {i + 1} {e}.") from None
        try:
            validate_messages(messages)
        except PayloadError as e:
            raise forms.ValidationError(f"That command's messages cannot be sent: {e}") from None
