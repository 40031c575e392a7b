"""Forms of the prompt library: names, a prompt's settings, uploads and pastes of test sets, a row."""

from __future__ import annotations

from django import forms

from chat.models_library import Preset
from chat.testdata import MAX_BYTES

NAME_HELP = "Up to 200 characters."


class NameForm(forms.Form):
    name = forms.CharField(max_length=200, label="Name", help_text=NAME_HELP, error_messages={"required": "Give it a name."})

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give it a name.")
        return name


class PromptForm(NameForm):
    """A prompt's name, description and the preset whose settings its next versions take."""

    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    preset = forms.ModelChoiceField(Preset.objects.none(), required=False, to_field_name="public_id",
                                    empty_label="none (the conversation's own settings)", label="Settings from preset")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["preset"].queryset = Preset.objects.visible_to(user).order_by("name")


class TestSetImportForm(forms.Form):
    """A file, or pasted text; CSV or JSONL (guessed from the file name or the text when not said)."""

    FORMATS = [("", "guess from the name or the text"), ("csv", "CSV (a header row of variable names)"),
               ("jsonl", "JSONL (one JSON object per line)")]

    file = forms.FileField(required=False, label="File", help_text=f"CSV or JSONL, UTF-8, up to {MAX_BYTES // 1_000_000} MB.")
    text = forms.CharField(required=False, label="or paste", strip=False, max_length=MAX_BYTES,
                           widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}))
    format = forms.ChoiceField(choices=FORMATS, required=False, label="Format")

    def clean(self):
        data = super().clean()
        if not self.errors and not data.get("file") and not (data.get("text") or "").strip():
            raise forms.ValidationError("Choose a file or paste the rows.")
        return data


class NewTestSetForm(NameForm, TestSetImportForm):
    pass


class ColumnForm(forms.Form):
    name = forms.CharField(max_length=64, label="New column")
    value = forms.CharField(max_length=10_000, label="Value for the existing rows")

    def clean_value(self):
        value = self.cleaned_data["value"]
        if not value.strip():
            raise forms.ValidationError("Every variable needs a value.")
        return value
