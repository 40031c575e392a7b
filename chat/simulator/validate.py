"""Request parsing and validation, with vLLM 0.32's error bodies and wording.

Order follows vLLM (checked against a real 0.32 server, tests/vllm):
1. JSON decoding;
2. the request model's "before" validators, on the raw body: tool usage,
   structured-output count, logprobs, stream_options, response_format;
3. field types (pydantic: type "Bad Request", param "body.<field>");
4. the model (404);
5. max_tokens against max_model_len; then the conversation: empty, images
   on a text-only model, prompt length;
6. sampling values in SamplingParams' order; then logprobs and logit_bias
   against the model (max 20, the vocabulary);
7. structured-output constraints.
vLLM names the culprit in `param` (and as "(parameter=…, value=…)" in the
message) only where it says so; elsewhere param is null: penalties, top_k,
min_p, n, min_tokens, empty conversations.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

from . import schema as constraints
from .specs import ModelSpec
from .tokens import count_tokens

_UNSET = object()

MAX_LOGPROBS = 20
MAX_N = 16  # vLLM allows 16384 choices; the simulator runs in process, so fewer


class SimError(Exception):
    """An HTTP error answered as vLLM's `{"error": {message, type, param, code}}`."""

    def __init__(self, status: int, message: str, type_: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _TYPE_BY_STATUS.get(status, "InternalServerError")
        self.param = param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}}


_TYPE_BY_STATUS = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    501: "NotImplementedError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


def bad_value(message: str, param: str, value: Any = _UNSET) -> SimError:
    suffix = f"(parameter={param})" if value is _UNSET else f"(parameter={param}, value={value})"
    return SimError(400, f"{message} {suffix}", "BadRequestError", param)


def bad_request(message: str) -> SimError:
    """A validation error vLLM raises without naming a parameter (param null)."""
    return SimError(400, message, "BadRequestError", None)


def _shown(value: Any) -> Any:
    if isinstance(value, dict):
        return f"<dict of {len(value)} items>"
    if isinstance(value, list):
        return f"<list of {len(value)} items>"
    return str(value)  # vLLM shows scalar inputs as strings: 'input': '5'


def pydantic_error(errors: list[dict]) -> SimError:
    """vLLM turns pydantic's errors into one message: '1 validation error:\\n  {...}'."""
    count = len(errors)
    lines = "\n".join(f"  {error!r}" for error in errors)
    message = f"{count} validation error{'' if count == 1 else 's'}:\n{lines}"
    return SimError(400, message, "Bad Request", errors[0]["loc"])


def _err(kind: str, loc: str, msg: str, value: Any) -> dict:
    return {"type": kind, "loc": loc, "msg": msg, "input": _shown(value)}


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise pydantic_error([_err("missing", "body", "Field required", None)])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", 0) or 0
        reason = getattr(exc, "msg", "Invalid UTF-8")
        error = {
            "type": "json_invalid", "loc": f"body.{pos}", "msg": "JSON decode error",
            "input": "<dict of 0 items>", "ctx": {"error": reason},
        }
        raise pydantic_error([error]) from None


# --------------------------------------------------------------------------- field types (pydantic lax mode)

_FIELD_TYPES = {
    "model": "str", "user": "str", "request_id": "str",
    "temperature": "float", "top_p": "float", "min_p": "float", "presence_penalty": "float",
    "frequency_penalty": "float", "repetition_penalty": "float", "length_penalty": "float",
    "top_k": "int", "n": "int", "max_tokens": "int", "max_completion_tokens": "int",
    "min_tokens": "int", "seed": "int", "top_logprobs": "int", "prompt_logprobs": "int",
    "stream": "bool", "logprobs": "bool", "parallel_tool_calls": "bool", "ignore_eos": "bool",
    "skip_special_tokens": "bool", "include_stop_str_in_output": "bool", "echo": "bool",
    "add_generation_prompt": "bool", "continue_final_message": "bool", "include_reasoning": "bool",
    "stream_options": "dict", "chat_template_kwargs": "dict", "response_format": "dict",
    "structured_outputs": "dict", "logit_bias": "dict", "metadata": "dict",
    "messages": "list", "tools": "list", "stop_token_ids": "list",
}

KNOWN_FIELDS = set(_FIELD_TYPES) | {
    "stop", "tool_choice", "reasoning_effort", "best_of", "use_beam_search",
    "spaces_between_special_tokens", "truncate_prompt_tokens", "allowed_token_ids", "bad_words",
    "documents", "chat_template", "mm_processor_kwargs", "priority", "logits_processors",
    "return_tokens_as_token_ids", "return_token_ids", "cache_salt", "kv_transfer_params",
    "vllm_xargs", "service_tier", "store", "prediction", "modalities", "audio",
    "add_special_tokens", "structural_tag", "thinking_token_budget",
}

_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}


def _coerce(kind: str, name: str, value: Any) -> tuple[Any, dict | None]:
    loc = f"body.{name}"
    if kind == "float":
        if isinstance(value, bool):
            return float(value), None
        if isinstance(value, (int, float)):
            return float(value), None
        if isinstance(value, str):
            try:
                return float(value), None
            except ValueError:
                return None, _err("float_parsing", loc, "Input should be a valid number, unable to parse string as a number", value)
        return None, _err("float_type", loc, "Input should be a valid number", value)
    if kind == "int":
        if isinstance(value, bool):
            return int(value), None
        if isinstance(value, int):
            return value, None
        if isinstance(value, float):
            if value.is_integer():
                return int(value), None
            return None, _err("int_from_float", loc, "Input should be a valid integer, got a number with a fractional part", value)
        if isinstance(value, str):
            try:
                return int(value.strip()), None
            except ValueError:
                return None, _err("int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer", value)
        return None, _err("int_type", loc, "Input should be a valid integer", value)
    if kind == "bool":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, int) and value in (0, 1):
            return bool(value), None
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE, None
        if isinstance(value, (str, int, float)):
            return None, _err("bool_parsing", loc, "Input should be a valid boolean, unable to interpret input", value)
        return None, _err("bool_type", loc, "Input should be a valid boolean", value)
    if kind == "str":
        if isinstance(value, str):
            return value, None
        return None, _err("string_type", loc, "Input should be a valid string", value)
    if kind == "dict":
        if isinstance(value, dict):
            return value, None
        return None, _err("dict_type", loc, "Input should be a valid dictionary", value)
    if kind == "list":
        if isinstance(value, list):
            return value, None
        return None, _err("list_type", loc, "Input should be a valid list", value)
    raise AssertionError(kind)


# --------------------------------------------------------------------------- the normalized request

@dataclass
class ChatRequest:
    body: dict
    spec: ModelSpec
    model: str
    messages: list[dict]
    stream: bool = False
    include_usage: bool = False
    continuous_usage: bool = False
    n: int = 1
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int = 16
    min_tokens: int = 0
    stop: list[str] = field(default_factory=list)
    include_stop: bool = False
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    tools: list[dict] = field(default_factory=list)
    tool_choice: Any = "none"  # "none" | "auto" | "required" | {"name": ...}
    parallel_tool_calls: bool = True
    structured: tuple[str, Any] | None = None
    thinking: bool = False
    prompt_tokens: int = 0
    images: list[str] = field(default_factory=list)
    ignored_fields: list[str] = field(default_factory=list)
    base_seed: int = 0

    def rng(self, index: int) -> random.Random:
        """Greedy decoding (temperature 0) gives every choice the same draw;
        otherwise each choice gets its own, fixed by `seed` (default 0)."""
        if self.temperature == 0:
            return random.Random(self.base_seed)
        material = f"{self.base_seed}:{self.seed or 0}:{index}".encode()
        return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))

    @property
    def named_tool(self) -> str | None:
        return self.tool_choice.get("name") if isinstance(self.tool_choice, dict) else None


def message_parts(content: Any) -> tuple[str, list[str], list[str]]:
    """(text, image urls, unknown part types) of a message's content."""
    if content is None:
        return "", [], []
    if isinstance(content, str):
        return content, [], []
    texts, images, unknown = [], [], []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind == "image_url":
                url = part.get("image_url")
                images.append(url.get("url", "") if isinstance(url, dict) else str(url or ""))
            elif kind in ("image", "image_pil", "image_embeds"):
                images.append(str(part.get(kind) or ""))
            else:
                unknown.append(str(kind))
    return "\n".join(texts), images, unknown


_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def count_prompt_tokens(messages: list[dict], tools: list[dict], spec: ModelSpec, thinking: bool) -> int:
    """An estimate shaped like a chat template: per-message framing, the text,
    256 tokens per image, the tool definitions, the generation prompt."""
    total = 3  # <|im_start|>assistant\n
    for message in messages:
        if message.get("role") not in _ROLES:
            continue  # templates drop roles they do not know (vLLM answers 200)
        text, images, _ = message_parts(message.get("content"))
        total += 4 + count_tokens(text) + 256 * len(images)
        if message.get("tool_calls"):
            total += count_tokens(json.dumps(message["tool_calls"]))
    if tools:
        total += 40 + count_tokens(json.dumps(tools))
    if spec.family == "qwen" and not thinking:
        total += 4  # the empty <think>\n\n</think>\n\n the template adds
    return total


def parse_request(body: Any, models: dict[str, ModelSpec]) -> ChatRequest:
    if not isinstance(body, dict):
        raise pydantic_error([_err("model_attributes_type", "body",
                                   "Input should be a valid dictionary or object to extract fields from", body)])
    _check_tool_usage(body)
    _check_structured_outputs_count(body)
    _check_logprobs(body)
    if body.get("stream_options") and not body.get("stream"):
        raise bad_value("Stream options can only be defined when `stream=True`.", "stream_options")
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema" and rf.get("json_schema") is None:
        raise bad_value("When response_format type is 'json_schema', the 'json_schema' field must be provided.",
                        "response_format")
    values = _field_values(body)

    # The model.
    name = values.get("model")
    if name is None:
        spec = next(iter(models.values()))
        name = spec.id
    elif name not in models:
        aliases = ", ".join(models)
        raise SimError(404, f"The model `{name}` does not exist. Valid aliases: {aliases}.", "NotFoundError", "model")
    else:
        spec = models[name]

    messages = values["messages"]
    req = ChatRequest(body=body, spec=spec, model=name, messages=messages)
    _output_limit(req, values)
    if not messages:
        raise bad_request("Cannot apply chat template to an empty conversation. Provide at least one message.")
    for message in messages:
        _text, found, unknown = message_parts(message.get("content"))
        if unknown:
            raise SimError(400, f"Unknown part type: {unknown[0]}", "BadRequestError", None)
        req.images.extend(found)
    if req.images and not spec.multimodal:
        raise SimError(400, f"{name} is not a multimodal model", "BadRequestError", None)
    _tools(req, values, body)
    kwargs = values.get("chat_template_kwargs") or {}
    req.thinking = spec.thinks(kwargs)
    req.prompt_tokens = count_prompt_tokens(messages, req.tools, spec, req.thinking)
    _prompt_length(req)
    _sampling(req, values)
    _structured(req, values, body)
    req.ignored_fields = sorted(k for k in body if k not in KNOWN_FIELDS)
    canonical = json.dumps([name, messages, req.tools, req.structured, kwargs], sort_keys=True, default=str)
    req.base_seed = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")
    return req


def _field_values(body: dict) -> dict[str, Any]:
    """The body's fields, coerced as pydantic's lax mode would; all type errors at once."""
    values: dict[str, Any] = {}
    errors: list[dict] = []
    if "messages" not in body:
        errors.append(_err("missing", "body.messages", "Field required", body))
    for name, kind in _FIELD_TYPES.items():
        if name in body and body[name] is not None:
            value, error = _coerce(kind, name, body[name])
            if error:
                errors.append(error)
            else:
                values[name] = value
    errors += _stop_errors(body.get("stop"))
    for i, message in enumerate(values.get("messages") or []):
        if not isinstance(message, dict):
            errors.append(_err("dict_type", f"body.messages.{i}", "Input should be a valid dictionary", message))
        elif "role" not in message:
            errors.append(_err("missing", f"body.messages.{i}.role", "Field required", message))
    for i, tool in enumerate(values.get("tools") or []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict):
            errors.append(_err("missing", f"body.tools.{i}.function", "Field required", tool))
        elif not isinstance(fn.get("name"), str):
            errors.append(_err("missing", f"body.tools.{i}.function.name", "Field required", fn))
    rf = values.get("response_format")
    if rf is not None and rf.get("type") not in ("text", "json_object", "json_schema", "structural_tag"):
        errors += _response_format_type_errors(rf)
    if errors:
        raise pydantic_error(errors)
    return values


def _stop_errors(stop: Any) -> list[dict]:
    """`stop: str | list[str]` (at most 4): pydantic reports the failed str branch, then the list's problems."""
    if stop is None or isinstance(stop, str):
        return []
    first = _err("string_type", "body.stop", "Input should be a valid string", stop)
    if not isinstance(stop, list):
        return [first, _err("list_type", "body.stop", "Input should be a valid list", stop)]
    errors = [_err("string_type", f"body.stop.{i}", "Input should be a valid string", item)
              for i, item in enumerate(stop) if not isinstance(item, str)]
    if len(stop) > 4:
        errors.append({**_err("too_long", "body.stop", f"List should have at most 4 items after validation, "
                                                       f"not {len(stop)}", stop),
                       "ctx": {"field_type": "List", "max_length": 4, "actual_length": len(stop)}})
    return [first, *errors] if errors else []


def _response_format_type_errors(rf: dict) -> list[dict]:
    """The six errors of vLLM's response_format union when `type` fits no member."""
    kind = rf.get("type")
    loc = "body.response_format.type"

    def literal(expected: str) -> dict:
        return {**_err("literal_error", loc, f"Input should be {expected}", kind), "ctx": {"expected": expected}}

    structural = literal("'structural_tag'")
    return [
        literal("'text', 'json_object' or 'json_schema'"),
        structural,
        _err("missing", "body.response_format.format", "Field required", rf),
        structural,
        _err("missing", "body.response_format.structures", "Field required", rf),
        _err("missing", "body.response_format.triggers", "Field required", rf),
    ]


# --------------------------------------------------------------------------- vLLM's "before" validators (raw body)

_CORRECT_NAMED = 'Correct usage: `{"type": "function", "function": {"name": "my_function"}}`'


def _check_tool_usage(body: dict) -> None:
    tools = body.get("tools")
    if tools == []:
        raise bad_value("`tools` must not be an empty array. Either provide at least one tool or omit the field "
                        "entirely.", "tools")
    choice = body.get("tool_choice")
    if choice is None or choice == "none":
        return
    if tools is None:
        raise bad_value("When using `tool_choice`, `tools` must be set.", "tool_choice")
    if choice not in ("auto", "required") and not isinstance(choice, dict):
        raise bad_value(f'Invalid value for `tool_choice`: {choice}! Only named tools, "none", "auto" or '
                        '"required" are supported.', "tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        if not isinstance(function, dict):
            raise bad_value(f"Invalid value for `function`: `{function}` in `tool_choice`! {_CORRECT_NAMED}",
                            "tool_choice.function")
        if "name" not in function:
            raise bad_value(f"Expected field `name` in `function` in `tool_choice`! {_CORRECT_NAMED}",
                            "tool_choice.function.name")
        wanted = function["name"]
        if not isinstance(wanted, str) or not wanted:
            raise bad_value(f"Invalid `name` in `function`: `{wanted}` in `tool_choice`! {_CORRECT_NAMED}",
                            "tool_choice.function.name")
        names = [t.get("function", {}).get("name") for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
        if wanted not in names:
            raise bad_value("The tool specified in `tool_choice` does not match any of the specified `tools`",
                            "tool_choice")


def _check_structured_outputs_count(body: dict) -> None:
    so = body.get("structured_outputs")
    if not isinstance(so, dict):
        return
    count = sum(so.get(k) is not None for k in ("json", "regex", "choice"))
    if count > 1:
        raise bad_request("You can only use one kind of constraints for structured outputs ('json', 'regex' or 'choice').")
    choice = body.get("tool_choice", "auto" if body.get("tools") else "none")
    if count and choice not in ("none", "auto", "required"):
        raise bad_request("You can only either use constraints for structured outputs or tools, not both.")


def _check_logprobs(body: dict) -> None:
    top = body.get("top_logprobs")
    if top is None:
        return
    if isinstance(top, bool) or not isinstance(top, (int, float)):
        raise bad_value("`top_logprobs` must be an integer.", "top_logprobs", top)
    if top < 0 and top != -1:
        raise bad_value("`top_logprobs` must be a positive value or -1.", "top_logprobs", top)
    if (top == -1 or top > 0) and not body.get("logprobs"):
        raise bad_value("when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs")


def _sampling(req: ChatRequest, values: dict) -> None:
    """SamplingParams: logit_bias keys first, then _verify_args in vLLM's order, then the
    checks against the model (logprobs, vocabulary). max_tokens is clamped to what the
    context leaves, as vLLM does, before min_tokens is compared with it."""
    bias = values.get("logit_bias") or {}
    bad_keys = [k for k in bias if not _is_int(k)]
    if bad_keys:
        raise bad_value(f"logit_bias contains key(s) that cannot be converted to integer token IDs: {bad_keys}",
                        "logit_bias", bad_keys)
    n = values.get("n", 1)
    if n < 1:
        raise bad_request(f"n must be at least 1, got {n}.")
    if n > MAX_N:
        raise bad_value(f"n must be at most {MAX_N} in the simulator, got {n}.", "n", n)
    for name in ("presence_penalty", "frequency_penalty"):
        value = values.get(name)
        if value is not None and not -2 <= value <= 2:
            raise bad_request(f"{name} must be in [-2, 2], got {value}.")
    rep = values.get("repetition_penalty")
    if rep is not None and rep <= 0:
        raise bad_request(f"repetition_penalty must be greater than zero, got {rep}.")
    t = values.get("temperature")
    if t is not None and t < 0:
        raise bad_value(f"temperature must be non-negative, got {t}.", "temperature", t)
    if t is not None and t > 2:
        raise bad_value(f"temperature must be in [0, 2], got {t}.", "temperature", t)
    top_p = values.get("top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise bad_value(f"top_p must be in (0, 1], got {top_p}.", "top_p", top_p)
    top_k = values.get("top_k")
    if top_k is not None and top_k < -1:
        raise bad_request(f"top_k must be 0 (disable), or at least 1, got {top_k}.")
    min_p = values.get("min_p")
    if min_p is not None and not 0 <= min_p <= 1:
        raise bad_request(f"min_p must be in [0, 1], got {min_p}.")
    _max_tokens(req, values)
    stop = req.body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not s for s in stops):
        raise bad_request("stop cannot contain an empty string.")
    if values.get("logprobs"):
        k = values.get("top_logprobs") or 0
        k = req.spec.vocab if k == -1 else k
        if k > MAX_LOGPROBS:
            raise bad_value(f"Requested sample logprobs of {k}, which is greater than max allowed: {MAX_LOGPROBS}",
                            "logprobs", k)
        req.logprobs, req.top_logprobs = True, k
    outside = [int(k) for k in bias if not 0 <= int(k) < req.spec.vocab]
    if outside:
        raise bad_value(f"token_id(s) {outside} in logit_bias contain out-of-vocab token ids. "
                        f"Vocabulary size: {req.spec.vocab}", "logit_bias", outside)
    req.n = n
    req.temperature = t
    req.seed = values.get("seed")
    req.stream = bool(values.get("stream"))
    options = values.get("stream_options") or {}
    req.include_usage = bool(options.get("include_usage")) and req.stream
    req.continuous_usage = req.include_usage and bool(options.get("continuous_usage_stats"))
    req.stop = stops
    req.include_stop = bool(values.get("include_stop_str_in_output"))
    req.ignore_eos = bool(values.get("ignore_eos"))
    req.skip_special_tokens = values.get("skip_special_tokens", True)


def _is_int(key: str) -> bool:
    try:
        int(key)
    except ValueError:
        return False
    return True


def _tools(req: ChatRequest, values: dict, body: dict) -> None:
    """tool_choice, already checked against the tools by _check_tool_usage."""
    tools = [t for t in values.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if choice is None:
        choice = "auto" if tools else "none"
    if isinstance(choice, dict):
        choice = {"name": choice["function"]["name"]}
    elif choice == "auto" and not req.spec.auto_tools and "tool_choice" in body:
        raise bad_value('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set', "tool_choice")
    elif choice == "auto" and not req.spec.auto_tools:
        choice = "none"  # vLLM's default without --enable-auto-tool-choice
    req.tools = tools
    req.tool_choice = choice
    req.parallel_tool_calls = values.get("parallel_tool_calls", True)


def _structured(req: ChatRequest, values: dict, body: dict) -> None:
    so = values.get("structured_outputs")
    if so:
        kinds = [k for k in ("json", "regex", "choice", "grammar", "json_object", "structural_tag") if so.get(k) not in (None, False)]
        if len(kinds) > 1:  # json/regex/choice together were refused earlier, with other words
            raise bad_request("You can only use one kind of structured outputs constraint but multiple are "
                              f"specified: {so}")
        if kinds:
            kind = kinds[0]
            value = so[kind]
            if kind == "json" and isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise bad_value("structured_outputs.json must be a JSON schema", "structured_outputs") from None
            if kind == "choice" and (not isinstance(value, list) or not value):
                raise bad_value("structured_outputs.choice must be a non-empty list of strings", "structured_outputs")
            req.structured = (kind, value)
    rf = values.get("response_format")
    if req.structured is None and rf:
        kind = rf.get("type")
        if kind == "json_object":
            req.structured = ("json_object", None)
        elif kind == "json_schema":
            js = rf.get("json_schema")
            if not isinstance(js, dict):
                raise pydantic_error([_err("missing", "body.response_format.json_schema", "Field required", rf)])
            schema = js.get("schema", js.get("json_schema", {}))
            req.structured = ("json", schema if schema is not None else {})
        elif kind == "structural_tag":
            req.structured = ("structural_tag", rf)
    if req.structured is None:
        return
    # Dry run: a constraint the simulator cannot satisfy is the request's fault, as in vLLM.
    kind, value = req.structured
    param = "structured_outputs" if so else "response_format"
    try:
        if kind == "json":
            constraints.schema_example(value)
        elif kind == "regex":
            constraints.regex_example(str(value))
        elif kind == "grammar":
            constraints.grammar_example(str(value))
        elif kind == "structural_tag":
            constraints.structural_tag_example(value)
    except constraints.ConstraintError as exc:
        raise SimError(400, f"Invalid {kind} constraint: {exc}", "BadRequestError", param) from None
    except RecursionError:
        raise SimError(400, f"Invalid {kind} constraint: too deeply nested for the simulator", "BadRequestError", param) from None


def _output_limit(req: ChatRequest, values: dict) -> None:
    """max_tokens / max_completion_tokens may not exceed the context (checked before the prompt)."""
    limit = req.spec.max_model_len
    name = "max_completion_tokens" if values.get("max_completion_tokens") is not None else "max_tokens"
    requested = values.get(name)
    if requested is not None and requested > limit:
        raise bad_value(f"{name}={requested} cannot be greater than max_model_len={limit}. "
                        "Please request fewer output tokens.", name, requested)


def _prompt_length(req: ChatRequest) -> None:
    limit = req.spec.max_model_len
    if req.prompt_tokens > limit:
        shown = limit + 1  # vLLM's tokenizer stops counting there
        raise bad_value(
            f"This model's maximum context length is {limit} tokens. However, your prompt contains at least "
            f"{shown} input tokens, which exceeds this limit even without any output tokens. Please reduce the "
            "length of the input prompt.", "input_tokens", shown)


def _max_tokens(req: ChatRequest, values: dict) -> None:
    """The output budget: what was asked for, at most what the context leaves (vLLM clamps silently)."""
    requested = values.get("max_completion_tokens")
    if requested is None:
        requested = values.get("max_tokens")
    room = req.spec.max_model_len - req.prompt_tokens
    budget = room if requested is None else min(requested, room)
    if budget < 1:
        raise bad_value(f"max_tokens must be at least 1, got {budget}.", "max_tokens", budget)
    min_tokens = values.get("min_tokens", 0)
    if min_tokens < 0:
        raise bad_request(f"min_tokens must be greater than or equal to 0, got {min_tokens}.")
    if min_tokens > budget:
        raise bad_request(f"min_tokens must be less than or equal to max_tokens={budget}, got {min_tokens}.")
    req.max_tokens = budget
    req.min_tokens = min_tokens
