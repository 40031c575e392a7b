"""A request body as cURL (the pages' style), Python (openai SDK) or JSON,
and cURL back into model + messages + option values.

Exports never contain a real API key: cURL reads `$HEXGRID_API_KEY`, Python
reads `os.environ["HEXGRID_API_KEY"]`.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from .options import OPTIONS_BY_NAME
from .urls import normalize_base_url

__all__ = ["CurlParseError", "ImportedRequest", "parse_curl", "to_curl", "to_json", "to_python"]

KEY_ENV = "HEXGRID_API_KEY"


def to_json(body: dict) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False)


def header_env(name: str) -> str:
    """The environment variable an export reads a secret header's value from."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def to_curl(base_url: str, body: dict, *, key_env: str | None = KEY_ENV,
            headers: list[tuple[str, str, bool]] = ()) -> str:
    """The request as the pages write it: `curl -X POST "$URL/chat/completions" \\ ...`.

    `base_url` may be a shell variable ("$QWEN_BASE_URL") to keep it out of
    the export. `key_env=None` leaves out the Authorization header. `headers` are
    (name, value, secret): a secret's value is read from an environment variable.
    """
    url = _url_for_export(base_url) + "/chat/completions"
    lines = [f"curl {'-N ' if body.get('stream') else ''}-X POST {_quote_url(url)}"]
    if key_env:
        lines.append(f'-H "Authorization: Bearer ${key_env}"')
    for name, value, secret in headers:
        lines.append(f'-H "{name}: ${header_env(name)}"' if secret else f"-H {shlex.quote(f'{name}: {value}')}")
    lines.append('-H "Content-Type: application/json"')
    data = to_json(body).replace("'", "'\\''").replace("\n", "\n  ")
    lines.append(f"-d '{data}'")
    return " \\\n  ".join(lines)


def to_python(base_url: str, body: dict, *, key_env: str = KEY_ENV,
              headers: list[tuple[str, str, bool]] = ()) -> str:
    """The request with the openai SDK; vLLM extensions go in `extra_body`
    because the SDK only accepts OpenAI's own parameters as arguments."""
    arguments = {}
    extra = {}
    for key, value in body.items():
        option = OPTIONS_BY_NAME.get(key)
        if key in ("model", "messages") or (option is not None and not option.vllm_extension):
            arguments[key] = value
        else:
            extra[key] = value
    if extra:
        arguments["extra_body"] = extra
    call = "".join(f"    {key}={_py_literal(value, 1)},\n" for key, value in arguments.items())
    if body.get("stream"):
        use = (
            "for chunk in stream:\n"
            "    if chunk.choices and chunk.choices[0].delta.content:\n"
            '        print(chunk.choices[0].delta.content, end="", flush=True)\n'
            "print()\n"
        )
        target = "stream"
    else:
        use = "print(completion.choices[0].message.content)\n"
        target = "completion"
    return (
        "import os\n\n"
        "from openai import OpenAI\n\n"
        "client = OpenAI(\n"
        f"    base_url={_py_literal(_url_for_export(base_url), 1)},\n"
        f"    api_key=os.environ[{_py_literal(key_env, 1)}],\n"
        + _py_headers(headers)
        + ")\n\n"
        f"{target} = client.chat.completions.create(\n{call})\n{use}"
    )


def _py_headers(headers) -> str:
    if not headers:
        return ""
    items = "".join(
        f"        {_py_literal(name, 2)}: "
        + (f"os.environ[{_py_literal(header_env(name), 2)}]" if secret else _py_literal(value, 2))
        + ",\n"
        for name, value, secret in headers
    )
    return f"    default_headers={{\n{items}    }},\n"


def _url_for_export(base_url: str) -> str:
    return base_url.rstrip("/") if base_url.startswith("$") else normalize_base_url(base_url)


def _quote_url(url: str) -> str:
    """Double quotes as on the pages (so a leading $VARIABLE expands); single
    quotes when the URL holds characters a shell would interpret."""
    rest = url[1:] if url.startswith("$") else url
    if re.search(r'[$`"\\!]', rest):
        return shlex.quote(url)
    return f'"{url}"'


def _py_literal(value, level: int) -> str:
    """Python source for a JSON value, laid out like json.dumps(indent=4)."""
    pad, inner = "    " * level, "    " * (level + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = "".join(f"{inner}{_py_literal(k, 0)}: {_py_literal(v, level + 1)},\n" for k, v in value.items())
        return "{\n" + items + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = "".join(f"{inner}{_py_literal(v, level + 1)},\n" for v in value)
        return "[\n" + items + pad + "]"
    if value is None or isinstance(value, bool):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)  # strings and numbers: valid Python too


class CurlParseError(ValueError):
    """The text is not a cURL command we can turn into a chat request."""


@dataclass(frozen=True)
class ImportedRequest:
    """What a pasted cURL command asks for.

    base_url_hint: the URL without "/chat/completions", normalised when it is
    a real URL, else as written ("$QWEN_BASE_URL"): a hint for picking the
    endpoint, never used to make a request. model: as written, with `$VARS`
    replaced when the text exports them. values: registry options; unknown:
    other body keys (put them in extra_body to send them anyway).
    """

    base_url_hint: str | None
    model: str | None
    messages: list
    values: dict = field(default_factory=dict)
    unknown: dict = field(default_factory=dict)
    # The model is a placeholder of the pages ($QWEN_MODEL left unset, ...), not a model ID:
    # any model of `family` will do (None: the generic page's, any model at all).
    model_placeholder: bool = False
    family: str | None = None


_DATA_FLAGS = {"-d", "--data", "--data-raw", "--data-binary", "--data-ascii", "--json"}
_VALUE_FLAGS = {
    "-X", "--request", "-H", "--header", "--url", "-o", "--output", "-m", "--max-time",
    "--connect-timeout", "-u", "--user", "-A", "--user-agent", "--cacert", "-w", "--write-out",
    "-e", "--referer", "-b", "--cookie", "--retry",
}
_BARE_FLAGS = set("NsSkvLifgG#") | {
    "--no-buffer", "--silent", "--show-error", "--insecure", "--verbose", "--location",
    "--include", "--fail", "--fail-with-body", "--compressed", "--http1.1", "--http2",
}
# Each model page sets its model in a shell variable (`export QWEN_MODEL=...`) and writes
# "'"$QWEN_MODEL"'" in its examples; the generic page writes $MODEL or this literal text.
PAGE_MODEL_VARIABLES = {"QWEN_MODEL": "qwen", "LLAMA_MODEL": "llama", "MISTRAL_MODEL": "mistral", "GEMMA_MODEL": "gemma"}
GENERIC_MODEL_PLACEHOLDER = "your-model-or-deployment-id"
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _no_constant(name: str):
    """NaN and Infinity are not JSON (Python's parser accepts them; PostgreSQL and vLLM do not)."""
    raise ValueError(f"{name} is not a JSON number")


def parse_curl(text: str, variables: dict[str, str] | None = None) -> ImportedRequest:
    """Turn a cURL command (as on the pages) into model, messages and values.

    Handles `\\` line continuations, single and double quotes (including the
    pages' `"'"$QWEN_MODEL"'"` splice), -d/--data/--data-raw/--json, -H, -X,
    and shell variables in the URL and model, replaced from `variables` and
    from `export NAME="value"` lines in the text. The Authorization header
    is ignored on purpose: keys are never imported.
    """
    env = dict(_assignments(text))
    env.update(variables or {})
    start = re.search(r"(^|\s)curl\s", text)
    if start is None:
        raise CurlParseError("No curl command found.")
    command = re.sub(r"\\\r?\n", " ", text[start.end():])
    try:
        tokens = shlex.split(command, comments=False)
    except ValueError as error:
        raise CurlParseError(f"Could not split the command: {error}.") from None
    url, data = _scan(tokens)
    if data is None:
        raise CurlParseError("The command sends no JSON body (-d or --data).")
    try:
        body = json.loads(data, parse_constant=_no_constant)
    except ValueError as error:
        raise CurlParseError(f"The -d body is not valid JSON: {error}.") from None
    if not isinstance(body, dict):
        raise CurlParseError("The -d body must be a JSON object.")
    model = body.pop("model", None)
    messages = body.pop("messages", None)
    if not isinstance(messages, list):
        raise CurlParseError('The body has no "messages" list.')
    values = {k: v for k, v in body.items() if k in OPTIONS_BY_NAME}
    unknown = {k: v for k, v in body.items() if k not in OPTIONS_BY_NAME}
    model = _expand(model, env) if isinstance(model, str) else model
    placeholder, family = _model_placeholder(model)
    return ImportedRequest(
        base_url_hint=_base_url_hint(url, env),
        model=model,
        messages=messages,
        values=values,
        unknown=unknown,
        model_placeholder=placeholder,
        family=family,
    )


def _model_placeholder(model) -> tuple[bool, str | None]:
    """(is the model a placeholder, the family it stands for): a shell variable the text did not
    set ($QWEN_MODEL: Qwen; $MODEL or any other: any family), or the generic page's literal one."""
    if model == GENERIC_MODEL_PLACEHOLDER:
        return True, None
    match = _VARIABLE.fullmatch(model) if isinstance(model, str) else None
    if match is None:
        return False, None
    return True, PAGE_MODEL_VARIABLES.get(match.group(1) or match.group(2))


def _scan(tokens: list[str]) -> tuple[str | None, str | None]:
    """The URL and the data of a curl command's arguments."""
    url = data = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            name, eq, inline = token.partition("=")
        elif len(token) > 2 and token[:2] in _DATA_FLAGS | _VALUE_FLAGS:
            name, eq, inline = token[:2], "=", token[2:]  # -XPOST
        else:
            name, eq, inline = token, "", ""
        takes_value = name in _DATA_FLAGS or name in _VALUE_FLAGS
        if takes_value:
            if eq:
                value = inline
            elif i + 1 < len(tokens):
                i += 1
                value = tokens[i]
            else:
                raise CurlParseError(f"{name} needs a value.")
            if name in _DATA_FLAGS:
                if data is not None:
                    raise CurlParseError("Only one -d body is supported.")
                if value.startswith("@") and name != "--data-raw":
                    raise CurlParseError("Bodies read from files (-d @file) cannot be imported; paste the JSON.")
                data = value
            elif name in ("-X", "--request") and value.upper() != "POST":
                raise CurlParseError(f"Chat completions are POST requests, not {value}.")
            elif name == "--url":
                url = value
        elif token.startswith("-") and len(token) > 1:
            flags = {token} if token.startswith("--") else set(token[1:])
            if not flags <= _BARE_FLAGS:
                raise CurlParseError(f"Unsupported curl option {token}.")
        elif url is None:
            url = token
        i += 1
    return url, data


def _assignments(text: str):
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match:
            try:
                words = shlex.split(match.group(2))
            except ValueError:
                continue
            yield match.group(1), " ".join(words)


def _expand(text: str, env: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)


def _base_url_hint(url: str | None, env: dict[str, str]) -> str | None:
    if url is None:
        return None
    url = _expand(url, env).rstrip("/").removesuffix("/chat/completions")
    try:
        return normalize_base_url(url)
    except ValueError:
        return url
