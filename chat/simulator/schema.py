"""Output that conforms to a constraint: JSON Schema, regex, a small GBNF
subset, structural tags.

Each generator builds a plausible value from the constraint itself (and from
hints the caller passes: words of the prompt, a city it named), then the JSON
Schema one is checked with `jsonschema`; nothing here samples blindly.
"""

from __future__ import annotations

import json
import re
import re._constants as sre_c  # Python 3.11's sre internals, read-only use
import re._parser as sre_parse
from collections.abc import Callable
from typing import Any

import jsonschema

Hint = Callable[[str | None, dict], Any]

_NO_HINT = object()


class ConstraintError(ValueError):
    """A constraint the simulator cannot satisfy or parse."""


# --------------------------------------------------------------------------- JSON Schema

_FORMATS = {
    "date": "2025-01-01",
    "date-time": "2025-01-01T12:00:00Z",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uri-reference": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}

_NUMBER_HINTS = {
    "age": 30, "year": 2025, "count": 3, "quantity": 2, "n": 3, "rating": 4,
    "score": 0.9, "confidence": 0.9, "probability": 0.9, "temperature": 21,
    "price": 9.99, "amount": 10, "id": 1, "index": 0, "limit": 10,
}


class SchemaExample:
    """Builds one instance of a JSON Schema (draft 2020-12 and friends)."""

    MAX_DEPTH = 8

    def __init__(self, root: Any, hint: Hint | None = None, include_optional: bool = True):
        self.root = root
        self.hint = hint
        self.include_optional = include_optional

    def build(self) -> Any:
        value = self._gen(self.root, None, 0, 0)
        try:
            jsonschema.validate(value, self.root if isinstance(self.root, (dict, bool)) else {})
        except jsonschema.SchemaError as exc:
            raise ConstraintError(f"invalid JSON schema: {exc.message}") from exc
        except jsonschema.ValidationError:
            # A second, plainer attempt: required properties only, no hints.
            plain = SchemaExample(self.root, None, include_optional=False)._gen(self.root, None, 0, 0)
            return plain
        return value

    # -- helpers
    def _resolve(self, schema: dict) -> dict:
        ref = schema.get("$ref")
        seen = 0
        while isinstance(ref, str) and ref.startswith("#") and seen < 32:
            target: Any = self.root
            for part in ref[1:].split("/")[1:] if ref != "#" else []:
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(target, list):
                    target = target[int(part)]
                else:
                    target = target.get(part, {})
            merged = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **merged} if isinstance(target, dict) else merged
            ref = schema.get("$ref")
            seen += 1
        return schema

    def _gen(self, schema: Any, key: str | None, depth: int, index: int) -> Any:
        if schema is True or schema is None:
            return self._hinted(key, {}, "value")
        if schema is False:
            raise ConstraintError("schema `false` admits no value")
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema and schema["enum"]:
            return self._pick_enum(key, schema)
        for word in ("anyOf", "oneOf"):
            if schema.get(word):
                options = [s for s in schema[word] if not (isinstance(s, dict) and s.get("type") == "null")]
                branch = (options or schema[word])[0]
                rest = {k: v for k, v in schema.items() if k != word}
                return self._gen({**rest, **self._resolve(branch)} if isinstance(branch, dict) else branch, key, depth, index)
        if schema.get("allOf"):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self._resolve(part) if isinstance(part, dict) else {}
                for k, v in part.items():
                    if k == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **v}
                    elif k == "required":
                        merged["required"] = list(dict.fromkeys([*merged.get("required", []), *v]))
                    else:
                        merged.setdefault(k, v)
            return self._gen(merged, key, depth, index)

        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
        if kind is None:
            if "properties" in schema or "required" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            elif {"minLength", "maxLength", "pattern", "format"} & schema.keys():
                kind = "string"
            elif {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"} & schema.keys():
                kind = "number"
            else:
                kind = "string" if key else "object"

        if kind == "object":
            return self._object(schema, key, depth, index)
        if kind == "array":
            return self._array(schema, key, depth)
        if kind == "string":
            return self._string(schema, key, index)
        if kind in ("integer", "number"):
            return self._number(schema, key, kind == "integer", index)
        if kind == "boolean":
            value = self._hinted(key, schema, _NO_HINT)
            return value if isinstance(value, bool) else True
        if kind == "null":
            return None
        raise ConstraintError(f"unsupported schema type {kind!r}")

    def _hinted(self, key: str | None, schema: dict, default: Any) -> Any:
        if self.hint is not None:
            value = self.hint(key, schema)
            if value is not None:
                return value
        if "default" in schema:
            return schema["default"]
        examples = schema.get("examples")
        if isinstance(examples, list) and examples:
            return examples[0]
        return default

    def _pick_enum(self, key: str | None, schema: dict) -> Any:
        value = self._hinted(key, schema, _NO_HINT)
        return value if value in schema["enum"] else schema["enum"][0]

    def _object(self, schema: dict, key: str | None, depth: int, index: int = 0) -> dict:
        props = schema.get("properties") or {}
        required = [r for r in schema.get("required", []) if isinstance(r, str)]
        out: dict = {}
        names = list(props) if self.include_optional and depth < 3 else [p for p in props if p in required]
        for name in [*names, *[r for r in required if r not in names]]:
            sub = props.get(name)
            if sub is None:
                extra = schema.get("additionalProperties", True)
                sub = extra if isinstance(extra, dict) else {}
            if depth >= self.MAX_DEPTH and name not in required:
                continue
            out[name] = self._gen(sub, name, depth + 1, index)
        want = schema.get("minProperties", 0)
        extra = schema.get("additionalProperties", True)
        i = 1
        while len(out) < want and extra is not False:
            out[f"{key or 'key'}_{i}"] = self._gen(extra if isinstance(extra, dict) else {"type": "string"}, None, depth + 1, i)
            i += 1
        return out

    def _array(self, schema: dict, key: str | None, depth: int) -> list:
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", {})
        low = schema.get("minItems", 0)
        high = schema.get("maxItems")
        count = max(low, len(prefix), 0 if depth >= self.MAX_DEPTH else 2)
        if high is not None:
            count = min(count, high)
        if items is False:
            count = min(count, len(prefix))
        out = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else (items if isinstance(items, dict) else {})
            out.append(self._gen(sub, _singular(key), depth + 1, i))
        if schema.get("uniqueItems"):
            seen: list = []
            for i, value in enumerate(out):
                while value in seen and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    value = value + (f"-{i}" if isinstance(value, str) else 1)
                seen.append(value)
                out[i] = value
        return out

    def _string(self, schema: dict, key: str | None, index: int) -> str:
        low = schema.get("minLength", 0)
        high = schema.get("maxLength")
        if "pattern" in schema:
            try:
                value = regex_example(schema["pattern"], search=True)
            except ConstraintError:
                value = ""
            return value
        fmt = schema.get("format")
        if fmt in _FORMATS:
            return _FORMATS[fmt]
        value = self._hinted(key, schema, _NO_HINT)
        if not isinstance(value, str):
            value = f"{(key or 'text').replace('_', ' ')}"
        if index:
            value = f"{value} {index + 1}"
        if high is not None and len(value) > high:
            value = value[:high].rstrip() or value[:high]
        if len(value) < low:
            value = value + "x" * (low - len(value))
        return value

    def _number(self, schema: dict, key: str | None, integer: bool, index: int) -> int | float:
        value = self._hinted(key, schema, _NO_HINT)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            value = _NUMBER_HINTS.get((key or "").lower(), 1)
        value = value + index
        low = schema.get("minimum")
        high = schema.get("maximum")
        xlow = schema.get("exclusiveMinimum")
        xhigh = schema.get("exclusiveMaximum")
        step = 1 if integer else 0.5
        if isinstance(xlow, (int, float)) and not isinstance(xlow, bool):
            low = xlow + step if low is None else max(low, xlow + step)
        if isinstance(xhigh, (int, float)) and not isinstance(xhigh, bool):
            high = xhigh - step if high is None else min(high, xhigh - step)
        if low is not None and value < low:
            value = low
        if high is not None and value > high:
            value = high
        if low is not None and high is not None and low > high:  # a narrow exclusive band
            value = (schema.get("exclusiveMinimum", low) + schema.get("exclusiveMaximum", high)) / 2
        multiple = schema.get("multipleOf")
        if multiple:
            value = round(value / multiple) * multiple
            if low is not None and value < low:
                value += multiple
            if high is not None and value > high:
                value -= multiple
        if integer:
            return int(round(value)) if not multiple else int(value)
        return float(value) if not isinstance(value, float) else value


def _singular(key: str | None) -> str | None:
    if key and key.endswith("s") and len(key) > 3:
        return key[:-1]
    return key


def schema_example(schema: Any, hint: Hint | None = None) -> Any:
    return SchemaExample(schema, hint).build()


# --------------------------------------------------------------------------- regex

def regex_example(pattern: str, search: bool = False) -> str:
    """A shortest-ish string matching `pattern` (fullmatch, or search if asked)."""
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        raise ConstraintError(f"invalid regex {pattern!r}: {exc}") from exc
    groups: dict[int, str] = {}
    text = _regex_gen(parsed, groups)
    check = re.search if search else re.fullmatch
    if not check(pattern, text):
        raise ConstraintError(f"the simulator cannot produce a string for the regex {pattern!r}")
    return text


_CATEGORY_CHAR = {
    sre_c.CATEGORY_DIGIT: "0",
    sre_c.CATEGORY_NOT_DIGIT: "a",
    sre_c.CATEGORY_WORD: "a",
    sre_c.CATEGORY_NOT_WORD: " ",
    sre_c.CATEGORY_SPACE: " ",
    sre_c.CATEGORY_NOT_SPACE: "a",
}


def _class_char(items: list) -> str:
    if items and items[0][0] is sre_c.NEGATE:
        cls = "".join(_describe_class(items[1:]))
        for candidate in "a0A _-.xZ9":
            if not re.fullmatch(f"[{cls}]", candidate):
                return candidate
        return "~"
    op, av = items[0]
    if op is sre_c.LITERAL:
        return chr(av)
    if op is sre_c.RANGE:
        return chr(av[0])
    if op is sre_c.CATEGORY:
        return _CATEGORY_CHAR.get(av, "a")
    return "a"


def _describe_class(items: list) -> list[str]:
    parts = []
    for op, av in items:
        if op is sre_c.LITERAL:
            parts.append(re.escape(chr(av)))
        elif op is sre_c.RANGE:
            parts.append(f"{re.escape(chr(av[0]))}-{re.escape(chr(av[1]))}")
        elif op is sre_c.CATEGORY:
            parts.append({
                sre_c.CATEGORY_DIGIT: r"\d", sre_c.CATEGORY_NOT_DIGIT: r"\D",
                sre_c.CATEGORY_WORD: r"\w", sre_c.CATEGORY_NOT_WORD: r"\W",
                sre_c.CATEGORY_SPACE: r"\s", sre_c.CATEGORY_NOT_SPACE: r"\S",
            }.get(av, ""))
    return parts


def _regex_gen(items, groups: dict[int, str]) -> str:
    out = []
    for op, av in items:
        if op is sre_c.LITERAL:
            out.append(chr(av))
        elif op is sre_c.NOT_LITERAL:
            out.append("a" if av != ord("a") else "b")
        elif op is sre_c.ANY:
            out.append("a")
        elif op is sre_c.IN:
            out.append(_class_char(av))
        elif op is sre_c.CATEGORY:
            out.append(_CATEGORY_CHAR.get(av, "a"))
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            low, _high, sub = av
            out.append(_regex_gen(sub, groups) * low)
        elif op is sre_c.SUBPATTERN:
            group, _add, _del, sub = av
            text = _regex_gen(sub, groups)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif op is getattr(sre_c, "ATOMIC_GROUP", None):
            out.append(_regex_gen(av, groups))
        elif op is sre_c.BRANCH:
            out.append(_regex_gen(av[1][0], groups))
        elif op is sre_c.GROUPREF:
            out.append(groups.get(av, ""))
        # AT (anchors), ASSERT, ASSERT_NOT: zero-width, nothing to emit
    return "".join(out)


# --------------------------------------------------------------------------- grammar (GBNF subset)

_GRAMMAR_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:\\.|[^"\\])*")
    | (?P<cls>\[(?:\\.|[^\]\\])*\])
    | (?P<re>/(?:\\.|[^/\\])+/)
    | (?P<rep>\{\d+(?:,\d*)?\})
    | (?P<op>[|()*+?.])
    | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
    )""",
    re.VERBOSE,
)


def grammar_example(grammar: str, prefer: Callable[[list[str]], int] | None = None) -> str:
    """A string derived from `grammar`: GBNF (`root ::= ...`) or a Lark-style
    subset (`start: ...`). Rule refs, string literals, character classes,
    groups, `|`, `*`, `+`, `?`, `{m,n}`. `prefer` picks among the root's
    literal alternatives (e.g. the one the prompt mentions)."""
    rules = _parse_rules(grammar)
    start = "root" if "root" in rules else "start" if "start" in rules else next(iter(rules))
    return _Derive(rules, prefer).rule(start, 0, top=True)


def _parse_rules(grammar: str) -> dict[str, list]:
    lines = [ln for ln in grammar.splitlines() if ln.strip() and not ln.strip().startswith(("#", "//"))]
    text = "\n".join(lines)
    parts = re.split(r"^\s*\??([A-Za-z_][A-Za-z0-9_\-]*)\s*(?:::=|:)(?!:)", text, flags=re.MULTILINE)
    if len(parts) < 3:
        raise ConstraintError("grammar has no rules (expected `root ::= ...`)")
    rules: dict[str, list] = {}
    for i in range(1, len(parts) - 1, 2):
        name, body = parts[i], parts[i + 1]
        rules[name] = _parse_alternatives(_lex(body), 0)[0]
    return rules


def _lex(body: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    body = body.strip()
    while pos < len(body):
        match = _GRAMMAR_TOKEN.match(body, pos)
        if not match or match.end() == pos:
            raise ConstraintError(f"cannot parse grammar near {body[pos:pos + 20]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(body) and body[pos].isspace():
            pos += 1
    return tokens


def _parse_alternatives(tokens, i):
    alts, seq = [], []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "op" and value == "|":
            alts.append(seq)
            seq = []
            i += 1
        elif kind == "op" and value == ")":
            break
        elif kind == "op" and value == "(":
            inner, i = _parse_alternatives(tokens, i + 1)
            if i >= len(tokens) or tokens[i] != ("op", ")"):
                raise ConstraintError("unbalanced parentheses in grammar")
            seq.append(("group", inner))
            i += 1
        elif kind in ("op", "rep") and value in "*+?" or kind == "rep":
            if not seq:
                raise ConstraintError(f"dangling {value!r} in grammar")
            seq[-1] = ("repeat", (seq[-1], value))
            i += 1
        else:
            seq.append((kind, value))
            i += 1
    alts.append(seq)
    return ("alts", alts), i


class _Derive:
    def __init__(self, rules: dict, prefer):
        self.rules = rules
        self.prefer = prefer

    def rule(self, name: str, depth: int, top: bool = False) -> str:
        if name not in self.rules:
            raise ConstraintError(f"grammar refers to an undefined rule {name!r}")
        if depth > 40:
            raise ConstraintError("grammar recursion too deep for the simulator")
        return self.node(self.rules[name], depth + 1, top)

    def node(self, node, depth: int, top: bool = False) -> str:
        kind, value = node
        if kind == "alts":
            options = value
            choice = 0
            if top and self.prefer is not None and len(options) > 1:
                literals = ["".join(self.node(item, depth) for item in seq) for seq in options]
                choice = self.prefer(literals)
            ordered = [options[choice]] + [o for j, o in enumerate(options) if j != choice]
            last_error = None
            for seq in ordered:
                try:
                    return "".join(self.node(item, depth) for item in seq)
                except ConstraintError as exc:
                    last_error = exc
            raise last_error or ConstraintError("empty grammar alternative")
        if kind == "group":
            return self.node(value, depth)
        if kind == "str":
            return json.loads(value)
        if kind == "cls":
            try:
                return _class_char(sre_parse.parse(value)[0][1])
            except (re.error, IndexError) as exc:
                raise ConstraintError(f"bad character class {value}") from exc
        if kind == "re":
            return regex_example(value[1:-1])
        if kind == "op" and value == ".":
            return "a"
        if kind == "name":
            return self.rule(value, depth)
        if kind == "repeat":
            inner, op = value
            if op in ("*", "?"):
                return ""
            if op == "+":
                return self.node(inner, depth)
            low = int(op[1:-1].split(",")[0])
            return self.node(inner, depth) * low
        raise ConstraintError(f"unsupported grammar element {value!r}")


# --------------------------------------------------------------------------- structural tags

def structural_tag_example(spec: Any, schema_hint: Hint | None = None, text: str = "") -> str:
    """Render vLLM's structural_tag constraint: the legacy form
    `{"structures": [{"begin", "schema", "end"}], "triggers": [...]}` or the
    xgrammar `{"format": {...}}` form (tag, sequence, or, const_string,
    json_schema, regex, grammar, any_text, triggered_tags, tags_with_separator)."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise ConstraintError("structural_tag must be a JSON object") from exc
    if not isinstance(spec, dict):
        raise ConstraintError("structural_tag must be a JSON object")
    if "structures" in spec:
        structures = spec.get("structures") or []
        if not structures:
            return text
        first = structures[0]
        body = json.dumps(schema_example(first.get("schema", {}), schema_hint), ensure_ascii=False)
        return f"{text}{first.get('begin', '')}{body}{first.get('end', '')}"
    if "format" in spec:
        return _format_example(spec["format"], schema_hint, text)
    raise ConstraintError("structural_tag needs `structures` or `format`")


def _format_example(fmt: Any, hint: Hint | None, text: str) -> str:
    if not isinstance(fmt, dict):
        raise ConstraintError("structural tag format must be an object")
    kind = fmt.get("type")
    if kind == "const_string":
        return str(fmt.get("value", ""))
    if kind == "json_schema":
        return json.dumps(schema_example(fmt.get("json_schema", {}), hint), ensure_ascii=False)
    if kind == "regex":
        return regex_example(fmt.get("pattern", ""))
    if kind == "grammar":
        return grammar_example(fmt.get("grammar", ""))
    if kind == "any_text":
        return text
    if kind == "sequence":
        return "".join(_format_example(e, hint, text) for e in fmt.get("elements", []))
    if kind == "or":
        elements = fmt.get("elements") or []
        return _format_example(elements[0], hint, text) if elements else ""
    if kind == "tag":
        return f"{fmt.get('begin', '')}{_format_example(fmt.get('content', {'type': 'any_text'}), hint, text)}{fmt.get('end', '')}"
    if kind in ("triggered_tags", "tags_with_separator"):
        tags = fmt.get("tags") or []
        if not tags:
            return text
        prefix = text if kind == "triggered_tags" else ""
        return prefix + _format_example({"type": "tag", **tags[0]}, hint, "")
    raise ConstraintError(f"unsupported structural tag format {kind!r}")
