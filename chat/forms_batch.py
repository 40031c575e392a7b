"""The form that starts a batch run: a prompt version, a test set, endpoints, concurrency, sharing."""

from __future__ import annotations

from django import forms
from django.conf import settings

from chat.models import Endpoint, PromptVersion, TestSet

MAX_CONCURRENCY = 64


class VersionChoice(forms.ModelChoiceField):
    def label_from_instance(self, version: PromptVersion) -> str:
        note = f" — {version.note}" if version.note else ""
        return f"{version.prompt.name} v{version.number}{note}"


class EndpointChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, endpoint: Endpoint) -> str:
        return endpoint.name_and_model


class BatchRunForm(forms.Form):
    version = VersionChoice(queryset=PromptVersion.objects.none(), label="Prompt version",
                            error_messages={"invalid_choice": "Pick one of your prompts' versions."})
    test_set = forms.ModelChoiceField(queryset=TestSet.objects.none(), label="Test set", to_field_name="public_id",
                                      error_messages={"invalid_choice": "Pick one of your test sets."})
    endpoints = EndpointChoices(queryset=Endpoint.objects.none(), label="Endpoints", widget=forms.CheckboxSelectMultiple,
                                error_messages={"required": "Pick at least one endpoint.",
                                                "invalid_choice": "You may not use one of those endpoints."})
    concurrency = forms.IntegerField(min_value=1, max_value=MAX_CONCURRENCY, label="Rows at once per endpoint",
                                     help_text=f"1 to {MAX_CONCURRENCY}: how many rows of one endpoint are in flight at once.")
    share = forms.ChoiceField(label="Visible to", required=False)

    def __init__(self, *args, user, **kwargs) -> None:
        kwargs.setdefault("initial", {}).setdefault("concurrency", settings.BATCH_CONCURRENCY)
        super().__init__(*args, **kwargs)
        from chat.models import Prompt

        prompts = Prompt.objects.visible_to(user)
        self.fields["version"].queryset = (PromptVersion.objects.filter(prompt__in=prompts)
                                           .select_related("prompt").order_by("prompt__name", "-number"))
        self.fields["test_set"].queryset = TestSet.objects.visible_to(user).order_by("name")
        self.fields["endpoints"].queryset = Endpoint.objects.usable_by(user)
        self.teams = list(user.groups.order_by("name"))
        self.fields["share"].choices = [("", "Only me"), *((str(t.pk), f"Team {t.name}") for t in self.teams)]

    def clean_share(self):
        value = self.cleaned_data.get("share") or ""
        return next((t for t in self.teams if str(t.pk) == value), None)
