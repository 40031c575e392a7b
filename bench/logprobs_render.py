"""How fast and small the logprob token view is: a 4,000-token answer with top_logprobs 5.

    .venv/bin/python bench/logprobs_render.py [--tokens 4000] [--top 5] [--runs 11] [--screenshot PATH]

Generates a synthetic answer (seeded: prose, code, newlines, CJK characters split
across byte tokens, a realistic spread of probabilities), renders the message
partial (chat/conversation.html#message, which includes chat/_logprobs.html)
with Django's template engine, and measures it in Debian's Chromium (Playwright,
--no-sandbox --disable-gpu --disable-background-networking), three ways:

- page (the target): page.set_content() of a static page with chat.css,
  logprobs.css and logprobs.js inlined (the script at the end of <body>, where a
  deferred script would run), timed from the first byte parsed;
- swap: the page is loaded first, then the message HTML is parsed and inserted,
  as htmx does with the final render that arrives over the websocket;
- file: a file:// navigation to the same page with the assets linked (deferred,
  as base.html does), timed from navigation start; the file loader feeds the
  parser in chunks, so on a busy machine this one also measures scheduling.

Time to interactive: performance.now() once the HTML is parsed, logprobs.js has
attached its handlers, a hover on the middle token has opened the popover with
its five alternatives, and the frame after it is painted (style and layout of
the token view included). The hovered token is on the first screen, as a
user's would be. Median of --runs fresh pages; the 1-minute load
average is printed, since other processes on the machine slow everything.
Targets: <= 200 ms and <= 1.5 MB of HTML (the message as the server sends it).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_MS = 200
TARGET_BYTES = 1_500_000
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

CORPUS = """The simulator answers like a vLLM server would: tokens arrive in small pieces, each with its
log probability and the five most likely alternatives. Reading them is how you see where a model
hesitated — a rare word, a date it was unsure of, the start of a code block.

```python
def perplexity(logprobs: list[float]) -> float:
    return math.exp(-sum(logprobs) / len(logprobs))
```

Tokens in other scripts are often split into bytes: 東京 and 你好 take several tokens each, and the
view shows each character at the token that completes it. Whitespace tokens are visible:\tspaces,
tabs and newlines. Numbers such as 3.14159 or 2026-11-22 come one digit at a time.
"""

POOL = [" the", ",", ".", " a", " and", " to", "\n", " of", " is", " it", " that", " model", " token", ":",
        " which", " was", " for", " on", " as", "\n\n", " be", " we", " data", " can", "(", ")", " in"]


def synthetic_logprobs(count: int, top: int, seed: int = 7) -> list[dict]:
    """`count` vLLM-shaped entries; most tokens likely, some doubtful, a few rare."""
    from chat.simulator.tokens import tokenize

    rng = random.Random(seed)
    pieces: list[bytes] = []
    while len(pieces) < count:
        for token in tokenize(CORPUS):
            data = token.encode()
            if len(data) > len(token):  # multi-byte characters: byte-level pieces, as byte-fallback BPE
                cut = rng.randrange(1, len(data))
                pieces.extend([data[:cut], data[cut:]])
            else:
                pieces.append(data)
    entries = []
    for data in pieces[:count]:
        token = data.decode("utf-8", "replace")
        roll = rng.random()
        p = rng.uniform(0.9, 0.9999) if roll < 0.7 else rng.uniform(0.3, 0.9) if roll < 0.92 else rng.uniform(0.0005, 0.3)
        alts, rest = [], 1 - p
        for alt in rng.sample(POOL, top):
            share = rest * rng.uniform(0.3, 0.7)
            rest -= share
            alts.append({"token": alt, "logprob": math.log(max(share, 1e-9)), "bytes": list(alt.encode())})
        chosen = {"token": token, "logprob": math.log(p), "bytes": list(data)}
        top_list = sorted([chosen, *alts[: top - 1]], key=lambda e: -e["logprob"])[:top]
        entries.append({**chosen, "top_logprobs": top_list})
    return entries


def setup_django() -> None:
    os.environ.setdefault("PLAYGROUND_DATA_DIR", tempfile.mkdtemp(prefix="hexgrid-bench-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    import django

    django.setup()


def render_message(entries: list[dict], reasoning_entries: list[dict] | None = None) -> str:
    from django.template.loader import render_to_string

    from chat.models import Conversation, Message

    content = "".join(bytes(e["bytes"]).decode("utf-8", "replace") for e in entries)
    logprobs = {"content": entries}
    reasoning = ""
    if reasoning_entries:
        logprobs["reasoning"] = reasoning_entries
        reasoning = "".join(bytes(e["bytes"]).decode("utf-8", "replace") for e in reasoning_entries)
    message = Message(conversation=Conversation(), role="assistant", content=content, reasoning=reasoning, logprobs=logprobs, status="complete")
    return render_to_string("chat/conversation.html#message", {"message": message, "answered_calls": ()})


PROBE = """// Hover a token on the first screen once logprobs.js is ready, then wait for the next painted frame.
window.__probe = function (t0) {
  "use strict";
  const view = document.querySelector(".lp-content");
  const tokens = view.querySelectorAll(".lp-ln > span");
  const token = tokens[Math.min(200, Math.floor(tokens.length / 2))];
  const ready = performance.now();
  token.dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
  const pop = document.getElementById("lp-pop");
  const rows = pop && !pop.hidden ? pop.querySelectorAll(".lp-alts li").length : 0;
  const hovered = performance.now();
  requestAnimationFrame(function () {
    const channel = new MessageChannel();
    channel.port1.onmessage = function () {
      window.__bench = { t0: t0, ready: ready, hovered: hovered, painted: performance.now(), rows: rows,
                         tokens: tokens.length };
    };
    channel.port2.postMessage(0);
  });
};
// The htmx path: parse the message HTML into a fragment and insert it.
window.__swap = function (html) {
  const t0 = performance.now();
  const template = document.createElement("template");
  template.innerHTML = html;
  document.querySelector(".messages").replaceChildren(template.content);
  window.__probe(t0);
};
"""


def _static(name: str) -> Path:
    return ROOT / "static" / "chat" / name


def inline_page(body: str) -> str:
    """Everything in one document: the CSS in <style>, logprobs.js and the probe at the end of <body>."""
    css = "".join(_static(n).read_text() for n in ("tokens.css", "chat.css", "logprobs.css"))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>logprobs bench</title>'
            f"<script>window.__t0 = performance.now();</script><style>{css}</style></head>"
            f'<body><main><div class="messages">{body}</div></main>'
            f"<script>{_static('logprobs.js').read_text()}</script>"
            f"<script>{PROBE}\nwindow.__probe(window.__t0);</script></body></html>")


def linked_page(body: str, probe: Path | None) -> str:
    """The assets by file:// URL, deferred as in base.html."""
    links = "".join(f'<link rel="stylesheet" href="{_static(n).as_uri()}">' for n in ("tokens.css", "chat.css", "logprobs.css"))
    scripts = f'<script src="{_static("logprobs.js").as_uri()}" defer></script>'
    if probe:
        scripts += f'<script src="{probe.as_uri()}" defer></script>'
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>logprobs bench</title>{links}{scripts}'
            f'</head><body><main><div class="messages">{body}</div></main></body></html>')


def _result(page) -> dict:
    page.wait_for_function("window.__bench !== undefined", timeout=20_000)
    result = page.evaluate("window.__bench")
    # The same with a real pointer and keyboard, untimed: the popover follows them.
    page.locator(".lp-content .lp-ln > span").nth(10).hover()
    assert page.locator("#lp-pop .lp-alts li").count() >= 2
    page.keyboard.press("Tab")
    return result


def measure(browser, how: str, body: str, page_html: str, file_url: str) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    if how == "page":
        page.set_content(page_html)
    elif how == "swap":
        page.set_content(inline_page("").replace("window.__probe(window.__t0);", ""))
        page.evaluate("html => window.__swap(html)", body)
    else:
        page.goto(file_url)
    result = _result(page)
    context.close()
    return result


SHOT_THINKING = "The user asks for the capital of Australia. Many people say Sydney; it is Canberra.\n"
SHOT_ANSWER = (
    "The capital of Australia is **Canberra** \u2014 not Sydney, its largest city.\n\n"
    "Canberra was chosen in 1908 as a compromise between Sydney and Melbourne, "
    "and Parliament moved there in 1927.\n\n"
    "Today it is home to about 460,000 people, far fewer than Sydney's five million, "
    "and it hosts the High Court, the National Library and most federal departments.\n"
)
# token -> (probability, alternatives): where a model would hesitate
SHOT_DOUBTS = {
    "Canberr": (0.62, [("Sydney", 0.31), ("Melbourne", 0.04), ("C", 0.01), ("the", 0.005)]),
    "8": (0.38, [("1", 0.29), ("9", 0.12), ("0", 0.07), ("3", 0.05)]),
    " compro": (0.71, [(" rival", 0.12), (" neutral", 0.08), (" site", 0.03), (" middle", 0.02)]),
    "7": (0.55, [("8", 0.21), ("3", 0.11), ("0", 0.06), ("6", 0.03)]),
    " larges": (0.83, [(" biggest", 0.1), (" most", 0.04), (" best", 0.01), (" capital", 0.005)]),
    " Parlia": (0.09, [(" the", 0.46), (" government", 0.33), (" it", 0.06), (" Cabinet", 0.03)]),
}


def illustrated_logprobs(text: str, seed: int) -> list[dict]:
    """`text` as tokens with mostly confident probabilities and SHOT_DOUBTS where it matters;
    an em dash split across two byte tokens."""
    from chat.simulator.tokens import tokenize

    rng = random.Random(seed)
    entries, seen = [], set()
    for token in tokenize(text):
        data = token.encode()
        pieces = [data[:1], data[1:3], data[3:]] if token == " \u2014" else [data]  # byte-fallback pieces
        for piece in pieces:
            name = piece.decode("utf-8", "replace")
            p, alts = SHOT_DOUBTS.get(name, (None, None)) if name not in seen else (None, None)
            seen.add(name)
            if p is None:
                p = rng.uniform(0.6, 0.95) if rng.random() < 0.15 else rng.uniform(0.95, 0.999)
                alts = [(a, (1 - p) * w) for a, w in zip(rng.sample(POOL, 4), (0.5, 0.25, 0.1, 0.05))]
            chosen = {"token": name, "logprob": math.log(p), "bytes": list(piece)}
            top = [chosen] + [{"token": a, "logprob": math.log(q), "bytes": list(a.encode())} for a, q in alts if a != name]
            entries.append({**chosen, "top_logprobs": sorted(top, key=lambda e: -e["logprob"])[:5]})
    return entries


def screenshot(browser, path: Path, tmp: Path) -> None:
    """A short answer with its thinking tokens, the popover open on a doubtful token (the README's
    pictures come from tests/browser/screenshots.py, in the app itself)."""
    html = linked_page(render_message(illustrated_logprobs(SHOT_ANSWER, 1), illustrated_logprobs(SHOT_THINKING, 2)), None)
    file = tmp / "shot.html"
    file.write_text(html, encoding="utf-8")
    context = browser.new_context(viewport={"width": 860, "height": 470}, device_scale_factor=1)
    page = context.new_page()
    page.goto(file.as_uri())
    page.wait_for_function("document.documentElement.dataset.lpReady !== undefined")
    page.locator(".lp-content .lp-ln > span", has_text="Canberr").first.hover()
    page.wait_for_selector("#lp-pop:not([hidden])")
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--screenshot", type=Path, help="also save a PNG of a short answer with the popover open")
    args = parser.parse_args()

    setup_django()
    from playwright.sync_api import sync_playwright

    entries = synthetic_logprobs(args.tokens, args.top)
    render_ms = []
    for _ in range(args.runs):
        started = time.perf_counter()
        body = render_message(entries)
        render_ms.append((time.perf_counter() - started) * 1000)
    size = len(body.encode("utf-8"))

    results: dict[str, list[dict]] = {"page": [], "swap": [], "file": []}
    with tempfile.TemporaryDirectory(prefix="hexgrid-lp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        probe = tmp / "probe.js"
        probe.write_text(PROBE + "\nwindow.__probe(0);\n", encoding="utf-8")
        linked = tmp / "page.html"
        linked.write_text(linked_page(body, probe), encoding="utf-8")
        inline = inline_page(body)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for how in results:  # warm-up: Chromium's caches, not ours
                measure(browser, how, body, inline, linked.as_uri())
            for _ in range(args.runs):  # interleaved: a busy moment hits all three alike
                for how, runs in results.items():
                    runs.append(measure(browser, how, body, inline, linked.as_uri()))
            if args.screenshot:
                screenshot(browser, args.screenshot, tmp)
            browser.close()

    for runs in results.values():
        assert all(r["rows"] == args.top and r["tokens"] == args.tokens for r in runs), runs
    if os.environ.get("BENCH_VERBOSE"):
        for how, runs in results.items():
            for r in runs:
                print(how, {k: round(v, 1) for k, v in r.items()})

    def median(how: str, key: str, start: str = "t0") -> float:
        return statistics.median(r[key] - r[start] for r in results[how])

    tti = median("page", "painted")
    ok_time, ok_size = tti <= TARGET_MS, size <= TARGET_BYTES
    print(f"{args.tokens} tokens, top_logprobs {args.top}: median of {args.runs} runs "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"  server render (Django template):  {statistics.median(render_ms):7.1f} ms")
    print(f"  page: parsed, script ready:       {median('page', 'ready'):7.1f} ms")
    print(f"        first hover -> popover:     {median('page', 'hovered', 'ready'):7.1f} ms")
    print(f"        -> next frame painted:      {median('page', 'painted', 'hovered'):7.1f} ms")
    print(f"  swap (htmx, final render):        {median('swap', 'painted'):7.1f} ms to interactive")
    print(f"  file:// navigation (info):        {median('file', 'painted'):7.1f} ms to interactive")
    best = min(r["painted"] - r["t0"] for r in results["page"])
    print(f"  time to interactive (page):       {tti:7.1f} ms   target <= {TARGET_MS} ms     {'PASS' if ok_time else 'FAIL'}"
          f"  (best run {best:.0f} ms)")
    print(f"  HTML size:                        {size / 1e6:7.3f} MB   target <= {TARGET_BYTES / 1e6:.1f} MB   "
          f"{'PASS' if ok_size else 'FAIL'}  ({size / args.tokens:.0f} bytes/token)")
    if args.screenshot:
        print(f"  screenshot: {args.screenshot}")
    return 0 if ok_time and ok_size else 1


if __name__ == "__main__":
    sys.exit(main())
