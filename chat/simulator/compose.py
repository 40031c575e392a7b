"""What the simulated model "generates" for one choice.

`generate()` returns the generated token sequence, each token tagged with the
channel it belongs to, already cut by max_tokens or a stop string, plus the
tool calls it made and the finish reason. Rendering (JSON or SSE) is in
render.py; both the streamed and the non-streamed answer come from the same
`Generation`, so they always agree.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import string
from dataclasses import dataclass, field

from . import schema as constraints
from .tokens import tokenize
from .validate import ChatRequest, message_parts

# Token channels.
REASONING = "R"  # reasoning text
CONTENT = "C"  # answer text
MARKER = "M"  # <think> / </think>: hidden by a reasoning parser, counted in usage
TOOL_HEAD = "TH"  # '<tool_call>\n{"name": "get_weather", "arguments": '
TOOL_ARGS = "TA"  # the arguments JSON, streamed in fragments
TOOL_TAIL = "TT"  # '}\n</tool_call>'
EOS = "EOS"


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class Generation:
    tokens: list[tuple[str, str, int]]  # (channel, text, tool call index or -1), EOS included when reached
    calls: list[ToolCall]
    finish_reason: str
    stop_reason: str | None
    completion_tokens: int
    reasoning_tokens: int
    cut: tuple[int, str] | None = None  # (token index, visible text) when a stop string cut a token
    visible: list[str] = field(default_factory=list)  # token texts as shown (cut applied)


# --------------------------------------------------------------------------- reading the request

_STOP_WORDS = {
    "the", "a", "an", "and", "or", "of", "to", "in", "on", "at", "for", "is", "are", "be", "it", "this",
    "that", "with", "what", "whats", "which", "who", "how", "me", "my", "you", "your", "get", "set", "from",
    "use", "using", "tool", "tools", "function", "please", "can", "could", "would", "should", "give", "tell",
    "current", "find", "check", "look", "today", "now", "some", "any", "about", "into", "i", "do", "does",
    "create", "make", "generate", "write", "list", "short", "one", "two", "three", "four", "five", "idea",
    "ideas", "json", "object", "describe", "return", "only", "valid", "explain", "brief", "briefly",
    "sentence", "as", "like", "need", "want",
}
_NOT_ENTITIES = {
    "What", "Whats", "Which", "Who", "Where", "When", "Why", "How", "Is", "Are", "Can", "Could", "Would",
    "Should", "Please", "Find", "Use", "Give", "Create", "Describe", "Explain", "Tell", "Show", "Get", "Check",
    "Look", "I", "The", "A", "An", "And", "Or", "In", "On", "At", "For", "Of", "To", "Hello", "Hi", "Hey",
    "Thanks", "Thank", "Return", "Classify", "Pick", "Call", "JSON", "AI", "Do", "Does", "Today", "Now", "Yes",
    "No", "It", "My", "Me", "You", "We", "Keep", "Provide", "Solve", "Compare", "Write", "Make", "List", "Let",
    "Summarize", "Translate", "Answer", "Also", "Then", "Both", "Generate", "Say", "Send",
}
_TIMEZONES = {
    "paris": "Europe/Paris", "tokyo": "Asia/Tokyo", "london": "Europe/London", "berlin": "Europe/Berlin",
    "new york": "America/New_York", "san francisco": "America/Los_Angeles", "hangzhou": "Asia/Shanghai",
    "beijing": "Asia/Shanghai", "shanghai": "Asia/Shanghai", "sydney": "Australia/Sydney",
    "bengaluru": "Asia/Kolkata", "madrid": "Europe/Madrid", "rome": "Europe/Rome",
}
_PLACE_KEYS = {"city", "location", "place", "town", "country", "region", "destination", "address", "where", "locality"}
_TEXT_KEYS = {"query", "q", "text", "prompt", "question", "input", "search", "message", "content", "topic"}
_NAME_HINTS = {"name": "Alice", "first_name": "Alice", "last_name": "Smith", "username": "alice",
               "title": "Simulated title", "color": "green", "colour": "green", "language": "English"}


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", text)]


def _salient(text: str) -> list[str]:
    return [w for w in _words(text) if w not in _STOP_WORDS and len(w) > 2]


def entities(text: str, common: set[str] = frozenset()) -> list[str]:
    """Capitalised names the user mentioned ("Paris", "San Francisco"). A
    capitalised word that opens a sentence counts only if it is not a common
    word (`common`, e.g. the tools' vocabulary)."""
    found = []
    for match in re.finditer(r"\b[A-Z][a-zA-Z\-]+(?:\s+[A-Z][a-zA-Z\-]+)*", text):
        words = [w for w in match.group().split() if w not in _NOT_ENTITIES]
        before = text[: match.start()].rstrip()
        if words and (not before or before[-1] in ".!?:") and words[0] == match.group().split()[0]:
            if words[0].lower() in common or words[0].lower() in _STOP_WORDS:
                words = words[1:]
        if words and not (len(words) == 1 and match.start() > 0 and text[match.start() - 1] == "'"):
            name = " ".join(words)
            if name not in found:
                found.append(name)
    return found


def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def last_user_text(req: ChatRequest) -> str:
    for message in reversed(req.messages):
        if message.get("role") == "user":
            return message_parts(message.get("content"))[0]
    return ""


def _ends_with_tool_results(req: ChatRequest) -> list[dict]:
    results = []
    for message in reversed(req.messages):
        if message.get("role") != "tool":
            break
        results.append(message)
    return list(reversed(results))


# --------------------------------------------------------------------------- tool calls

def _tool_score(tool: dict, text: str) -> tuple[int, int]:
    fn = tool["function"]
    name = fn["name"]
    said = set(_salient(text))
    name_words = {w for w in re.split(r"[_\-\s]+|(?<=[a-z])(?=[A-Z])", name.lower()) if w and w not in _STOP_WORDS}
    desc_words = set(_salient(str(fn.get("description") or "")))
    by_name = len(name_words & said) + (5 if name.lower() in text.lower() else 0)
    return by_name, by_name * 3 + len(desc_words & said)


def _pick_tools(req: ChatRequest, text: str) -> list[dict]:
    tools = req.tools
    if req.named_tool:
        return [t for t in tools if t["function"]["name"] == req.named_tool][:1]
    scored = sorted(((_tool_score(t, text), i, t) for i, t in enumerate(tools)), key=lambda x: (-x[0][1], x[1]))
    matched = [t for (by_name, total), _, t in scored if total > 0]
    if not matched:
        return [tools[0]] if req.tool_choice == "required" else []
    by_name = [t for (name_hits, _total), _, t in scored if name_hits > 0]
    if len(by_name) > 1 and req.parallel_tool_calls:
        return by_name
    return matched[:1]


def _call_id(req: ChatRequest) -> str:
    if req.spec.family == "mistral":  # Mistral's tokenizer wants 9 alphanumeric characters
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))
    return f"chatcmpl-tool-{secrets.token_hex(8)}"


def _argument_hint(text: str, place: str | None):
    said = text.lower()

    def hint(key, schema):
        if key is None:
            return None
        k = key.lower()
        enum = schema.get("enum") if isinstance(schema, dict) else None
        if enum:
            return next((v for v in enum if isinstance(v, str) and v.lower() in said), None)
        if k in _PLACE_KEYS or "city" in k or "location" in k:
            return place or "Paris"
        if "timezone" in k or k in ("tz", "time_zone"):
            return _TIMEZONES.get((place or "").lower(), "UTC")
        if k in _TEXT_KEYS:
            return _snippet(text, 80)
        return None

    return hint


def _arguments(tool: dict, text: str, place: str | None) -> str:
    params = tool["function"].get("parameters") or {"type": "object", "properties": {}}
    hint = _argument_hint(text, place)
    # Optional properties appear only when the prompt mentions them.
    props = params.get("properties") or {}
    required = set(params.get("required") or [])
    said = text.lower()
    keep = {
        name for name, sub in props.items()
        if name in required or name.lower() in said
        or (isinstance(sub, dict) and any(isinstance(v, str) and v.lower() in said for v in sub.get("enum", [])))
    }
    trimmed = {**params, "properties": {k: v for k, v in props.items() if k in keep}} if props else params
    try:
        value = constraints.schema_example(trimmed, hint)
    except constraints.ConstraintError:
        value = {}
    return json.dumps(value, ensure_ascii=False)


def plan_tool_calls(req: ChatRequest, text: str) -> list[tuple[str, str]]:
    """[(name, arguments JSON)] the model calls, or [] for a text answer."""
    if req.tool_choice == "none" or not req.tools or _ends_with_tool_results(req):
        return []
    if req.tool_choice == "auto" and not text.strip():
        return []
    chosen = _pick_tools(req, text)
    if not chosen:
        return []
    vocabulary = {w for t in req.tools for w in _words(t["function"]["name"].replace("_", " ") + " "
                                                      + str(t["function"].get("description") or ""))}
    places = entities(text, vocabulary)
    single = req.named_tool is not None or not req.parallel_tool_calls
    if len(chosen) > 1 and not single:
        return [(t["function"]["name"], _arguments(t, text, places[i] if i < len(places) else (places[0] if places else None)))
                for i, t in enumerate(chosen)]
    tool = chosen[0]
    if len(places) > 1 and not single:
        return [(tool["function"]["name"], _arguments(tool, text, place)) for place in places[:4]]
    return [(tool["function"]["name"], _arguments(tool, text, places[0] if places else None))]


# --------------------------------------------------------------------------- text

_OPENERS = ("Hello!", "Hi!", "Sure.", "Okay.", "Got it.", "Certainly.", "Alright.", "Here you go.")


def _options_summary(req: ChatRequest) -> str:
    body = req.body
    bits = [f"{name}={body[name]}" for name in (
        "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
        "repetition_penalty") if body.get(name) is not None]
    if req.stop:
        bits.append(f"stop={req.stop}")
    return ", ".join(bits)


def _describe_images(urls: list[str]) -> str:
    shown = []
    for url in urls[:3]:
        if url.startswith("data:"):
            shown.append(f"{url.split(';', 1)[0][5:] or 'inline'} data URL")
        else:
            shown.append(_snippet(url, 60))
    return ", ".join(shown)


def _tool_result_answer(req: ChatRequest, results: list[dict]) -> str:
    calls: dict[str, dict] = {}
    for message in req.messages:
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                calls[call.get("id", "")] = call.get("function") or {}
    parts = []
    for message in results:
        fn = calls.get(message.get("tool_call_id", ""), {})
        name = fn.get("name") or message.get("name") or "tool"
        raw, _, _ = message_parts(message.get("content"))
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and data:
            summary = ", ".join(f"{k} {v}" for k, v in list(data.items())[:6])
        else:
            summary = _snippet(raw, 160) or "nothing"
        args = fn.get("arguments")
        try:
            where = " for " + ", ".join(str(v) for v in json.loads(args).values()) if args else ""
        except (ValueError, AttributeError):
            where = ""
        parts.append(f"The {name} result{where}: {summary}.")
    return " ".join(parts) + " (Simulated answer that uses the tool output.)"


def answer_text(req: ChatRequest, rng: random.Random) -> str:
    results = _ends_with_tool_results(req)
    if results:
        return _tool_result_answer(req, results)
    said = last_user_text(req)
    opener = _OPENERS[0] if req.temperature == 0 else rng.choice(_OPENERS)
    if said.strip():
        text = f"{opener} This is a simulated reply from {req.model} to “{_snippet(said)}”."
    else:
        text = f"{opener} This is a simulated reply from {req.model}; there was no user message."
    turns = sum(1 for m in req.messages if m.get("role") == "user")
    if turns > 1:
        text += f" That is user message {turns} of this conversation."
    if req.images:
        text += f" I got {len(req.images)} image(s) ({_describe_images(req.images)}) but cannot see them."
    if req.tools:
        names = ", ".join(t["function"]["name"] for t in req.tools)
        why = "tool_choice is none" if req.tool_choice == "none" else "none fits"
        text += f" Tools offered: {names} ({why})."
    options = _options_summary(req)
    if options:
        text += f" Sampling: {options}."
    if req.ignored_fields:
        text += f" Ignored fields: {', '.join(req.ignored_fields)}."
    return text


def reasoning_text(req: ChatRequest, calls: list[tuple[str, str]]) -> str:
    if _ends_with_tool_results(req):
        body = "The tool returned a result. I will summarize it."
    elif calls:
        names = " and ".join(dict.fromkeys(name for name, _ in calls))
        body = f"The {names} tool can answer this. I should call it."
    elif req.structured:
        body = "The user wants structured output. I will match the format."
    else:
        said = last_user_text(req)
        body = (f"The user wrote “{_snippet(said, 40)}”. " if said.strip() else "") + "I will reply briefly."
    return f"\n{body}\n" if req.spec.family == "qwen" else body


def structured_text(req: ChatRequest, rng: random.Random) -> str:
    kind, value = req.structured
    said = last_user_text(req)
    words = _salient(said)
    places = entities(said)

    def hint(key, schema):
        if key is None:
            return None
        k = key.lower()
        enum = schema.get("enum")
        if enum:
            return next((v for v in enum if isinstance(v, str) and v.lower() in said.lower()), None)
        if k in _NAME_HINTS:
            return _NAME_HINTS[k]
        if k in _PLACE_KEYS and places:
            return places[0]
        if schema.get("type") == "string" or "string" in (schema.get("type") or []):
            noun = k.replace("_", " ")
            topic = " ".join(w for w in words if w not in noun.split())
            return " ".join(topic.split()[:3] + [noun]) if topic else f"simulated {noun}"
        return None

    if kind == "json_object":
        return json.dumps({"answer": _snippet(said, 80) or "simulated", "simulated": True, "model": req.model},
                          ensure_ascii=False)
    if kind == "json":
        return json.dumps(constraints.schema_example(value, hint), ensure_ascii=False)
    if kind == "regex":
        return constraints.regex_example(str(value))
    if kind == "choice":
        options = [str(v) for v in value]
        mentioned = [o for o in options if o.lower() in said.lower()]
        return mentioned[0] if mentioned else (options[0] if req.temperature == 0 else rng.choice(options))

    def prefer(options: list[str]) -> int:
        for i, option in enumerate(options):
            if option and option.lower() in said.lower():
                return i
        return 0 if req.temperature == 0 else rng.randrange(len(options))

    if kind == "grammar":
        return constraints.grammar_example(str(value), prefer)
    if kind == "structural_tag":
        return constraints.structural_tag_example(value, hint, "Here is the structured call: ")
    raise AssertionError(kind)


FILLER = " This is simulated filler text."


# --------------------------------------------------------------------------- generation

def generate(req: ChatRequest, index: int) -> Generation:
    rng = req.rng(index)
    spec = req.spec
    said = last_user_text(req)
    calls = plan_tool_calls(req, said)

    tokens: list[tuple[str, str, int]] = []
    if req.thinking:
        tokens.append((MARKER, spec.think_open, -1))
        tokens += [(REASONING, t, -1) for t in tokenize(reasoning_text(req, calls))]
        tokens.append((MARKER, spec.think_close, -1))
        constrained = req.structured or req.tool_choice == "required" or req.named_tool
        if spec.family == "qwen" and not constrained:
            tokens.append((CONTENT, "\n\n", -1))  # a grammar, once </think> is out, allows no free text
    expected: list[int] = []  # tokens per tool call, to tell whole calls from cut ones
    if calls:
        for i, (name, arguments) in enumerate(calls):
            head = ("\n" if i else "") + '<tool_call>\n{"name": ' + json.dumps(name) + ', "arguments": '
            before = len(tokens)
            tokens += [(TOOL_HEAD, t, i) for t in tokenize(head)]
            tokens += [(TOOL_ARGS, t, i) for t in tokenize(arguments)]
            tokens += [(TOOL_TAIL, t, i) for t in tokenize("}\n</tool_call>")]
            expected.append(len(tokens) - before)
    else:
        text = structured_text(req, rng) if req.structured else answer_text(req, rng)
        tokens += [(CONTENT, t, -1) for t in tokenize(text)]

    limit = req.max_tokens
    if req.ignore_eos:
        _extend(tokens, limit, req.skip_special_tokens, spec.eos_text)
    else:
        if not calls and len(tokens) < req.min_tokens:
            _extend(tokens, req.min_tokens, True, spec.eos_text)
        tokens.append((EOS, "", -1))

    finish, stop_reason, cut = ("length" if req.ignore_eos else "stop"), None, None
    completion = len(tokens)
    stop_at = _find_stop(tokens, req.stop, req.include_stop) if req.stop else None
    if stop_at is not None and stop_at[1] < limit:
        start, end, visible, matched = stop_at
        tokens = tokens[: start + 1]
        cut = (start, visible)
        finish, stop_reason, completion = "stop", matched, end + 1
    elif len(tokens) > limit:
        tokens = tokens[:limit]
        finish, completion = "length", limit

    # A tool call cut short is not a tool call: its text stays as content.
    kept = [0] * len(calls)
    for _, _, i in tokens:
        if i >= 0:
            kept[i] += 1
    whole = {i for i in range(len(calls)) if kept[i] == expected[i]}
    if calls and len(whole) < len(calls):
        tokens = [(CONTENT, text, -1) if c >= 0 and c not in whole else (kind, text, c) for kind, text, c in tokens]
    made = [ToolCall(_call_id(req), name, args) for i, (name, args) in enumerate(calls) if i in whole]
    if made and tokens and tokens[-1][0] == EOS:
        finish = "stop" if req.named_tool else "tool_calls"

    visible = [t for _, t, _ in tokens]
    if cut is not None:
        visible[cut[0]] = cut[1]
    reasoning = sum(1 for kind, _, _ in tokens if kind == REASONING) if spec.reasoning_output != "inline" else 0
    return Generation(tokens, made, finish, stop_reason, completion, reasoning, cut, visible)


def _extend(tokens: list, target: int, skip_special: bool, eos_text: str) -> None:
    filler = [eos_text] if not skip_special else tokenize(FILLER)
    i = 0
    while len(tokens) < target:
        tokens.append((CONTENT, filler[i % len(filler)], -1))
        i += 1


def _find_stop(tokens, stops: list[str], include: bool):
    """(start token, end token, visible text of the start token, stop string)
    for the earliest stop string in the reasoning + content text."""
    texts, owners = [], []
    for i, (kind, text, _) in enumerate(tokens):
        if kind in (REASONING, CONTENT) and text:
            texts.append(text)
            owners.append(i)
    joined = "".join(texts)
    best = None
    for stop in stops:
        pos = joined.find(stop)
        if pos >= 0 and (best is None or pos + len(stop) < best[0] + len(best[1])):
            best = (pos, stop)
    if best is None:
        return None
    pos, stop = best
    cut_at = pos + len(stop) if include else pos
    offsets, offset = [], 0
    for text in texts:
        offsets.append(offset)
        offset += len(text)

    def owner(char: int) -> int:
        j = max(k for k, start in enumerate(offsets) if start <= char)
        return j

    end_j = owner(pos + len(stop) - 1)
    start_j = owner(cut_at - 1) if include else owner(pos)
    visible = joined[offsets[start_j]:cut_at]
    return owners[start_j], owners[end_j], visible, stop
