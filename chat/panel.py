"""The settings panel: one form field per request option, generated from the option registry.

Blank means *unset*: the attribute is not sent (distinct from 0, false or ""). Booleans are
three-way (unset / true / false). Objects are JSON, except where the pages' shapes deserve
their own controls (tool_choice, response_format, structured_outputs, stream_options,
logit_bias, metadata, stop). Every value is checked by the registry and the payload builder,
so the panel can never store something the request builder would refuse.
"""

from __future__ import annotations

import json

from django import forms

from chat import probe as endpoint_probe
from chat.forms import EndpointChoiceField
from chat.models import Conversation, Endpoint
from chat.upstream.headers import HeaderError, parse_lines, to_lines
from chat.upstream.families import FAMILIES
from chat.upstream.options import GROUPS, OPTIONS, OPTIONS_BY_NAME, OptionError, validate_value
from chat.upstream.payload import PayloadError, build_payload

MAX_JSON_CHARS = 200_000
TRI_STATE = [("", "unset"), ("true", "true"), ("false", "false")]
RESPONSE_FORMAT_TYPES = [("", "unset"), ("text", "text"), ("json_object", "json_object"),
                         ("json_schema", "json_schema"), ("structural_tag", "structural_tag")]
STRUCTURED_KINDS = [("", "unset"), ("json", "json (schema)"), ("regex", "regex"), ("choice", "choice (one per line)"),
                    ("grammar", "grammar"), ("structural_tag", "structural_tag (JSON)")]

# The options people change most: the panel shows them first, the rest by registry group.
COMMON = ("temperature", "top_p", "max_tokens", "thinking", "stop")

# Options drawn by hand below; every other registry option gets a generic field.
COMPOSITE = {"tools", "tool_choice", "response_format", "structured_outputs", "stream_options",
             "chat_template_kwargs", "logit_bias", "metadata", "stop", "stop_token_ids"}


def parse_json(text: str, what: str):
    if len(text) > MAX_JSON_CHARS:
        raise forms.ValidationError(f"{what} is too long ({len(text)} characters).")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise forms.ValidationError(f"{what} is not valid JSON: {e}") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def dump_json(value) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def _shaped(value, kind):
    """`value` when it has the expected shape, else an empty one (stored rows can be older than the rules)."""
    return value if isinstance(value, kind) else kind()


def tri(value) -> str:
    return "" if value is None else ("true" if value else "false")


def untri(text: str):
    return None if text == "" else text == "true"


class JSONField(forms.CharField):
    """A JSON textarea (CodeMirror in the browser); blank = unset."""

    def __init__(self, *, rows=4, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", True)
        super().__init__(widget=forms.Textarea(attrs={"rows": rows, "data-json-editor": "", "spellcheck": "false"}), **kwargs)

    def to_python(self, value):
        text = super().to_python(value)
        return None if text == "" else parse_json(text, self.label or "The value")

    def prepare_value(self, value):
        return value if isinstance(value, str) else dump_json(value)


def generic_field(option) -> forms.Field:
    """A field for a plain option: number, integer, boolean, string, or JSON for the rest."""
    attrs = {}
    if option.minimum is not None:
        attrs["min"] = option.minimum
    if option.maximum is not None:
        attrs["max"] = option.maximum
    placeholder = "unset" + (f" (server default {json.dumps(option.default)})" if option.default is not None else "")
    if option.type == "number":
        return forms.FloatField(required=False, widget=forms.NumberInput(attrs={**attrs, "step": "any", "placeholder": placeholder}))
    if option.type == "integer":
        return forms.IntegerField(required=False, widget=forms.NumberInput(attrs={**attrs, "placeholder": placeholder}))
    if option.type == "boolean":
        return forms.ChoiceField(choices=TRI_STATE, required=False)
    if option.type == "string":
        return forms.CharField(required=False, max_length=1000, widget=forms.TextInput(attrs={"placeholder": placeholder}))
    return JSONField(label=option.name)


class PanelForm(forms.Form):
    """Every option of a conversation, plus endpoint, system prompt, tools and canned results."""

    endpoint = EndpointChoiceField(Endpoint.objects.none(), empty_label=None)
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=100_000)
    thinking = forms.ChoiceField(choices=[("", "family default"), ("on", "on"), ("off", "off")], required=False)
    chat_template_kwargs = JSONField(label="chat_template_kwargs", help_text="Free-form template arguments (enable_thinking is the toggle above).")
    stream_options__include_usage = forms.ChoiceField(choices=TRI_STATE, required=False, label="include_usage")
    stream_options__continuous_usage_stats = forms.ChoiceField(choices=TRI_STATE, required=False, label="continuous_usage_stats")
    stop = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="Up to 4 sequences, one per line (\\n for a newline).")
    stop_token_ids = forms.CharField(required=False, help_text="Token ids, comma-separated.")
    logit_bias = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                 help_text="One 'token_id: bias' per line, bias from -100 to 100.")
    metadata = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                               help_text="One 'key=value' per line.")
    tools = JSONField(label="tools", rows=8, help_text="A JSON list of {type: function, function: {name, description, parameters}}.")
    canned_results = JSONField(label="Canned results", rows=3, help_text='Optional: {"tool_name": "result text"}, answers a call in one click.')
    tool_choice = forms.CharField(required=False, widget=forms.Select)
    response_format__type = forms.ChoiceField(choices=RESPONSE_FORMAT_TYPES, required=False, label="type")
    response_format__name = forms.CharField(required=False, max_length=64, label="schema name")
    response_format__schema = JSONField(label="JSON schema", rows=8)
    response_format__strict = forms.ChoiceField(choices=TRI_STATE, required=False, label="strict")
    response_format__structural_tag = JSONField(label="structural_tag", rows=4)
    structured_outputs__kind = forms.ChoiceField(choices=STRUCTURED_KINDS, required=False, label="kind")
    structured_outputs__value = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}), label="value")
    headers = forms.CharField(
        required=False, label="Request headers", max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "placeholder": "X-Trace-Id: abc123"}),
        help_text="Sent with every request of this conversation, one 'Name: value' per line (not for secrets: "
                  "they are stored and shown as typed). Authorization and hop-by-hop headers are refused.",
    )

    STREAM_OPTIONS_CLEARED = "stream_options cleared: they only apply to streamed requests"

    def __init__(self, *args, user, conversation: Conversation, **kwargs):
        super().__init__(*args, **kwargs)
        self.conversation = conversation
        self.notices: list[str] = []  # what the form changed by itself, said in the panel status
        if self.is_bound:
            self._clear_stream_options_unless_streaming()
        self.fields["endpoint"].queryset = Endpoint.objects.usable_by(user)
        for option in OPTIONS:
            if option.name not in COMPOSITE:
                self.fields[option.name] = generic_field(option)
        family = FAMILIES[conversation.endpoint.family] if conversation.endpoint else FAMILIES["generic"]
        self.thinking_toggle = family.thinking == "toggle"
        self.fields["thinking"].help_text = (
            f"Sent as chat_template_kwargs.enable_thinking ({family.label} default: {'on' if family.thinking_default else 'off'})."
        )
        described = set()  # an option drawn as several fields (response_format: five) is described once
        for name, field in self.fields.items():
            option = OPTIONS_BY_NAME.get(name.split("__")[0])
            field.option = option
            field.group = option.group if option else ("tools" if name == "canned_results" else "general")
            if option and not field.help_text and option.name not in described:
                field.help_text = option.description
            if option:
                described.add(option.name)
            if option and not name.count("__") and field.label is None:
                field.label = option.name
            if field.help_text:  # (ids as Django's default auto_id gives them; the panel-field partial)
                field.widget.attrs["aria-describedby"] = f"id_{name}-help"
        self.fields["headers"].group = "advanced"
        tools = self.data.get("tools") if self.is_bound else None
        self.fields["tool_choice"].widget.choices = self.tool_choices(tools)
        # Options the endpoint's capability probe failed: said beside them; still sendable.
        for name, note in endpoint_probe.panel_notes(conversation.endpoint).items():
            if name in self.fields:
                self.fields[name].probe_note = note

    def _clear_stream_options_unless_streaming(self) -> None:
        """vLLM refuses stream_options unless stream is true: turning stream off (or unset) drops
        them here, in the data the form shows and stores, and says so."""
        names = [f"stream_options__{key}" for key in ("include_usage", "continuous_usage_stats")]
        if self.data.get("stream") == "true" or not any(self.data.get(name) for name in names):
            return
        self.data = self.data.copy()  # a QueryDict from a request is immutable
        for name in names:
            self.data[name] = ""
        self.notices.append(self.STREAM_OPTIONS_CLEARED)

    def tool_choices(self, tools_text=None) -> list[tuple[str, str]]:
        tools = self.conversation.tools or []
        if tools_text:
            try:
                tools = json.loads(tools_text)
            except ValueError:
                pass
        names = [t.get("function", {}).get("name") for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
        return [("", "unset"), ("auto", "auto"), ("none", "none"), ("required", "required")] + [
            (f"function:{n}", f"function: {n}") for n in names if isinstance(n, str)
        ]

    # --- initial values from a conversation ------------------------------------

    @classmethod
    def initial_for(cls, conversation: Conversation) -> dict:
        """The fields' values from what is stored. Stored values of an unexpected shape (rows from
        before validation, an admin's default_options) show as blank, never as a broken page:
        `stored_problem()` says what was wrong, and the next save stores what the panel shows."""
        o = conversation.options if isinstance(conversation.options, dict) else {}
        initial = {"endpoint": conversation.endpoint_id, "system_prompt": conversation.system_prompt,
                   "tools": conversation.tools or None, "canned_results": conversation.canned_results or None,
                   "headers": to_lines(_shaped(conversation.headers, dict))}
        for option in OPTIONS:
            if option.name in COMPOSITE:
                continue
            value = o.get(option.name)
            initial[option.name] = tri(value) if option.type == "boolean" else value
        kwargs = dict(_shaped(o.get("chat_template_kwargs"), dict))
        thinking = kwargs.pop("enable_thinking", None)
        initial["thinking"] = "" if thinking is None else ("on" if thinking else "off")
        initial["chat_template_kwargs"] = kwargs or None
        stream_options = _shaped(o.get("stream_options"), dict)
        initial["stream_options__include_usage"] = tri(stream_options.get("include_usage"))
        initial["stream_options__continuous_usage_stats"] = tri(stream_options.get("continuous_usage_stats"))
        stop = o.get("stop")
        stops = [stop] if isinstance(stop, str) else [s for s in _shaped(stop, list) if isinstance(s, str)]
        initial["stop"] = "\n".join(s.replace("\n", "\\n") for s in stops)
        initial["stop_token_ids"] = ", ".join(str(t) for t in _shaped(o.get("stop_token_ids"), list))
        initial["logit_bias"] = "\n".join(f"{k}: {v}" for k, v in _shaped(o.get("logit_bias"), dict).items())
        initial["metadata"] = "\n".join(f"{k}={v}" for k, v in _shaped(o.get("metadata"), dict).items())
        choice = o.get("tool_choice")
        name = _shaped(choice, dict).get("function", {}).get("name") if isinstance(_shaped(choice, dict).get("function"), dict) else None
        initial["tool_choice"] = f"function:{name}" if name else (choice if isinstance(choice, str) else "")
        rf = _shaped(conversation.response_format, dict)
        initial["response_format__type"] = rf.get("type", "") if isinstance(rf.get("type"), str) else ""
        schema = _shaped(rf.get("json_schema"), dict)
        initial["response_format__name"] = schema.get("name", "") if isinstance(schema.get("name"), str) else ""
        initial["response_format__schema"] = schema.get("schema")
        initial["response_format__strict"] = tri(schema.get("strict"))
        initial["response_format__structural_tag"] = {k: v for k, v in rf.items() if k != "type"} if rf.get("type") == "structural_tag" else None
        so = _shaped(o.get("structured_outputs"), dict)
        kind = next(iter(so), "")
        initial["structured_outputs__kind"] = kind
        value = so.get(kind) if kind else None
        if kind == "choice" and isinstance(value, list):
            initial["structured_outputs__value"] = "\n".join(str(v) for v in value)
        elif isinstance(value, str):
            initial["structured_outputs__value"] = value
        elif value is not None:
            initial["structured_outputs__value"] = dump_json(value)
        return initial

    @staticmethod
    def stored_problem(conversation: Conversation) -> str:
        """Why the stored settings could not be sent as they are ("" when they can)."""
        endpoint = conversation.endpoint
        try:
            values = conversation.option_values()
            build_payload(endpoint.model_id if endpoint else "model", [{"role": "user", "content": "x"}], values)
        except (PayloadError, TypeError, ValueError, AttributeError) as e:
            return f"The stored settings are not valid ({e}); the panel shows what could be read, and saving stores that"
        return ""

    # --- parsing the composite controls -----------------------------------------------

    def clean_stop(self):
        lines = [line.replace("\\n", "\n") for line in self.cleaned_data["stop"].splitlines() if line != ""]
        if not lines:
            return None
        old = self.conversation.options.get("stop")
        return lines[0] if isinstance(old, str) and len(lines) == 1 else lines

    def clean_stop_token_ids(self):
        text = self.cleaned_data["stop_token_ids"].strip()
        if not text:
            return None
        try:
            return [int(t) for t in text.replace(" ", "").split(",") if t]
        except ValueError:
            raise forms.ValidationError("Token ids are whole numbers separated by commas.") from None

    def clean_logit_bias(self):
        bias = {}
        for number, line in enumerate(self.cleaned_data["logit_bias"].splitlines(), 1):
            if not line.strip():
                continue
            token, sep, value = line.partition(":")
            try:
                if not sep:
                    raise ValueError
                bias[str(int(token.strip()))] = float(value) if "." in value else int(value)
            except ValueError:
                raise forms.ValidationError(f"Line {number}: write 'token_id: bias', e.g. '50256: -100'.") from None
        return bias or None

    def clean_metadata(self):
        data = {}
        for number, line in enumerate(self.cleaned_data["metadata"].splitlines(), 1):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Line {number}: write 'key=value'.")
            data[key.strip()] = value.strip()
        return data or None

    def clean_headers(self):
        try:
            headers = parse_lines(self.cleaned_data["headers"])
        except HeaderError as e:
            raise forms.ValidationError(str(e)) from None
        endpoint = self.cleaned_data.get("endpoint") or self.conversation.endpoint
        if endpoint is not None:
            from chat import endpoint_headers

            taken = {name.lower(): name for name in endpoint_headers.shown(endpoint)}
            clash = [name for name in headers if name.lower() in taken]
            if clash:
                raise forms.ValidationError(f"{clash[0]} is set by the endpoint (an admin's header); it cannot be changed here.")
        return headers

    def clean_canned_results(self):
        value = self.cleaned_data["canned_results"]
        if value is not None and (not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())):
            raise forms.ValidationError('Canned results are a JSON object of tool name → result text.')
        return value or {}

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        values = self._values(data)
        if self.errors:
            return data
        for name, value in values.items():
            try:
                values[name] = validate_value(name, value)
            except OptionError as e:
                self._error_for(e.name, f"{e.field}: {e.message}" if e.field != e.name else e.message)
        if not self.errors:
            endpoint = data.get("endpoint")
            try:
                build_payload(endpoint.model_id if endpoint else "model", [{"role": "user", "content": "x"}], values)
            except PayloadError as e:
                self._error_for(e.field.split(".")[0].split("[")[0], f"{e.field}: {e.message}")
        self.values = values
        return data

    def _error_for(self, option_name: str, message: str) -> None:
        for field in (option_name, f"{option_name}__type", f"{option_name}__kind", f"{option_name}__include_usage"):
            if field in self.fields:
                self.add_error(field, message)
                return
        self.add_error(None, message)

    def _values(self, data: dict) -> dict:
        """The option values dict (what build_payload takes) from the cleaned fields."""
        values = {}
        for option in OPTIONS:
            if option.name in COMPOSITE:
                continue
            value = data.get(option.name)
            values[option.name] = untri(value) if option.type == "boolean" else (None if value in ("", None) else value)
        for name in ("stop", "stop_token_ids", "logit_bias", "metadata", "tools"):
            values[name] = data.get(name)
        endpoint = data.get("endpoint")
        family = FAMILIES.get(endpoint.family if endpoint else "generic", FAMILIES["generic"])
        kwargs = dict(data.get("chat_template_kwargs") or {})
        if not isinstance(data.get("chat_template_kwargs") or {}, dict):
            self.add_error("chat_template_kwargs", "chat_template_kwargs must be a JSON object.")
            kwargs = {}
        if data.get("thinking") and family.thinking == "toggle":
            kwargs["enable_thinking"] = data["thinking"] == "on"
        values["chat_template_kwargs"] = kwargs or None
        stream_options = {k: untri(data.get(f"stream_options__{k}", "")) for k in ("include_usage", "continuous_usage_stats")}
        stream_options = {k: v for k, v in stream_options.items() if v is not None}
        values["stream_options"] = stream_options or None
        choice = data.get("tool_choice") or None
        if choice and choice.startswith("function:"):
            choice = {"type": "function", "function": {"name": choice.removeprefix("function:")}}
        values["tool_choice"] = choice
        values["response_format"] = self._response_format(data)
        values["structured_outputs"] = self._structured_outputs(data)
        return values

    def _response_format(self, data: dict):
        kind = data.get("response_format__type")
        if not kind:
            return None
        if kind == "json_schema":
            schema = data.get("response_format__schema")
            if schema is None:
                self.add_error("response_format__schema", "A json_schema response format needs a schema.")
                return None
            json_schema = {"name": data.get("response_format__name") or "response", "schema": schema}
            if untri(data.get("response_format__strict", "")) is not None:
                json_schema["strict"] = untri(data["response_format__strict"])
            return {"type": "json_schema", "json_schema": json_schema}
        if kind == "structural_tag":
            extra = data.get("response_format__structural_tag") or {}
            if not isinstance(extra, dict):
                self.add_error("response_format__structural_tag", "Give the structural_tag fields as a JSON object.")
                return None
            return {"type": "structural_tag", **extra}
        return {"type": kind}

    def _structured_outputs(self, data: dict):
        kind, text = data.get("structured_outputs__kind"), (data.get("structured_outputs__value") or "").strip()
        if not kind:
            return None
        if not text:
            self.add_error("structured_outputs__value", f"structured_outputs.{kind} needs a value.")
            return None
        if kind == "choice":
            return {"choice": [line.strip() for line in text.splitlines() if line.strip()]}
        if kind in ("json", "structural_tag"):
            try:
                return {kind: parse_json(text, f"structured_outputs.{kind}")}
            except forms.ValidationError as e:
                self.add_error("structured_outputs__value", e)
                return None
        return {kind: text}

    # --- saving --------------------------------------------------------------------------

    def stored(self) -> dict:
        """The conversation's fields as this form would store them."""
        data, values = self.cleaned_data, dict(self.values)
        return {
            "endpoint": data["endpoint"], "system_prompt": data["system_prompt"],
            "tools": values.pop("tools") or [], "response_format": values.pop("response_format"),
            "canned_results": data.get("canned_results") or {},
            "headers": data.get("headers") or {},
            "options": {k: v for k, v in values.items() if v is not None},
        }

    def save(self, *, if_changed: bool = False) -> bool:
        """Store the values; with `if_changed`, only when they differ from the stored ones
        (a send carries the panel's values and stores them only when they changed)."""
        fields = self.stored()
        if if_changed and all(getattr(self.conversation, name) == value for name, value in fields.items()):
            return False
        for name, value in fields.items():
            setattr(self.conversation, name, value)
        self.conversation.save()
        return True

    def common(self) -> list:
        """The most used options' bound fields, in COMMON's order (thinking where the family toggles it)."""
        return [self[name] for name in COMMON if name in self.fields and (name != "thinking" or self.thinking_toggle)]

    def grouped(self) -> list[tuple[str, list]]:
        """The other bound fields by registry group, in the registry's group order (for the template)."""
        groups: dict[str, list] = {g: [] for g in GROUPS}
        for bound in self:
            if bound.name in ("endpoint", "system_prompt", "thinking", *COMMON):
                continue
            groups.setdefault(bound.field.group, []).append(bound)
        return [(g, fields) for g, fields in groups.items() if fields]
