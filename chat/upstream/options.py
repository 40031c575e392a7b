"""THE registry of request options: one entry per documented request attribute.

The settings form, validation, the request builder, the exports and the tests
are all driven from OPTIONS, so adding an option is one entry here. `model`
and `messages` are not options: payload.py builds them.

Registry order is the order options appear in a built request body. It
follows the pages' examples (stream first, then tools, output format,
sampling, length, ...). The examples disagree only about where a
`"stream": false` goes; we keep one order.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from jsonschema import exceptions as jsonschema_exceptions
from jsonschema import validators as jsonschema_validators
from referencing import Registry

__all__ = [
    "GROUPS",
    "OPTIONS",
    "OPTIONS_BY_NAME",
    "Option",
    "OptionError",
    "check_json_schema",
    "validate_value",
]

GROUPS = (
    "sampling",
    "length",
    "penalties",
    "output format",
    "tools",
    "reasoning",
    "streaming",
    "advanced",
)

ALL = frozenset({"qwen", "llama", "mistral", "gemma", "generic"})
QLM = frozenset({"qwen", "llama", "mistral", "generic"})  # the pages with the long parameter example
GENERIC = frozenset({"generic"})
NONE = frozenset()  # seen only in the real vLLM transcripts

RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema", "structural_tag")
STRUCTURED_OUTPUT_KINDS = ("json", "regex", "choice", "grammar", "structural_tag", "json_object")
TOOL_CHOICE_MODES = ("auto", "none", "required")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class OptionError(ValueError):
    """A value an option does not accept. `name` is the option ("top_p");
    `field` points inside it ("tools[0].function.parameters")."""

    def __init__(self, name: str, message: str, field: str | None = None) -> None:
        self.name = name
        self.field = field or name
        self.message = message
        super().__init__(f"{self.field}: {message}")


@dataclass(frozen=True)
class Option:
    """One request attribute.

    type: its JSON type, or a tuple of types ("string", "array").
    minimum/maximum: inclusive numeric bounds; exclusive_minimum for (0, 1].
    max_items: for arrays (stop: 4 sequences).
    default: the server's behaviour when the option is omitted (informative:
    unset options are never sent).
    group: one of GROUPS.
    description: the pages' one-line text.
    vllm_extension: not part of OpenAI's API; the openai SDK needs it in
    `extra_body`.
    families: the families whose pages show it (empty: only the transcripts).
    choices: allowed strings (tool_choice modes, response_format types, ...).
    keys: the documented keys of an object value.
    deprecated: superseded by another option (functions -> tools).
    """

    name: str
    type: str | tuple[str, ...]
    group: str
    description: str
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    max_items: int | None = None
    vllm_extension: bool = False
    families: frozenset[str] = ALL
    choices: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    deprecated: bool = False

    @property
    def types(self) -> tuple[str, ...]:
        return self.type if isinstance(self.type, tuple) else (self.type,)


OPTIONS: tuple[Option, ...] = (
    Option("stream", "boolean", "streaming", "If true, the response is streamed via Server-Sent Events (SSE).", default=False),
    Option(
        "stream_options", "object", "streaming",
        "Streaming configuration. If supported, you can request things like usage in the stream "
        '(e.g. { "include_usage": true }).',
        families=QLM, keys=("include_usage", "continuous_usage_stats"),
    ),
    Option(
        "tools", "array", "tools",
        "Tool definitions the model may call (e.g., function tools). When provided, the model may "
        "respond with tool_calls.",
    ),
    Option(
        "tool_choice", ("string", "object"), "tools",
        'Controls tool calling. Use "auto" to allow tool calls, "none" to disable, or an object to '
        "force a specific tool.",
        choices=TOOL_CHOICE_MODES, keys=("type", "function"),
    ),
    Option(
        "parallel_tool_calls", "boolean", "tools",
        "Whether the model may emit multiple tool calls in a single turn (support varies by "
        "server/version).",
        default=True, families=QLM,
    ),
    Option(
        "functions", "array", "tools", "Deprecated. Older function-calling interface. Prefer tools.",
        families=GENERIC, deprecated=True,
    ),
    Option(
        "function_call", ("string", "object"), "tools",
        "Deprecated. Older function-calling interface. Prefer tool_choice.",
        families=GENERIC, choices=("auto", "none"), keys=("name",), deprecated=True,
    ),
    Option(
        "response_format", "object", "output format",
        "Constrain the output format (if supported). Common shapes include JSON mode / JSON schema "
        "depending on your client/server.",
        families=QLM, choices=RESPONSE_FORMAT_TYPES, keys=("type", "json_schema"),
    ),
    Option(
        "structured_outputs", "object", "output format", "vLLM-specific structured output constraints.",
        vllm_extension=True, families=frozenset({"mistral"}), keys=STRUCTURED_OUTPUT_KINDS,
    ),
    Option(
        "temperature", "number", "sampling",
        "Sampling temperature. Higher values increase randomness; lower values are more deterministic.",
        default=1.0, minimum=0,
    ),
    Option(
        "top_p", "number", "sampling", "Nucleus sampling. Alternative to temperature; tune one or the other.",
        default=1.0, exclusive_minimum=0, maximum=1,
    ),
    Option(
        "top_k", "integer", "sampling",
        "(vLLM passthrough) Limits sampling to the top-k tokens. If your vLLM server supports it, "
        "this will be applied.",
        default=-1, minimum=-1, vllm_extension=True,
    ),
    Option(
        "min_p", "number", "sampling",
        "(vLLM passthrough) Minimum probability threshold for sampling (if supported by your vLLM server).",
        default=0.0, minimum=0, maximum=1, vllm_extension=True, families=QLM,
    ),
    Option(
        "repetition_penalty", "number", "penalties",
        "(vLLM passthrough) Penalizes repeated tokens (common in open-source serving stacks).",
        default=1.0, exclusive_minimum=0, vllm_extension=True,
    ),
    Option(
        "presence_penalty", "number", "penalties",
        "Penalizes tokens based on whether they appear in the text so far. Typical range: -2.0 to 2.0.",
        default=0.0, minimum=-2, maximum=2, families=QLM,
    ),
    Option(
        "frequency_penalty", "number", "penalties",
        "Penalizes tokens based on their frequency in the text so far. Typical range: -2.0 to 2.0.",
        default=0.0, minimum=-2, maximum=2, families=QLM,
    ),
    Option(
        "max_tokens", "integer", "length",
        "Maximum number of tokens to generate (legacy OpenAI param; still commonly used by clients).",
        minimum=1,
    ),
    Option(
        "max_completion_tokens", "integer", "length",
        "Maximum number of completion tokens to generate (newer OpenAI-compatible clients may send this).",
        minimum=1, families=GENERIC,
    ),
    Option(
        "min_tokens", "integer", "length",
        "(vLLM passthrough) Minimum number of tokens to generate before stopping (if supported).",
        default=0, minimum=0, vllm_extension=True, families=GENERIC,
    ),
    Option(
        "stop", ("string", "array"), "length",
        "Up to 4 stop sequences. Generation stops when any stop sequence is encountered.",
        max_items=4, families=GENERIC,
    ),
    Option(
        "stop_token_ids", "array", "length",
        "(vLLM passthrough) Token IDs that stop generation, in addition to EOS.",
        vllm_extension=True, families=NONE,
    ),
    Option(
        "ignore_eos", "boolean", "length",
        "(vLLM passthrough) Keep generating after the end-of-sequence token, up to max_tokens.",
        default=False, vllm_extension=True, families=NONE,
    ),
    Option(
        "seed", "integer", "sampling",
        "Best-effort deterministic sampling seed (determinism is not guaranteed across backend "
        "changes or parallelism).",
    ),
    Option(
        "n", "integer", "sampling",
        "Number of completions to generate for the same input. Most servers return n choices.",
        default=1, minimum=1, families=QLM,
    ),
    Option(
        "logprobs", "boolean", "output format",
        "If true, returns log probability information for output tokens (if supported by the "
        "server/model).",
        default=False, families=QLM,
    ),
    Option(
        "top_logprobs", "integer", "output format",
        "Number of most-likely tokens to return at each position (commonly 0–20). Only meaningful "
        "when logprobs is enabled.",
        minimum=0, maximum=20, families=QLM,
    ),
    Option(
        "logit_bias", "object", "sampling",
        'Modify token likelihoods. Map of token IDs to bias values (e.g. { "1234": -5, "5678": 3 }).',
        families=GENERIC,
    ),
    Option(
        "skip_special_tokens", "boolean", "advanced",
        "(vLLM passthrough) Drop special tokens (such as <|im_end|>) from the output text.",
        default=True, vllm_extension=True, families=NONE,
    ),
    Option(
        "user", "string", "advanced",
        "A unique identifier representing your end-user. Support may vary; servers can ignore it.",
        families=GENERIC,
    ),
    Option(
        "metadata", "object", "advanced",
        "Developer-defined metadata to attach to the request (key/value pairs).",
        families=GENERIC,
    ),
    Option(
        "chat_template_kwargs", "object", "reasoning",
        "Additional keyword arguments passed to the model chat template.",
        vllm_extension=True, families=frozenset({"qwen", "gemma"}), keys=("enable_thinking",),
    ),
    Option(
        "extra_body", "object", "advanced",
        "(Pass-through) Any additional vLLM/server-specific parameters you want to forward without "
        "changing the OpenAI-compatible payload. Merged into the request body.",
        families=GENERIC,
    ),
)

OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def validate_value(name: str, value):
    """Check one option value; return it unchanged or raise OptionError.

    None means "unset" and is returned as is. Types are strict (True is not
    a number, "0.7" is not a number): converting form input is the form's job.
    """
    option = OPTIONS_BY_NAME.get(name)
    if option is None:
        raise OptionError(name, "unknown option")
    if value is None:
        return None
    _check_type(option, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_bounds(option, value)
    if isinstance(value, str) and option.choices and name in _CHOICE_STRINGS:
        if value not in option.choices:
            raise OptionError(name, f"must be one of {', '.join(option.choices)}, not {value!r}")
    check = _SHAPE_CHECKS.get(name)
    if check is not None:
        check(value)
    return value


_JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}
_CHOICE_STRINGS = {"tool_choice", "function_call"}  # options whose string form is a mode


def _check_type(option: Option, value) -> None:
    if not any(_JSON_TYPES[t](value) for t in option.types):
        expected = " or ".join(option.types)
        raise OptionError(option.name, f"must be {_article(expected)}, not {_json_type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise OptionError(option.name, "must be a finite number")


def _check_bounds(option: Option, value: float) -> None:
    if option.minimum is not None and value < option.minimum:
        raise OptionError(option.name, f"must be at least {option.minimum}, got {value}")
    if option.exclusive_minimum is not None and value <= option.exclusive_minimum:
        raise OptionError(option.name, f"must be greater than {option.exclusive_minimum}, got {value}")
    if option.maximum is not None and value > option.maximum:
        raise OptionError(option.name, f"must be at most {option.maximum}, got {value}")


def _article(text: str) -> str:
    return ("an " if text[0] in "aeiou" else "a ") + text


def _json_type_name(value) -> str:
    for name in ("boolean", "integer", "number", "string", "object", "array"):
        if _JSON_TYPES[name](value):
            return _article(name)
    return type(value).__name__  # not a JSON value at all (a tuple, a set...)


def check_json_schema(schema, where: str, name: str) -> None:
    """Raise OptionError unless `schema` is a valid JSON Schema.

    Checked against its meta-schema (the draft named by `$schema`, else
    2020-12) with an explicit empty Registry: jsonschema would otherwise
    fetch remote `$ref`s over the network.
    """
    if not isinstance(schema, (dict, bool)):
        raise OptionError(name, "must be a JSON Schema object", where)
    cls = jsonschema_validators.validator_for(schema, default=jsonschema_validators.Draft202012Validator)
    meta = cls(cls.META_SCHEMA, registry=Registry())
    error = jsonschema_exceptions.best_match(meta.iter_errors(schema))
    if error is not None:
        path = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise OptionError(name, f"is not a valid JSON Schema: {error.message}", where + path)


def _check_stream_options(value: dict) -> None:
    for key in ("include_usage", "continuous_usage_stats"):
        if key in value and not isinstance(value[key], bool):
            raise OptionError("stream_options", "must be true or false", f"stream_options.{key}")


def _check_chat_template_kwargs(value: dict) -> None:
    if "enable_thinking" in value and not isinstance(value["enable_thinking"], bool):
        raise OptionError(
            "chat_template_kwargs", "must be true or false", "chat_template_kwargs.enable_thinking"
        )


def _check_tools(value: list) -> None:
    seen: set[str] = set()
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise OptionError("tools", 'each tool must be {"type": "function", "function": {...}}', where)
        name = _check_function(tool.get("function"), "tools", f"{where}.function")
        if name in seen:
            raise OptionError("tools", f"duplicate tool name {name!r}", f"{where}.function.name")
        seen.add(name)


def _check_functions(value: list) -> None:
    seen: set[str] = set()
    for i, function in enumerate(value):
        name = _check_function(function, "functions", f"functions[{i}]")
        if name in seen:
            raise OptionError("functions", f"duplicate function name {name!r}", f"functions[{i}].name")
        seen.add(name)


def _check_function(function, option: str, where: str) -> str:
    """A function definition: a valid name, and parameters that are an object schema."""
    if not isinstance(function, dict):
        raise OptionError(option, "must be an object with a name", where)
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise OptionError(
            option, "the name must be 1-64 letters, digits, underscores or dashes", f"{where}.name"
        )
    if "description" in function and not isinstance(function["description"], str):
        raise OptionError(option, "must be a string", f"{where}.description")
    parameters = function.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            raise OptionError(
                option, 'must be a JSON Schema with "type": "object"', f"{where}.parameters"
            )
        check_json_schema(parameters, f"{where}.parameters", option)
    if "strict" in function and not isinstance(function["strict"], bool):
        raise OptionError(option, "must be true or false", f"{where}.strict")
    return name


def _check_tool_choice(value) -> None:
    if isinstance(value, dict):
        function = value.get("function")
        if (
            value.get("type") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise OptionError(
                "tool_choice", 'a named tool choice is {"type": "function", "function": {"name": "..."}}'
            )


def _check_function_call(value) -> None:
    if isinstance(value, dict) and not (isinstance(value.get("name"), str) and value["name"]):
        raise OptionError("function_call", 'a named function call is {"name": "..."}')


def _check_response_format(value: dict) -> None:
    kind = value.get("type")
    if kind not in RESPONSE_FORMAT_TYPES:
        raise OptionError(
            "response_format", f"type must be one of {', '.join(RESPONSE_FORMAT_TYPES)}, not {kind!r}",
            "response_format.type",
        )
    if kind == "json_schema":
        spec = value.get("json_schema")
        where = "response_format.json_schema"
        if not isinstance(spec, dict):
            raise OptionError("response_format", 'needs a "json_schema" object with name and schema', where)
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise OptionError("response_format", "needs a name", f"{where}.name")
        if "schema" not in spec:
            raise OptionError("response_format", "needs the schema to follow", f"{where}.schema")
        check_json_schema(spec["schema"], f"{where}.schema", "response_format")


def _check_structured_outputs(value: dict) -> None:
    kinds = [k for k in STRUCTURED_OUTPUT_KINDS if value.get(k) not in (None, False)]
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        raise OptionError(
            "structured_outputs",
            f"needs exactly one of {', '.join(STRUCTURED_OUTPUT_KINDS)} (found: {found})",
        )
    kind = kinds[0]
    where = f"structured_outputs.{kind}"
    item = value[kind]
    if kind == "json":
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except ValueError:
                raise OptionError("structured_outputs", "is not valid JSON", where) from None
        check_json_schema(item, where, "structured_outputs")
    elif kind in ("regex", "grammar") and not (isinstance(item, str) and item.strip()):
        raise OptionError("structured_outputs", "must be a non-empty string", where)
    elif kind == "choice" and not (
        isinstance(item, list) and item and all(isinstance(c, str) for c in item)
    ):
        raise OptionError("structured_outputs", "must be a non-empty list of strings", where)
    elif kind == "structural_tag" and not isinstance(item, (str, dict)):
        raise OptionError("structured_outputs", "must be a string or an object", where)


def _check_stop(value) -> None:
    items = [value] if isinstance(value, str) else value
    if len(items) > 4:
        raise OptionError("stop", f"takes at most 4 sequences, got {len(items)}")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise OptionError("stop", "each stop sequence must be a non-empty string", f"stop[{i}]")


def _check_stop_token_ids(value: list) -> None:
    if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value):
        raise OptionError("stop_token_ids", "must be a list of token IDs (integers >= 0)")


def _check_logit_bias(value: dict) -> None:
    for token, bias in value.items():
        where = f"logit_bias[{token!r}]"
        if not (isinstance(token, str) and token.isdigit()):
            raise OptionError("logit_bias", "keys must be token IDs written as strings of digits", where)
        if not _JSON_TYPES["number"](bias) or not -100 <= bias <= 100:
            raise OptionError("logit_bias", "bias must be a number from -100 to 100", where)


def _check_metadata(value: dict) -> None:
    for key, item in value.items():
        if not isinstance(item, str):
            raise OptionError("metadata", "values must be strings", f"metadata[{key!r}]")


def _check_extra_body(value: dict) -> None:
    for key in ("model", "messages"):
        if key in value:
            raise OptionError("extra_body", f"cannot set {key!r}; it is built from the conversation")


_SHAPE_CHECKS = {
    "stream_options": _check_stream_options,
    "chat_template_kwargs": _check_chat_template_kwargs,
    "tools": _check_tools,
    "functions": _check_functions,
    "tool_choice": _check_tool_choice,
    "function_call": _check_function_call,
    "response_format": _check_response_format,
    "structured_outputs": _check_structured_outputs,
    "stop": _check_stop,
    "stop_token_ids": _check_stop_token_ids,
    "logit_bias": _check_logit_bias,
    "metadata": _check_metadata,
    "extra_body": _check_extra_body,
}
