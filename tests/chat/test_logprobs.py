"""chat.logprobs: token spans (escaping, bytes across tokens, visible whitespace), the reasoning/answer
split, the summary, and the live views: what a stream appends equals the final and the non-stream render."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from django.template.loader import render_to_string

from chat.logprobs import (
    LiveTokens,
    ThinkRouter,
    TokenRenderer,
    format_logprob,
    format_percent,
    render_tokens,
    split_tokens,
    summarize,
    token_view,
)
from chat.models import Conversation, Message
from chat.upstream.chunks import (
    ContentDelta,
    LogprobsDelta,
    ReasoningDelta,
    StreamAccumulator,
    StreamParser,
)
from chat.upstream.thinking import split_thinking

TRANSCRIPTS = Path(__file__).parent.parent / "fixtures" / "vllm-transcripts"


# --- helpers ---------------------------------------------------------------------------


@dataclass
class Span:
    classes: set[str]
    attrs: dict[str, str]
    text: str

    @property
    def alternatives(self) -> list[list]:
        return json.loads(self.attrs["data-a"])


class _Spans(HTMLParser):
    """Token spans in line blocks; anything else is reported."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.spans: list[Span] = []
        self.lines: list[list[Span]] = []
        self.depth = 0
        self.other_tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "div" and attrs in ([("class", "lp-ln")], [("class", "lp-ln lz")]) and not self.depth:
            self.lines.append([])
            return
        if tag != "span" or self.depth or not self.lines:
            self.other_tags.append(tag)
            return
        self.depth += 1
        attrs = dict(attrs)
        self.spans.append(Span(set((attrs.get("class") or "").split()), attrs, ""))
        self.lines[-1].append(self.spans[-1])

    def handle_endtag(self, tag):
        if tag == "span":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.spans[-1].text += data
        elif data.strip():
            self.other_tags.append(f"text:{data!r}")


def _parse(html: str) -> _Spans:
    parser = _Spans()
    parser.feed(html)
    parser.close()
    assert parser.other_tags == [], f"unexpected markup: {parser.other_tags}"
    return parser


def spans(html: str) -> list[Span]:
    return _parse(html).spans


def lines(html: str) -> list[str]:
    return ["".join(s.text for s in line) for line in _parse(html).lines]


def apply(html: str, carry: str, new_lines: str) -> str:
    """What the browser holds after a live batch: `carry` appended into the last line block, then new blocks."""
    if carry:
        assert html.endswith("</div>")
        html = html[: -len("</div>")] + carry + "</div>"
    return html + new_lines


def tok(text: str, lp: float | None = -0.1, top=None, raw: bytes | None | str = "auto") -> dict:
    entry = {"token": text, "logprob": lp}
    if raw == "auto":
        entry["bytes"] = list(text.encode("utf-8"))
    elif raw is not None:
        entry["bytes"] = list(raw)
    if top is not None:
        entry["top_logprobs"] = top
    return entry


def transcript_body(name: str) -> str:
    return (TRANSCRIPTS / name).read_text().split("### BODY (raw, exactly as received)\n", 1)[1]


def accumulate(sse: bytes | str) -> tuple[dict, list]:
    parser, acc, events = StreamParser(), StreamAccumulator(), []
    for event in parser.feed(sse) + parser.close():
        acc.feed(event)
        events.append(event)
    return acc.result()["choices"][0], events


# --- spans: escaping ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["<script>alert(1)</script>", '"', "'", "&amp;", "</span><b>x</b>", "a'b\"c<d>&e"])
def test_token_text_and_alternatives_are_escaped(text):
    html = render_tokens([tok(text, top=[tok(text), tok(f"<img src=x onerror='{text}'>")])])
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    [span] = spans(html)
    assert span.text == text
    assert span.alternatives[0][:1] == [text] and span.alternatives[1][0] == f"<img src=x onerror='{text}'>"


def test_a_span_is_compact_and_the_first_token_is_the_only_tab_stop():
    html = render_tokens([tok("Hello", -0.0036, top=[tok("Hello", -0.0036), tok("<tool_call>", -7.691)]), tok("!")])
    assert html.startswith(
        """<div class="lp-ln"><span class="p9" tabindex="0" data-a='[["Hello",-0.0036,1],["&lt;tool_call&gt;",-7.69]]'>Hello</span>"""
    )
    first, second = spans(html)
    assert first.attrs["tabindex"] == "0" and "tabindex" not in second.attrs


# --- spans: bytes ---------------------------------------------------------------------------


def test_a_character_split_across_tokens_shows_at_the_token_that_completes_it():
    ni = "你".encode()  # e4 bd a0
    html = render_tokens([tok("a"), tok("", raw=ni[:2]), tok("", raw=ni[2:]), tok("b")])
    a, head, tail, b = spans(html)
    assert (a.text, head.text, tail.text, b.text) == ("a", "‹e4 bd›", "你", "b")
    assert "b" in head.classes and "b" in tail.classes  # not valid UTF-8 on their own: marked
    assert "b" not in a.classes and "b" not in b.classes
    assert head.alternatives == [["‹e4 bd›", -0.1, 3]]  # chosen + bytes flag


def test_a_four_byte_character_over_three_tokens():
    smile = "😀".encode()  # f0 9f 98 80
    parts = [smile[:1], smile[1:3], smile[3:]]
    shown = [s.text for s in spans(render_tokens([tok("", raw=p) for p in parts]))]
    assert shown == ["‹f0›", "‹9f 98›", "😀"]


def test_an_unfinished_character_is_abandoned_when_a_new_character_starts():
    html = render_tokens([tok("", raw=b"\xe4\xbd"), tok("A"), tok("é")])
    assert [s.text for s in spans(html)] == ["‹e4 bd›", "A", "é"]


def test_bytes_that_are_no_utf8_at_all_are_marked_not_garbled():
    [bad, ok] = spans(render_tokens([tok("\ufffd", raw=b"\xff\xfe"), tok("ok")]))
    assert bad.text == "‹ff fe›" and "b" in bad.classes and "\ufffd" not in bad.text
    assert ok.text == "ok"
    # A real U+FFFD the model chose to write is text, not a marker.
    [real] = spans(render_tokens([tok("\ufffd")]))
    assert real.text == "\ufffd" and "b" not in real.classes


def test_missing_bytes_fall_back_to_the_token_string():
    [span] = spans(render_tokens([tok(" café", raw=None)]))
    assert span.text == " café" and "b" not in span.classes
    # A lone surrogate from JSON cannot be sent as UTF-8: replaced.
    html = render_tokens([tok("\ud83d", raw=None)])
    html.encode("utf-8")
    assert spans(html)[0].text == "\ufffd"


def test_rendering_in_pieces_equals_rendering_at_once():
    text = "Zürich 你好 😀\n\tend"
    data = text.encode()
    entries = [tok("", raw=data[i : i + 2]) for i in range(0, len(data), 2)] + [tok("x", raw=None), tok(" y")]
    whole = render_tokens(entries)
    for cut in range(len(entries) + 1):
        for second in range(cut, len(entries) + 1):
            renderer, html = TokenRenderer(), ""
            for batch in (entries[:cut], entries[cut:second], entries[second:]):
                html = apply(html, *renderer.render_batch(batch))
            assert html == whole
    shown = "".join(s.text for s in spans(whole) if "‹" not in s.text)
    assert shown.replace("↵", "").replace("→", "\t").replace("·", " ") == text + "x y"


# --- spans: whitespace and empty tokens -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [(" ", "·"), ("  ", "··"), ("\n", "↵\n"), ("\n\n", "↵\n↵\n"), ("\t", "→"), (" \n", "·↵\n"), ("\r\n", "␍↵\n"),
     ("\u00a0", "⍽"), ("\u3000", "·")],
)
def test_whitespace_tokens_are_visible(text, shown):
    [span] = spans(render_tokens([tok(text)]))
    assert span.text == shown and "w" in span.classes
    assert span.alternatives[0][0] == text  # the real text, for the popover


def test_words_keep_their_spaces_and_control_characters_are_drawn():
    a, b = spans(render_tokens([tok(" model"), tok("a\x00b\x1b")]))
    assert a.text == " model" and "w" not in a.classes
    assert b.text == "a␀b␛"


def test_an_empty_token_is_shown_as_empty():
    [span] = spans(render_tokens([tok("")]))
    assert span.text == "∅" and "e" in span.classes


# --- spans: probabilities and alternatives -----------------------------------------------------


@pytest.mark.parametrize(
    ("p", "classes"),
    [(1.0, {"p9"}), (0.95, {"p9"}), (0.5, {"p5"}), (0.1, {"p1"}), (0.099, {"p0"}), (0.03, {"p0", "l5"}),
     (0.001, {"p0", "l1"}), (0.0, {"p0", "l1"})],
)
def test_probability_buckets(p, classes):
    lp = math.log(p) if p else -9999.0
    [span] = spans(render_tokens([tok("x", lp)]))
    assert span.classes == classes


def test_missing_logprob_is_unscored():
    [span] = spans(render_tokens([tok("x", None)]))
    assert span.classes == {"pn"} and span.alternatives == [["x", None, 1]]


def test_missing_or_empty_top_logprobs_keep_the_chosen_token():
    for top in (None, []):
        [span] = spans(render_tokens([tok("x", -0.5, top=top)]))
        assert span.alternatives == [["x", -0.5, 1]]


def test_a_chosen_token_outside_the_top_is_appended_and_flagged():
    [span] = spans(render_tokens([tok(" rare", -6.0, top=[tok(" the", -0.2), tok(" a", -1.9)])]))
    assert span.alternatives == [[" the", -0.2], [" a", -1.9], [" rare", -6, 5]]


def test_alternative_bytes_that_are_not_utf8_alone_are_hex():
    [span] = spans(render_tokens([tok("x", top=[tok("x"), tok("?", -3.0, raw=b"\xe4\xbd")])]))
    assert span.alternatives == [["x", -0.1, 1], ["‹e4 bd›", -3, 2]]


def test_numbers_are_formatted_alike_in_python_and_js():
    assert [format_percent(p) for p in (0.99642, 0.452, 0.032, 0.0012, 0.00001, None)] == [
        "99.6%", "45.2%", "3.2%", "0.12%", "<0.01%", "n/a"]
    assert [format_logprob(v) for v in (-0.0035859, -7.6910858, -9999.0, None)] == ["-0.00359", "-7.69", "-9999", "n/a"]


# --- reasoning vs answer --------------------------------------------------------------------


def test_07k_non_stream_reasoning_tokens_mixed_into_content_go_to_reasoning():
    choice = json.loads(transcript_body("07k_logprobs_with_reasoning.txt"))["choices"][0]
    message = choice["message"]
    reasoning, content = split_tokens(choice["logprobs"], message["reasoning"], message["content"] or "")
    assert len(reasoning) == 12 and content == []
    assert reasoning[0]["token"] == "<think>"


def test_mixed_tokens_split_after_the_close_tag():
    tokens = [tok(t) for t in ["<think>", "\n", "Hmm", ".", "\n", "</think>", "\n\n", "Hi", "!", "<|im_end|>"]]
    reasoning, content = split_tokens({"content": tokens}, "\nHmm.\n", "\n\nHi!")
    assert [t["token"] for t in reasoning] == ["<think>", "\n", "Hmm", ".", "\n", "</think>"]
    assert [t["token"] for t in content] == ["\n\n", "Hi", "!", "<|im_end|>"]
    # Mistral's tags, and a tag cut across tokens.
    tokens = [tok(t) for t in ["[THINK]", "ok", "[/", "THINK", "]", "Yes"]]
    reasoning, content = split_tokens({"content": tokens}, "ok", "Yes")
    assert [t["token"] for t in content] == ["Yes"]


def test_a_template_opened_block_has_only_the_close_tag():
    tokens = [tok(t) for t in ["Let", " me", " think", "</think>", "Done"]]
    reasoning, content = split_tokens({"content": tokens}, "Let me think", "Done")
    assert [t["token"] for t in reasoning] == ["Let", " me", " think", "</think>"]
    assert [t["token"] for t in content] == ["Done"]


def test_without_tags_the_reasoning_is_matched_by_its_text():
    tokens = [tok(t) for t in ["Plan", ":", " yes", "Answer", "<eos>"]]
    reasoning, content = split_tokens({"content": tokens}, "Plan: yes", "Answer")
    assert [t["token"] for t in reasoning] == ["Plan", ":", " yes"]
    assert [t["token"] for t in content] == ["Answer", "<eos>"]


def test_already_split_and_answer_only_logprobs_are_kept():
    a, b = [tok("r")], [tok("c")]
    assert split_tokens({"content": b, "reasoning": a}, "r", "c") == (a, b)
    assert split_tokens({"content": b}, "", "c") == ([], b)
    assert split_tokens(None) == ([], [])


def test_the_router_routes_tags_and_what_is_between():
    router = ThinkRouter()
    kinds = [router.route(tok(t)) for t in ["Hi", "<th", "ink>", "x", "</think>", "y", "<think>", "z"]]
    assert kinds == ["content", "content", "reasoning", "reasoning", "reasoning", "content", "reasoning", "reasoning"]


# --- summary -----------------------------------------------------------------------------------


def test_summary_math():
    entries = [tok("a", -0.1), tok("b", -1.0), tok("c", -3.0), tok("d", None), tok("e", math.log(0.05))]
    s = summarize(entries)
    scored = [-0.1, -1.0, -3.0, math.log(0.05)]
    assert s.count == 5 and s.scored == 4
    assert s.mean_logprob == pytest.approx(sum(scored) / 4)
    assert s.perplexity == pytest.approx(math.exp(-sum(scored) / 4))
    assert s.under == 2  # c (5.0%) and e (5%) are under 10%
    assert summarize(entries, threshold=0.01).under == 0
    assert summarize(entries, threshold=0.5).under == 3
    assert [(u.index, u.text) for u in s.least] == [(2, "c"), (4, "e"), (1, "b"), (0, "a")]
    assert s.least[0].percent == "5%" and s.least[0].logprob_text == "-3"


def test_summary_keeps_ten_least_likely_and_is_none_without_logprobs():
    entries = [tok(str(i), -i / 10) for i in range(40)]
    assert [u.index for u in summarize(entries).least] == list(range(39, 29, -1))
    assert summarize([tok("x", None)]) is None and summarize([]) is None


def test_least_likely_text_is_visible_and_escaped_in_the_page():
    message = Message(role="assistant", content="\n<b>", logprobs={"content": [tok("\n", -5.0), tok("<b>", -4.0)]})
    html = render_to_string("chat/_logprobs.html#logprobs", {"message": message})
    assert "<code>↵</code>" in html and "<code>&lt;b&gt;</code>" in html and "<code><b>" not in html


# --- the partial -------------------------------------------------------------------------------


def token_html(html: str, message, view: str) -> str | None:
    """The inner HTML of one token view in a rendered page or fragment."""
    pattern = rf'<div id="msg-{message.public_id}-lp-{view}"[^>]*>((?:<div class="lp-ln">.*?</div>)*)</div>'
    match = re.search(pattern, html, flags=re.DOTALL)
    return match and match.group(1)


def test_the_partial_renders_both_views_the_summary_and_controls():
    choice = json.loads(transcript_body("07f_logprobs.txt"))["choices"][0]
    message = Message(conversation=Conversation(), role="assistant", content=choice["message"]["content"],
                      logprobs=choice["logprobs"])
    html = render_to_string("chat/conversation.html#message", {"message": message, "answered_calls": ()})
    assert token_html(html, message, "content") == render_tokens(choice["logprobs"]["content"])
    assert token_html(html, message, "reasoning") is None  # no thinking tokens: no thinking view
    assert 'data-lp-view="tokens"' in html and "data-lp-heat" in html and "data-lp-mode" in html
    assert "perplexity" in html and html.count("data-lp-jump=") == 8


def test_a_streaming_message_has_empty_views_and_others_none():
    streaming = Message(role="assistant", status="streaming")
    html = render_to_string("chat/_logprobs.html#logprobs", {"message": streaming})
    assert token_html(html, streaming, "content") == "" and token_html(html, streaming, "reasoning") == ""
    assert "lp-summary" not in html
    for message in (Message(role="assistant", content="hi"), Message(role="user", content="hi", logprobs={"content": [tok("x")]})):
        assert render_to_string("chat/_logprobs.html#logprobs", {"message": message}).strip() == ""


# --- live == final == non-stream ---------------------------------------------------------------


def live_views(events, *, route_inline=False, every=3) -> dict[str, str]:
    """What a run appends, taking a batch every few events (and at the end)."""
    live, out = LiveTokens(route_inline=route_inline), {"reasoning": "", "content": ""}
    for i, event in enumerate(events):
        if getattr(event, "choice", 0) == 0:
            live.feed(event)
        if i % every == 0:
            for view, batch in live.take().items():
                out[view] = apply(out[view], *batch)
    for view, batch in live.take().items():
        out[view] = apply(out[view], *batch)
    return out


def final_views(choice: dict, *, inline=False) -> dict[str, str]:
    message = choice["message"]
    reasoning, content = message.get("reasoning") or message.get("reasoning_content") or "", message["content"] or ""
    if inline and not reasoning:
        reasoning, content = split_thinking(content)
    view = token_view(choice["logprobs"], reasoning=reasoning, content=content)
    return {"reasoning": view.reasoning.html, "content": view.content.html}


def test_07g_stream_live_equals_the_07f_non_stream_render():
    streamed, events = accumulate(transcript_body("07g_logprobs_stream.txt"))
    non_stream = json.loads(transcript_body("07f_logprobs.txt"))["choices"][0]
    for every in (1, 2, 5, 100):
        assert live_views(events, every=every) == final_views(streamed) == final_views(non_stream)
    assert final_views(non_stream)["content"].count("<span") == 8


@pytest.mark.parametrize("model", ["sim/qwen3", "sim/qwen3-no-parser", "sim/magistral", "sim/qwen3-legacy"])
def test_simulated_stream_live_equals_final_equals_non_stream(simulator, model):
    body = {
        "model": model, "messages": [{"role": "user", "content": "Explain 你好 and café, <b>&</b> \"quotes\""}],
        "logprobs": True, "top_logprobs": 5, "chat_template_kwargs": {"enable_thinking": True},
    }
    headers = {"Authorization": "Bearer sim-test-key-1234"}
    with httpx.Client(base_url=simulator, headers=headers, timeout=10) as client:
        non_stream = client.post("/chat/completions", json=body).json()["choices"][0]
        sse = client.post("/chat/completions", json={**body, "stream": True}).content
    streamed, events = accumulate(sse)
    inline = model == "sim/qwen3-no-parser"
    final = final_views(streamed, inline=inline)
    assert final["reasoning"] and final["content"]  # both views have tokens
    for every in (1, 4, 50):
        assert live_views(events, route_inline=inline, every=every) == final
    assert final_views(non_stream, inline=inline) == final
    assert "<b>" not in final["content"] and "你" in final["content"]


def test_tokens_before_any_text_wait_for_it():
    """A chunk with tokens but no text (vLLM's `"delta": {}`) is filed with the text that follows."""
    live = LiveTokens()
    live.feed(LogprobsDelta(0, [tok("<think>")], None))
    assert live.take() == {}
    live.feed(ReasoningDelta(0, "Hm"))
    live.feed(LogprobsDelta(0, [tok("Hm")], "reasoning"))
    live.feed(LogprobsDelta(0, [tok("</think>")], None))  # no text: with the text before
    live.feed(ContentDelta(0, "Yes"))
    live.feed(LogprobsDelta(0, [tok("Yes")], "content"))
    taken = {view: carry + new for view, (carry, new) in live.take().items()}
    assert [s.text for s in spans(taken["reasoning"])] == ["<think>", "Hm", "</think>"]
    assert [s.text for s in spans(taken["content"])] == ["Yes"]
    assert live.logprobs()["reasoning"][0]["token"] == "<think>"


# --- over the socket: the consumer against the simulator ----------------------------------------

SIM_KEY = "sim-logprobs-key"


@pytest.fixture(scope="module")
def sim():
    from chat.simulator import make_simulator
    from tests.servers import FaultInjector, serve_asgi

    injector = FaultInjector(make_simulator(api_key=SIM_KEY, token_delay=0.0))
    with serve_asgi(injector) as url:
        injector.url = url + "/v1"
        yield injector


def _conversation(owner, sim, model: str, **options):
    from chat.forms import family_defaults
    from chat.models import ApiKey, Conversation, Endpoint

    key = ApiKey(name=f"logprobs {model} {options}")
    key.set_secret(SIM_KEY)
    key.save()
    endpoint = Endpoint.objects.create(
        name=f"{model} {options}", base_url=sim.url, model_id=model, api_key=key,
        reasoning_parser=model != "sim/qwen3-no-parser",
    )
    values = {**family_defaults(endpoint), "logprobs": True, "top_logprobs": 5, **options}
    if not values.get("stream"):
        values.pop("stream_options", None)
    return Conversation.objects.create(owner=owner, endpoint=endpoint, options=values)


async def _run(owner, conversation, text: str) -> list[str]:
    from tests.sockets import Socket

    from playground.asgi import application

    ws = Socket(
        application, f"/ws/conversations/{conversation.public_id}/", headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    )
    ws.scope["user"] = owner
    connected, _ = await ws.connect()
    assert connected
    await ws.receive_from()  # the snapshot
    await ws.send_to(text_data=json.dumps({"action": "send", "content": text, "HEADERS": {"HX-Request": "true"}}))
    frames = []
    while not frames or 'data-state="idle"' not in frames[-1]:
        frames.append(await ws.receive_from(timeout=10))
    await ws.disconnect()
    return frames


def _replies(conversation) -> list[Message]:
    return list(conversation.messages.filter(role="assistant").order_by("choice_index"))


def appended(frames: list[str], message, view: str) -> str:
    """The token view a viewer holds after the live frames, applying their out-of-band swaps in order."""
    target = f"msg-{message.public_id}-lp-{view}"
    carry = re.escape(f'<div hx-swap-oob="beforeend:#{target} > :last-child">') + "(.*?)</div>"
    new = re.escape(f'<div id="{target}" hx-swap-oob="beforeend">') + '((?:<div class="lp-ln">.*?</div>)+)</div>'
    html = ""
    for frame in frames:
        for match in re.finditer(f"{carry}|{new}", frame, flags=re.DOTALL):
            html = apply(html, match.group(1) or "", match.group(2) or "")
    return html


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("model", ["sim/qwen3", "sim/qwen3-no-parser"])
async def test_live_token_fragments_add_up_to_the_final_view_and_the_non_stream_one(owner, sim, model):
    from channels.db import database_sync_to_async

    sim.headers = {"x-sim-delay-token": "0.003"}
    streamed = await database_sync_to_async(_conversation)(owner, sim, model)
    frames = await _run(owner, streamed, "Hello 你好, tell me <b>more</b>")
    [reply] = await database_sync_to_async(_replies)(streamed)
    assert reply.status == "complete" and reply.logprobs["content"]

    final = frames[-1]
    live_frames = [f for f in frames[:-1] if "-lp-" in f]
    assert len(live_frames) > 2  # tokens were tinted as they streamed, in batches
    for view in ("reasoning", "content"):
        assert appended(frames, reply, view) == token_html(final, reply, view) != ""

    sim.headers = {}
    plain = await database_sync_to_async(_conversation)(owner, sim, model, stream=False)
    frames = await _run(owner, plain, "Hello 你好, tell me <b>more</b>")
    [other] = await database_sync_to_async(_replies)(plain)
    assert "reasoning" not in other.logprobs  # vLLM's non-stream shape: one mixed list
    for view in ("reasoning", "content"):
        assert token_html(frames[-1], other, view) == token_html(final, reply, view)


@pytest.mark.django_db(transaction=True)
async def test_each_of_n_choices_has_its_own_view(owner, sim):
    from channels.db import database_sync_to_async

    conversation = await database_sync_to_async(_conversation)(owner, sim, "sim/llama-3.3", n=2)
    frames = await _run(owner, conversation, "Hello")
    first, second = await database_sync_to_async(_replies)(conversation)
    final = frames[-1]
    assert token_html(final, first, "content") == render_tokens(first.logprobs["content"])
    assert token_html(final, second, "content") == render_tokens(second.logprobs["content"])
    assert first.logprobs != second.logprobs and second.choice_index == 1
    assert appended(frames, second, "content") == ""  # only the first choice streams live


def test_line_blocks_end_after_newline_tokens():
    html = render_tokens([tok("a"), tok("\n"), tok("b"), tok(".\n\nc"), tok("d.\n"), tok("\n\n"), tok("e")])
    assert lines(html) == ["a↵\n", "b.↵\n↵\ncd.↵\n", "↵\n↵\n", "e"]
    assert render_tokens([]) == ""


def test_line_blocks_after_the_first_screens_are_lazy():
    from chat.logprobs import EAGER

    entries = [tok("x\n")] * (EAGER + 3)
    html = render_tokens(entries)
    assert html.count('<div class="lp-ln">') == EAGER and html.count('<div class="lp-ln lz">') == 3
    renderer, live = TokenRenderer(), ""
    for i in range(0, len(entries), 7):
        live = apply(live, *renderer.render_batch(entries[i : i + 7]))
    assert live == html
