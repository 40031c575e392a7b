"""ThinkSplitter: inline <think>/[THINK] blocks, with tags cut anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.upstream.thinking import MISTRAL_TAGS, THINK_TAGS, ThinkSplitter, split_thinking


def run(pieces, tags=THINK_TAGS, opened=False) -> list[tuple[str, str]]:
    splitter = ThinkSplitter(tags, opened=opened)
    out = []
    for piece in pieces:
        out += splitter.feed(piece)
    out += splitter.flush()
    merged: list[tuple[str, str]] = []
    for kind, text in out:  # pieces of the same kind may come in several calls
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


def test_splits_a_think_block_from_the_answer():
    assert run(["<think>\nhm\n</think>\n\nHello"]) == [("reasoning", "\nhm\n"), ("content", "\n\nHello")]


def test_text_without_tags_is_content():
    assert run(["Hello ", "world"]) == [("content", "Hello world")]


def test_opened_template_has_only_the_close_tag():
    assert run(["hm", "</think>", "Hi"], opened=True) == [("reasoning", "hm"), ("content", "Hi")]


def test_mistral_tags():
    text = "[THINK]Compare digits.[/THINK]9.8 is greater."
    assert run([text], MISTRAL_TAGS) == [("reasoning", "Compare digits."), ("content", "9.8 is greater.")]


def test_a_tag_cut_in_pieces_is_held_back_until_clear():
    splitter = ThinkSplitter()
    assert splitter.feed("<th") == []
    assert splitter.feed("ink>a</thi") == [("reasoning", "a")]
    assert splitter.feed("nk>b") == [("content", "b")]


def test_a_false_alarm_is_released():
    splitter = ThinkSplitter()
    assert splitter.feed("a <thin") == [("content", "a ")]
    assert splitter.feed("g>") == [("content", "<thing>")]


def test_flush_releases_a_dangling_tag_start():
    splitter = ThinkSplitter()
    assert splitter.feed("x <") == [("content", "x ")]
    assert splitter.flush() == [("content", "<")]
    assert splitter.flush() == []


def test_unclosed_block_is_all_reasoning():
    # max_tokens ran out while thinking (transcript 02c, without a parser).
    assert run(["<think>\nThe user sent"]) == [("reasoning", "\nThe user sent")]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>a</think>b", ("a", "b")),
        ("a</think>b", ("a", "b")),  # the template opened the block
        ("just text", ("", "just text")),
        ("x<think>a</think>b<think>c</think>d", ("ac", "xbd")),
    ],
)
def test_split_thinking_of_a_complete_text(text, expected):
    assert split_thinking(text) == expected


@given(
    st.lists(st.sampled_from(["<think>", "</think>", "a", "<", "th", "ink>", "/", "\n", "é"]), max_size=20),
    st.lists(st.integers(0, 200), max_size=10),
    st.sampled_from([THINK_TAGS, MISTRAL_TAGS]),
    st.booleans(),
)
def test_any_split_gives_the_same_result(tokens, cuts, tags, opened):
    text = "".join(tokens).replace("<think>", tags[0]).replace("</think>", tags[1])
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]
    whole = run([text], tags, opened)
    assert run(pieces, tags, opened) == whole
    # Nothing is lost but the tags themselves.
    assert sum(len(t) for _, t in whole) <= len(text)
