"""Model output (untrusted markdown) to safe HTML, for pages and websocket fragments.

Pipeline (ECOSYSTEM.md §2, §7 bar 1):

1. markdown-it-py, preset ``js-default`` (``html=False``, no linkify, no typographer),
   plus ``table`` and ``strikethrough``. Raw HTML in the input comes out as escaped text.
   Links must be absolute ``http``/``https``/``mailto`` URLs; anything else is left as text.
   Images become a plain link showing the alt text (an ``<img>`` would fetch the URL on
   render, which is a data-exfiltration channel for prompt-injected output).
2. Fenced code is highlighted with Pygments (``HtmlFormatter(nowrap=True)``) only when the
   language names a built-in lexer, the block is at most ``MAX_HIGHLIGHT_CHARS`` and the
   per-render budget ``MAX_HIGHLIGHT_TOTAL`` is not spent; otherwise it is escaped plain text.
   No language guessing.
3. nh3 (ammonia) cleans the *final* HTML against an explicit allowlist; ``rel`` is forced to
   ``noopener noreferrer nofollow`` and relative URLs are dropped.

Inputs longer than ``MAX_RENDER_CHARS`` are not parsed at all: they come back as escaped
text in ``<pre>`` under a short note. Everything here is pure and framework-free; callers
should run it through ``asyncio.to_thread`` from async code.
"""

from __future__ import annotations

import html
import logging
import re
import sys
from types import SimpleNamespace
from typing import Any

import nh3
import pygments
import pygments.token
from markdown_it import MarkdownIt, helpers
from markdown_it.common.utils import unescapeAll
from pygments.formatters import HtmlFormatter
from pygments.lexers import find_lexer_class_by_name, get_all_lexers
from pygments.util import ClassNotFound

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "ALLOWED_CLASSES",
    "ALLOWED_TAGS",
    "ALLOWED_URL_SCHEMES",
    "LINK_REL",
    "MAX_HIGHLIGHT_CHARS",
    "MAX_HIGHLIGHT_TOTAL",
    "MAX_LINK_LABEL",
    "MAX_LINK_SCAN_STEPS",
    "MAX_RENDER_CHARS",
    "highlight_code",
    "pygments_css",
    "render_markdown",
    "render_plain",
    "split_stable_prefix",
]

MAX_RENDER_CHARS = 100_000
"""Longer inputs are shown as escaped plain text, never parsed as markdown. markdown-it-py is
pure Python: adversarial-but-linear input (dense emphasis, tables, links) costs up to ~5-10 µs
per character, so this bounds one render to roughly half a second to a second of CPU."""

MAX_HIGHLIGHT_CHARS = 20_000
"""Longer code blocks are not lexed (Pygments ReDoS history: CVE-2022-40896, CVE-2026-4539)."""

MAX_HIGHLIGHT_TOTAL = 100_000
"""Characters of code lexed per render; later blocks are plain text once it is spent."""

MAX_LINK_LABEL = 1_000
"""Link text scanned for its closing ``]`` (CommonMark caps reference labels at 999 too)."""

MAX_LINK_SCAN_STEPS = 100_000
"""Tokens stepped over while looking for link labels, per render. markdown-it-py rescans the
rest of the paragraph from every ``[``: unbounded, 200 KB of ``[`` costs ~16 s. Once the
budget is spent, remaining ``[...]`` render as literal text."""

MAX_LINK_DESTINATION = 8_000
"""Longest link destination or title looked at."""

LIGHT_STYLE = "default"
DARK_STYLE = "github-dark"
CSS_SCOPE = ".highlight"

ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr",
        "h1", "h2", "h3", "h4", "h5", "h6",
        "strong", "em", "s", "del", "code", "pre", "span", "blockquote",
        "ul", "ol", "li",
        "table", "thead", "tbody", "tr", "th", "td",
        "a",
    }
)  # fmt: skip

# Never list "class" here for a tag in ALLOWED_CLASSES, nor "rel" at all (ammonia panics).
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "title"}),
    "ol": frozenset({"start"}),
}
# Restricted values (nh3 ``tag_attribute_values``): must not also appear in ALLOWED_ATTRIBUTES.
_ALIGN_VALUES = frozenset({"left", "center", "right"})
ALLOWED_ATTRIBUTE_VALUES: dict[str, dict[str, frozenset[str]]] = {
    "th": {"align": _ALIGN_VALUES},
    "td": {"align": _ALIGN_VALUES},
}

# Lower-cased lexer alias -> canonical (first) alias, built-in lexers only (no plugins).
_LEXER_ALIASES: dict[str, str] = {}
for _name, _aliases, _filenames, _mimetypes in get_all_lexers(plugins=False):
    if _aliases:
        for _alias in _aliases:
            _LEXER_ALIASES.setdefault(_alias.lower(), _aliases[0])

_PYGMENTS_CLASSES = frozenset(set(pygments.token.STANDARD_TYPES.values()) - {""})
_LANGUAGE_CLASSES = frozenset("language-" + canonical for canonical in set(_LEXER_ALIASES.values()))

ALLOWED_CLASSES: dict[str, frozenset[str]] = {
    "span": _PYGMENTS_CLASSES,
    "pre": frozenset({"highlight"}),
    "code": _LANGUAGE_CLASSES,
}

_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags={"script", "style"},
    attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
    tag_attribute_values={
        tag: {attr: set(values) for attr, values in attrs.items()}
        for tag, attrs in ALLOWED_ATTRIBUTE_VALUES.items()
    },
    allowed_classes={tag: set(classes) for tag, classes in ALLOWED_CLASSES.items()},
    url_schemes=set(ALLOWED_URL_SCHEMES),
    url_relative="deny",
    link_rel=LINK_REL,
    strip_comments=True,
)

log = logging.getLogger(__name__)
_FORMATTER = HtmlFormatter(nowrap=True)
_BUDGET_KEY = "hexgrid_highlight_budget"
_LINK_BUDGET_KEY = "hexgrid_link_scan_budget"
_LINK_RE = re.compile(r"\s*(?:https?|mailto):", re.IGNORECASE)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


# --------------------------------------------------------------------------- markdown-it


def _validate_link(url: str) -> bool:
    """Only absolute http(s) and mailto destinations become links (called on normalized URLs)."""
    return bool(_LINK_RE.match(url))


def _parse_link_label(state: Any, start: int, disableNested: bool = False) -> int:  # noqa: N803
    """``markdown_it.helpers.parseLinkLabel`` with two bounds: it gives up ``MAX_LINK_LABEL``
    chars after the ``[``, and once the render's ``MAX_LINK_SCAN_STEPS`` budget is spent.

    Same loop as upstream; ``skipToken`` still sees the real ``posMax``, so its cache stays valid.
    """
    env = state.env
    limit = min(state.posMax, start + 1 + MAX_LINK_LABEL)
    old_pos = state.pos
    state.pos = start + 1
    level = 1
    label_end = -1
    while state.pos < limit:
        # The budget lives in env so that nested scans (via skipToken) spend it too.
        env[_LINK_BUDGET_KEY] = budget = env.get(_LINK_BUDGET_KEY, MAX_LINK_SCAN_STEPS) - 1
        if budget < 0:
            break
        marker = state.src[state.pos]
        if marker == "]":
            level -= 1
            if level == 0:
                label_end = state.pos
                break
        prev_pos = state.pos
        state.md.inline.skipToken(state)
        if marker == "[":
            if prev_pos == state.pos - 1:
                level += 1
            elif disableNested:
                break
    state.pos = old_pos
    return label_end


def _parse_link_destination(string: str, pos: int, maximum: int) -> Any:
    return helpers.parseLinkDestination(string, pos, min(maximum, pos + MAX_LINK_DESTINATION))


def _parse_link_title(string: str, start: int, maximum: int, prev_state: Any = None) -> Any:
    return helpers.parseLinkTitle(
        string, start, min(maximum, start + MAX_LINK_DESTINATION), prev_state
    )


def _postprocess(state: Any) -> None:
    """Core rule after inline parsing, one linear pass.

    * markdown-it writes ``style="text-align:x"`` on table cells; styles are not allowed,
      ``align`` is.
    * Marks images that sit inside a link (``meta["in_link"]``) so that the image renderer
      does not nest an ``<a>`` in an ``<a>``.
    """
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs:
            style = token.attrs.pop("style", None)
            if isinstance(style, str) and style.startswith("text-align:"):
                token.attrs["align"] = style.removeprefix("text-align:")
        elif token.type == "inline" and token.children:
            depth = 0
            for child in token.children:
                if child.type == "link_open":
                    depth += 1
                elif child.type == "link_close":
                    depth -= 1
                elif child.type == "image":
                    child.meta["in_link"] = depth > 0


def _code_html(code: str, lang: str, env: dict[str, Any]) -> str:
    """One ``<pre class="highlight"><code ...>`` block; Pygments spans when allowed."""
    canonical = _LEXER_ALIASES.get(lang.lower()) if lang else None
    lang_attr = f' class="language-{html.escape(canonical)}"' if canonical else ""
    body = None
    budget = env.get(_BUDGET_KEY, 0)
    if canonical and len(code) <= MAX_HIGHLIGHT_CHARS and len(code) <= budget:
        env[_BUDGET_KEY] = budget - len(code)
        try:
            lexer = find_lexer_class_by_name(canonical)(stripnl=False, ensurenl=True)
            body = pygments.highlight(code, lexer, _FORMATTER)
        except ClassNotFound:  # pragma: no cover - the alias table comes from Pygments itself
            body = None
        except Exception:  # pragma: no cover - a lexer bug must not lose the whole message
            log.exception("Pygments failed on a %s block; showing it as plain text", canonical)
            body = None
    if body is None:
        body = html.escape(code, quote=False)
    return f'<pre class="highlight"><code{lang_attr}>{body}</code></pre>\n'


def _render_fence(self: Any, tokens: Any, idx: int, options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    info = unescapeAll(token.info).strip() if token.info else ""
    lang = info.split(maxsplit=1)[0] if info else ""
    return _code_html(token.content, lang, env)


def _render_code_block(self: Any, tokens: Any, idx: int, options: Any, env: dict[str, Any]) -> str:
    return _code_html(tokens[idx].content, "", env)


def _render_image(self: Any, tokens: Any, idx: int, options: Any, env: dict[str, Any]) -> str:
    """``![alt](url)`` -> ``<a href=url>alt</a>``: never an ``<img>`` (no fetch on render)."""
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    src = token.attrGet("src") or ""
    if not src or token.meta.get("in_link", True):  # no nested <a> (unmarked: assume nested)
        return html.escape(alt or src)
    title = token.attrGet("title")
    title_attr = f' title="{html.escape(str(title))}"' if title else ""
    return f'<a href="{html.escape(str(src))}"{title_attr}>{html.escape(alt or str(src))}</a>'


def _build_markdown() -> MarkdownIt:
    md = MarkdownIt("js-default", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = _validate_link  # type: ignore[method-assign]
    # Per-instance helpers (md.helpers is the shared module by default; never patch that).
    md.helpers = SimpleNamespace(  # type: ignore[assignment]
        parseLinkLabel=_parse_link_label,
        parseLinkDestination=_parse_link_destination,
        parseLinkTitle=_parse_link_title,
    )
    md.core.ruler.push("hexgrid_postprocess", _postprocess)
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("code_block", _render_code_block)
    md.add_render_rule("image", _render_image)
    return md


_MD = _build_markdown()


# --------------------------------------------------------------------------- public API


def render_plain(text: str) -> str:
    """Escaped text for streaming previews (shown in a ``white-space: pre-wrap`` element)."""
    return html.escape(text, quote=True)


def _scrub(text: str) -> str:
    """Lone surrogates (possible after ``json.loads``) cannot cross into Rust; replace them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE_RE.sub("\ufffd", text)
    return text


def render_markdown(text: str, *, highlight: bool = True) -> str:
    """Untrusted markdown -> sanitized HTML fragment (a plain ``str``; the caller marks it safe).

    ``highlight=False`` skips Pygments (cheap re-renders while streaming); code blocks keep
    the same markup, just without token spans.
    """
    text = _scrub(text)
    if len(text) > MAX_RENDER_CHARS:
        return (
            f"<p><em>This response is too long to format ({len(text):,} characters); "
            "it is shown as plain text.</em></p>\n"
            f"<pre><code>{html.escape(text, quote=False)}</code></pre>\n"
        )
    env: dict[str, Any] = {
        _BUDGET_KEY: MAX_HIGHLIGHT_TOTAL if highlight else 0,
        _LINK_BUDGET_KEY: MAX_LINK_SCAN_STEPS,
    }
    return _CLEANER.clean(_MD.render(text, env))


def highlight_code(code: str, language: str) -> str:
    """Our own code (View code, the inspector: JSON, cURL, Python) as Pygments spans, escaped;
    plain escaped text past ``MAX_HIGHLIGHT_CHARS`` (a large response body is not worth lexing).
    The caller wraps it in ``<pre class="highlight">``."""
    if len(code) > MAX_HIGHLIGHT_CHARS * 10 or language not in _LEXER_ALIASES:
        return html.escape(code, quote=False)
    lexer = find_lexer_class_by_name(_LEXER_ALIASES[language])(stripnl=False, ensurenl=False)
    out = pygments.highlight(code, lexer, _FORMATTER)
    return out.removesuffix("\n") if not code.endswith("\n") else out  # the text as it was, to the byte


THEME_ATTRIBUTE = "data-theme"
"""``<html data-theme="auto|light|dark">`` (static/chat/theme.js, shared with the Django admin)."""


def pygments_css() -> str:
    """The stylesheet committed as ``static/chat/pygments.css`` (regenerate with
    ``python -m chat.rendering > static/chat/pygments.css``).

    Each style's rules appear twice: for its theme chosen in the page (``data-theme``), and for
    "auto" under the matching ``prefers-color-scheme`` query. The two sets never apply together,
    so no light-theme token rule (e.g. a bold the dark style does not define) leaks into dark mode.
    Only the scoped background and token rules are emitted: Pygments' line-number rules
    include an unscoped ``pre { line-height }`` that would restyle the whole page.
    """

    def rules(style: str, scope: str) -> str:
        formatter = HtmlFormatter(style=style)
        lines = formatter.get_background_style_defs(f"{scope} {CSS_SCOPE}") + formatter.get_token_style_defs(
            f"{scope} {CSS_SCOPE}"
        )
        return "\n".join("  " + line for line in lines)

    auto = f":root:not([{THEME_ATTRIBUTE}=light]):not([{THEME_ATTRIBUTE}=dark])"
    return (
        f"/* Generated by chat.rendering.pygments_css() from Pygments {pygments.__version__}"
        f" styles {LIGHT_STYLE!r} and {DARK_STYLE!r}; do not edit. */\n"
        f"@media not all and (prefers-color-scheme: dark) {{\n{rules(LIGHT_STYLE, auto)}\n}}\n"
        f"@media (prefers-color-scheme: dark) {{\n{rules(DARK_STYLE, auto)}\n}}\n"
        f"{rules(LIGHT_STYLE, f':root[{THEME_ATTRIBUTE}=light]').replace(chr(10) + '  ', chr(10)).strip()}\n"
        f"{rules(DARK_STYLE, f':root[{THEME_ATTRIBUTE}=dark]').replace(chr(10) + '  ', chr(10)).strip()}\n"
    )


# --------------------------------------------------------------------------- streaming

_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")
_FENCE_OPEN_RE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FENCE_CLOSE_RE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_BLANK_CHARS = ("", " ", "\t")  # a line starting with one of these is not "column 0 content"


def split_stable_prefix(text: str) -> tuple[str, str]:
    """Split streaming markdown into ``(stable, tail)`` with ``stable + tail == text``.

    ``stable`` ends at the last blank line that lies outside an open fenced code block and
    is followed by a line starting in column 0 with a non-blank character: at that point
    every block before it is closed, so it can be rendered once and appended, and only
    ``tail`` needs re-rendering as more text arrives. Monotone: for a growing text the
    stable part only grows. Known cosmetic differences from a full render (the final
    full render replaces the preview anyway): a loose list split into two lists, and
    link reference definitions that appear later in the text.
    """
    fence: tuple[str, int] | None = None  # (fence char, length) of the open fence
    split = 0
    after_blank = False  # previous complete line was blank, outside any fence
    pos = 0
    for match in _LINE_RE.finditer(text):
        line = match.group().rstrip("\r\n")
        if after_blank and line[:1] not in _BLANK_CHARS:
            split = match.start()
        if fence is not None:
            close = _FENCE_CLOSE_RE.fullmatch(line)
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= fence[1]:
                fence = None
            after_blank = False
        else:
            opened = _FENCE_OPEN_RE.fullmatch(line)
            if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
                fence = (opened.group(1)[0], len(opened.group(1)))
                after_blank = False
            else:
                after_blank = not line.strip(" \t")
        pos = match.end()
    # The unterminated last line may be the one that follows a blank line.
    rest = text[pos:]
    if after_blank and rest[:1] not in _BLANK_CHARS:
        split = pos
    return text[:split], text[split:]


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(pygments_css())
