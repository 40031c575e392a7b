"""Token log probabilities -> a compact, escaped HTML token view and its summary.

Input: vLLM's per-token entries, the `content` list of a choice's `logprobs`:

    {"token": " model", "logprob": -0.0026, "bytes": [32, 109, 111, 100, 101, 108],
     "top_logprobs": [{"token": " model", "logprob": -0.0026, "bytes": [...]}, ...]}

Each token becomes one span, in line blocks that end after a newline token
(this module builds the HTML itself because a 4,000-token answer must render
in a few milliseconds; every piece of model text goes through `_text()` or
`_attr()`):

    <div class="lp-ln"><span class="p9" data-a='[[" model",-0.00261,1],[" test",-8.47]]'> model</span>…</div>

- `pN`: probability bucket, N = floor(p × 10) (p9 is 90–100 %), tinted by
  logprobs.css on the viridis scale; `l5` / `l1` add p < 5 % / p < 1 % for
  the finer "mark under" thresholds. `b`: the token's bytes are not valid
  UTF-8 on their own (a character split across tokens is shown at the
  token that completes it; a token that completes nothing shows its bytes
  as hex, ‹e4 bd›). `w`: a whitespace-only token drawn with visible glyphs
  (· space, ↵ newline, → tab). `e`: an empty token (∅).
- `data-a`: the alternatives, packed for logprobs.js to expand on demand:
  a JSON list of `[text, logprob]` or `[text, logprob, flags]`, flags being
  1 = the chosen token, 2 = bytes not valid UTF-8 on their own (text is hex),
  4 = chosen but not among the `top_logprobs` (appended after them). Logprobs
  keep 3 significant digits; null when the server sent none.
- `tabindex="0"` on the first token of a view only: a roving tabindex that
  logprobs.js moves with the arrow keys (4,000 tab stops would trap keyboards).

vLLM's non-streamed answer lists reasoning and answer tokens together in
`content`; a streamed one is split by the accumulator (`"reasoning": [...]`).
`split_tokens()` separates the first kind at the end-of-thinking tag, so both
render the same two views. `LiveTokens` renders a stream's tokens as they
arrive, with the same code, so the live view equals the final one.
"""

from __future__ import annotations

import codecs
import heapq
import json
import math
from dataclasses import dataclass, field

from chat.upstream.chunks import ContentDelta, LogprobsDelta, ReasoningDelta

__all__ = [
    "THRESHOLDS",
    "LiveTokens",
    "Summary",
    "ThinkRouter",
    "TokenRenderer",
    "TokenView",
    "format_logprob",
    "format_percent",
    "render_tokens",
    "split_tokens",
    "summarize",
    "token_view",
]

THRESHOLDS = (1, 5, 10, 20, 50)  # % choices for "mark under"; the CSS has one rule per value
DEFAULT_THRESHOLD = 10
LEAST_LIKELY = 10

OPEN_TAGS = ("<think>", "[THINK]")
CLOSE_TAGS = ("</think>", "[/THINK]")
_TAG_TAIL = max(map(len, OPEN_TAGS + CLOSE_TAGS)) - 1

REASONING = "reasoning"
CONTENT = "content"

# --- text -----------------------------------------------------------------------

_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# data-a is single-quoted, so JSON's double quotes need no escaping (they are most of its bytes).
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&#39;"})

_CONTROL_PICTURES = {c: chr(0x2400 + c) for c in range(0x20) if c not in (9, 10, 13)}
_VISIBLE = str.maketrans({**_CONTROL_PICTURES, 10: "↵\n", 9: "→", 13: "␍", 0x7F: "␡"})
_VISIBLE_SPACES = str.maketrans({**_CONTROL_PICTURES, 10: "↵\n", 9: "→", 13: "␍", 32: "·", 0xA0: "⍽"})


def _text(text: str) -> str:
    return text.translate(_TEXT_ESCAPES)


def _attr(text: str) -> str:
    return text.translate(_ATTR_ESCAPES)


def visible(text: str) -> str:
    """Whitespace made visible: a whitespace-only token shows · ↵ →; in other tokens
    newlines, tabs and control characters are drawn (spaces between words stay)."""
    if text.isspace():
        text = text.translate(_VISIBLE_SPACES)
        return "".join(c if c == "\n" or not c.isspace() else "·" for c in text)  # other Unicode spaces
    return text.translate(_VISIBLE)


def _clean(text) -> str:
    """A token string from JSON may hold lone surrogates ("\\ud83d"): they cannot be sent as UTF-8."""
    if not isinstance(text, str):
        return ""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _raw(entry: dict) -> bytes | None:
    """The token's bytes, or None when missing or not a list of byte values."""
    data = entry.get("bytes")
    if not isinstance(data, list):
        return None
    try:
        return bytes(data)
    except (TypeError, ValueError):
        return None


def _hex(raw: bytes) -> str:
    return "‹" + raw.hex(" ") + "›"


def token_text(entry: dict) -> tuple[str, bool]:
    """(text, valid) of one token on its own: its bytes decoded, or hex when they are not
    valid UTF-8 alone; the token string when there are no bytes."""
    raw = _raw(entry)
    if raw is None:
        return _clean(entry.get("token")), True
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return _hex(raw), False


# --- numbers --------------------------------------------------------------------


def _logprob(entry: dict) -> float | None:
    value = entry.get("logprob")
    if type(value) is float:  # the common case, first
        return None if math.isnan(value) else value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if not math.isnan(value) else None


def probability(logprob: float | None) -> float | None:
    if logprob is None:
        return None
    return min(1.0, math.exp(logprob)) if logprob > -745 else 0.0


def format_percent(p: float | None) -> str:
    """45.2%, 3.2%, 0.12%, <0.01% (logprobs.js formats the same way)."""
    if p is None:
        return "n/a"
    percent = p * 100
    if percent >= 10:
        return f"{percent:.1f}%"
    if percent >= 0.01:
        return f"{percent:.2g}%"
    return "<0.01%"


def format_logprob(logprob: float | None) -> str:
    if logprob is None:
        return "n/a"
    if abs(logprob) >= 100:
        return f"{logprob:.0f}"
    return f"{logprob:.3g}"


def _json_number(logprob: float | None) -> str:
    if logprob is None or math.isinf(logprob):
        return "null" if logprob is None else ("-1e999" if logprob < 0 else "0")
    return format(logprob, ".3g")  # as much as the popover shows (99.6 %, -0.00359)


def _classes(p: float | None) -> str:
    if p is None:
        return "pn"
    bucket = min(9, int(p * 10))
    if p < 0.01:
        return f"p{bucket} l1"
    if p < 0.05:
        return f"p{bucket} l5"
    return f"p{bucket}"


# --- alternatives -------------------------------------------------------------------

_json_str = json.JSONEncoder(ensure_ascii=False).encode


def _same_token(a: dict, b: dict) -> bool:
    if a.get("token") != b.get("token"):
        return False
    bytes_a, bytes_b = a.get("bytes"), b.get("bytes")
    return bytes_a is None or bytes_b is None or bytes_a == bytes_b


# token string -> (its bytes list, JSON of its text, valid UTF-8): a vocabulary repeats itself a lot.
_TEXT_JSON: dict[str, tuple[object, str, bool]] = {}


def _text_json(entry: dict) -> tuple[str, bool]:
    token, data = entry.get("token"), entry.get("bytes")
    hit = _TEXT_JSON.get(token) if isinstance(token, str) else None
    if hit is not None and hit[0] == data:
        return hit[1], hit[2]
    text, valid = token_text(entry)
    encoded = _json_str(text)
    if isinstance(token, str):
        if len(_TEXT_JSON) > 100_000:
            _TEXT_JSON.clear()
        _TEXT_JSON[token] = (data, encoded, valid)
    return encoded, valid


def _entry_json(entry: dict, flags: int) -> str:
    text, valid = _text_json(entry)
    if not valid:
        flags |= 2
    tail = f",{flags}" if flags else ""
    return f"[{text},{_json_number(_logprob(entry))}{tail}]"


def alternatives_json(entry: dict) -> str:
    """The `data-a` value (before attribute escaping): top alternatives, the chosen one flagged."""
    top = entry.get("top_logprobs")
    items, chosen_seen = [], False
    for alt in top if isinstance(top, list) else ():
        if not isinstance(alt, dict):
            continue
        chosen = not chosen_seen and _same_token(alt, entry)
        chosen_seen = chosen_seen or chosen
        items.append(_entry_json(alt, 1 if chosen else 0))
    if not chosen_seen:
        items.append(_entry_json(entry, 5 if items else 1))
    return "[" + ",".join(items) + "]"


# --- rendering ----------------------------------------------------------------------


LINE_OPEN = '<div class="lp-ln">'
LINE_OPEN_LAZY = '<div class="lp-ln lz">'  # starts after EAGER tokens: rendered when scrolled near (logprobs.js)
LINE_CLOSE = "</div>"
EAGER = 600  # tokens laid out with the page: about a screenful and a half


class TokenRenderer:
    """Renders one view's tokens, in order, across calls (a live stream renders in batches).

    Bytes are decoded incrementally: a character split across tokens appears at
    the token that completes it. Tokens are grouped in line blocks
    (`<div class="lp-ln">`), each ending after a token whose text ends with a
    newline, so nothing moves (a trailing newline adds no line to a block) and
    the browser can skip laying out the blocks off screen (content-visibility in
    logprobs.css): one inline formatting context of 4,000 spans is what made a
    long answer slow. Blocks that start after the first EAGER tokens are marked
    `lz` and not rendered at all until they come near the viewport, since the
    browser's own margin for `content-visibility: auto` renders ~2.5 screens.
    Rendering a list at once or in batches gives the same HTML.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.count = 0
        self.line_open = False  # the last line block has no newline yet: the next tokens continue it

    def render(self, entries: list[dict]) -> str:
        """All of a view's tokens, as line blocks (from a fresh renderer)."""
        carry, lines = self.render_batch(entries)
        return carry + lines

    def render_batch(self, entries: list[dict]) -> tuple[str, str]:
        """(spans that continue the open line block, new line blocks) for the next tokens."""
        carry: list[str] = []
        lines: list[list[str]] = []
        current = carry if self.line_open else None
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            if current is None:
                current = [LINE_OPEN if self.count < EAGER else LINE_OPEN_LAZY]
                lines.append(current)
            span, ends_line = self._span(entry)
            current.append(span)
            if ends_line:
                current = None
            self.line_open = current is not None
        return "".join(carry), "".join("".join(line) + LINE_CLOSE for line in lines)

    def _span(self, entry: dict) -> tuple[str, bool]:
        raw = _raw(entry)
        marks = ""
        if raw is None:
            self._decoder.reset()  # bytes left pending by an earlier token will not be completed
            text = _clean(entry.get("token"))
        else:
            pending = self._decoder.getstate()[0]
            if pending and raw and not 0x80 <= raw[0] <= 0xBF:
                self._decoder.reset()  # the earlier partial token stays shown as its bytes
            text = self._decoder.decode(raw)
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                marks = " b"
                if not text or ("\ufffd" in text and b"\xef\xbf\xbd" not in raw):
                    text = _hex(raw)  # a partial character, or bytes that are no UTF-8 at all
        if not text:
            shown, marks = "∅", marks + " e"
        elif text.isspace():
            shown, marks = visible(text), marks + " w"
        else:
            shown = visible(text)
        classes = _classes(probability(_logprob(entry))) + marks
        first = "" if self.count else ' tabindex="0"'
        self.count += 1
        span = f"<span class=\"{classes}\"{first} data-a='{_attr(alternatives_json(entry))}'>{_text(shown)}</span>"
        return span, shown.endswith("\n")


def render_tokens(entries: list[dict]) -> str:
    """The HTML of one view's tokens (escaped; safe to insert as is)."""
    return TokenRenderer().render(entries or [])


# --- reasoning vs answer -------------------------------------------------------------------


class ThinkRouter:
    """Routes a mixed token list to "reasoning" or "content" by the thinking tags in it.

    A token is reasoning if the thinking block was open when it started or opened
    in it; so the tags themselves count as reasoning. `opened=True` when the chat
    template opened the block in the prompt (only a close tag appears).
    """

    def __init__(self, *, opened: bool = False) -> None:
        self.inside = opened
        self._tail = ""

    def route(self, entry: dict) -> str:
        kind = REASONING if self.inside else CONTENT
        text = self._tail + _clean(entry.get("token"))
        start = 0
        while True:
            tags = CLOSE_TAGS if self.inside else OPEN_TAGS
            hits = [(at, tag) for tag in tags if (at := text.find(tag, start)) >= 0]
            if not hits:
                break
            at, tag = min(hits)
            start = at + len(tag)
            self.inside = not self.inside
            if self.inside:
                kind = REASONING
        self._tail = text[max(start, len(text) - _TAG_TAIL) :]
        return kind


def _opened(tokens: list[dict]) -> bool:
    """A close tag before any open tag: the template had opened the block (as split_thinking)."""
    text = "".join(_clean(t.get("token")) for t in tokens if isinstance(t, dict))
    closes = [at for tag in CLOSE_TAGS if (at := text.find(tag)) >= 0]
    if not closes:
        return False
    return not any(tag in text[: min(closes)] for tag in OPEN_TAGS)


def split_tokens(logprobs: dict | None, reasoning: str = "", content: str = "") -> tuple[list[dict], list[dict]]:
    """(reasoning tokens, answer tokens) of a saved message.

    - {"content", "reasoning"}: already split (a stream, by the accumulator).
    - no reasoning text: every token is the answer's.
    - otherwise the list mixes both (vLLM's non-stream answer, or thinking left
      inline): split at the thinking tags; failing that, after the tokens that
      spell the reasoning text.
    """
    if not isinstance(logprobs, dict):
        return [], []
    tokens = [t for t in logprobs.get("content") or [] if isinstance(t, dict)]
    if "reasoning" in logprobs:
        return [t for t in logprobs.get("reasoning") or [] if isinstance(t, dict)], tokens
    if not reasoning or not tokens:
        return [], tokens
    router = ThinkRouter(opened=_opened(tokens))
    kinds = [router.route(t) for t in tokens]
    if REASONING in kinds:
        return [t for t, k in zip(tokens, kinds) if k == REASONING], [t for t, k in zip(tokens, kinds) if k == CONTENT]
    # No tags we know: the reasoning is spelled by the first tokens.
    text, ends = "", []
    for t in tokens:
        text += token_text(t)[0]
        ends.append(len(text))
    needle = reasoning.strip()
    at = text.find(needle)
    if at < 0:
        return [], tokens
    cut = next(i for i, end in enumerate(ends) if end >= at + len(needle)) + 1
    return tokens[:cut], tokens[cut:]


# --- summary ----------------------------------------------------------------------


@dataclass(frozen=True)
class Unlikely:
    """One of the least likely tokens; `index` is its position in the view."""

    index: int
    text: str
    logprob: float

    @property
    def percent(self) -> str:
        return format_percent(probability(self.logprob))

    @property
    def logprob_text(self) -> str:
        return format_logprob(self.logprob)


@dataclass(frozen=True)
class Summary:
    """count: tokens in the view; scored: those with a logprob (the rest are left out);
    under: scored tokens with probability below `threshold` (a fraction)."""

    count: int
    scored: int
    mean_logprob: float
    perplexity: float
    under: int
    threshold: float
    least: list[Unlikely] = field(default_factory=list)

    @property
    def mean_text(self) -> str:
        return format_logprob(self.mean_logprob)

    @property
    def perplexity_text(self) -> str:
        return f"{self.perplexity:.4g}" if self.perplexity < 1e6 else f"{self.perplexity:.2e}"

    @property
    def threshold_percent(self) -> int:
        return round(self.threshold * 100)


def summarize(entries: list[dict], *, threshold: float = DEFAULT_THRESHOLD / 100, least: int = LEAST_LIKELY) -> Summary | None:
    """Mean logprob, perplexity (exp of minus the mean), count under `threshold`, least likely tokens."""
    scored = [(lp, i) for i, e in enumerate(entries) if isinstance(e, dict) and (lp := _logprob(e)) is not None]
    if not scored:
        return None
    total = sum(lp for lp, _ in scored)
    mean = total / len(scored)
    cutoff = math.log(threshold) if threshold > 0 else -math.inf
    unlikely = [
        Unlikely(i, visible(token_text(entries[i])[0]).replace("\n", "") or "∅", lp)
        for lp, i in heapq.nsmallest(least, scored)
    ]
    return Summary(
        count=len(entries), scored=len(scored), mean_logprob=mean,
        perplexity=math.exp(-mean) if -mean < 700 else math.inf,
        under=sum(1 for lp, _ in scored if lp < cutoff), threshold=threshold, least=unlikely,
    )


# --- a message's views ---------------------------------------------------------------


@dataclass(frozen=True)
class TokenPart:
    """One view (reasoning or answer): its token HTML, how many tokens, and its summary
    (None while streaming or when no token has a logprob)."""

    html: str
    count: int
    summary: Summary | None


@dataclass(frozen=True)
class TokenView:
    live: bool
    reasoning: TokenPart
    content: TokenPart
    thresholds: tuple[int, ...] = THRESHOLDS
    default_threshold: int = DEFAULT_THRESHOLD
    buckets: tuple[int, ...] = tuple(range(10))


def _part(tokens: list[dict], live: bool) -> TokenPart:
    return TokenPart(render_tokens(tokens), len(tokens), None if live else summarize(tokens))


def token_view(logprobs: dict | None, *, reasoning: str = "", content: str = "", live: bool = False) -> TokenView | None:
    """Both views of one message; None when there is nothing to show (and it is not streaming)."""
    if not logprobs and not live:
        return None
    reasoning_tokens, content_tokens = split_tokens(logprobs, reasoning, content)
    if not live and not reasoning_tokens and not content_tokens:
        return None
    return TokenView(live, _part(reasoning_tokens, live), _part(content_tokens, live))


# --- live ---------------------------------------------------------------------------


class LiveTokens:
    """Choice 0's token views while it streams: what each flush appends.

    Tokens are filed as StreamAccumulator files them (by the chunk's text; tokens
    of a chunk without text go with the text before, or the text after when none
    came yet). With thinking left inline (`route_inline`), the tags route them.
    """

    def __init__(self, *, route_inline: bool = False) -> None:
        self._router = ThinkRouter() if route_inline else None
        self._renderers = {REASONING: TokenRenderer(), CONTENT: TokenRenderer()}
        self._taken: dict[str, list[dict]] = {REASONING: [], CONTENT: []}
        self._new: dict[str, list[dict]] = {REASONING: [], CONTENT: []}
        self._pending: list[dict] = []
        self._last_field: str | None = None

    def feed(self, event) -> None:
        """Take one event of the choice (others are ignored)."""
        if isinstance(event, ContentDelta | ReasoningDelta):
            self._last_field = CONTENT if isinstance(event, ContentDelta) else REASONING
            if self._pending:
                self._file(self._last_field, self._pending)
                self._pending = []
        elif isinstance(event, LogprobsDelta):
            where = event.field or self._last_field
            if where is None and self._router is None:
                self._pending.extend(event.content)
            else:
                self._file(where or CONTENT, event.content)

    def _file(self, where: str, entries: list[dict]) -> None:
        for entry in entries:
            if isinstance(entry, dict):
                self._new[self._router.route(entry) if self._router else where].append(entry)

    def take(self) -> dict[str, tuple[str, str]]:
        """For each view ("reasoning", "content") with new tokens since the last call:
        (spans that continue its last line block, new line blocks to append to it)."""
        out = {}
        for view, entries in self._new.items():
            if entries:
                out[view] = self._renderers[view].render_batch(entries)
                self._taken[view].extend(entries)
                self._new[view] = []
        return out

    def logprobs(self) -> dict:
        """The tokens taken so far, split, in the saved shape: what a (re)connecting viewer is shown."""
        return {"content": list(self._taken[CONTENT]), "reasoning": list(self._taken[REASONING])}
