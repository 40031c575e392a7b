"""SSEDecoder: line endings split anywhere, multi-line data, comments, [DONE]."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chat.upstream.sse import DONE, SSEDecoder

from .conftest import split_at, stream_transcripts


def decode(pieces) -> list:
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.flush()


def test_decoder_returns_the_data_of_each_event():
    assert decode(['data: {"a": 1}\n\ndata: {"b": 2}\n\n']) == ['{"a": 1}', '{"b": 2}']


def test_decoder_reports_done_as_a_sentinel():
    decoder = SSEDecoder()
    assert decoder.feed("data: x\n\ndata: [DONE]\n\n") == ["x", DONE]
    assert decoder.done
    assert repr(DONE) == "DONE"


def test_decoder_joins_multiline_data_with_newlines():
    assert decode(["data: one\ndata: two\ndata:three\n\n"]) == ["one\ntwo\nthree"]


def test_decoder_ignores_comments_and_other_fields():
    text = ": keep-alive\nevent: message\nid: 7\nretry: 100\nfoo\ndata: x\n\n: ping\n\n"
    assert decode([text]) == ["x"]


def test_decoder_handles_crlf_split_across_reads():
    assert decode(["data: a\r", "\n\r", "\n"]) == ["a"]


def test_decoder_handles_cr_alone():
    assert decode(["data: a\rdata: b\r\r"]) == ["a\nb"]


def test_decoder_handles_bytes_split_inside_a_character():
    raw = "data: 22°C ☀\n\n".encode()
    assert decode([raw[i : i + 1] for i in range(len(raw))]) == ["22°C ☀"]


def test_decoder_skips_a_leading_bom_only():
    assert decode(["\ufeffdata: a\n\n", "data: \ufeffb\n\n"]) == ["a", "\ufeffb"]


def test_flush_keeps_an_event_without_its_blank_line():
    # Some imitation servers close right after the last data line.
    assert decode(["data: a\n\ndata: [DONE]"]) == ["a", DONE]
    assert decode(["data: a\n"]) == ["a"]


def test_blank_lines_without_data_yield_nothing():
    assert decode(["", b"", "\n\n\n", ": c\n\n"]) == []


def test_an_empty_data_line_is_an_empty_event():
    assert decode(["data:\n\n"]) == [""]  # as the WHATWG algorithm says


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_any_split_of_a_transcript_decodes_the_same(data):
    transcript = data.draw(st.sampled_from(stream_transcripts()), label="transcript")
    cuts = data.draw(st.lists(st.integers(0, len(transcript.body)), max_size=40), label="cuts")
    assert decode(split_at(transcript.body, cuts)) == decode([transcript.body])


@settings(max_examples=50)
@given(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=3, max_size=3), st.lists(st.integers(0, 60)))
def test_any_line_ending_style_decodes_the_same(endings, cuts):
    a, b, c = endings  # ("\r" then "\n" would be one CRLF, hence b+b and c+c)
    text = f"data: one{a}data: two{b}{b}data: [DONE]{c}{c}".encode()
    assert decode(split_at(text, cuts)) == ["one\ntwo", DONE]
