"""Word-level diffs of two texts (no Django here): the prompt editor's side-by-side version diff."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


@dataclass
class Segment:
    op: str  # "same", "del" (only in the old text), "ins" (only in the new one)
    text: str


def word_diff(old: str, new: str) -> tuple[list[Segment], list[Segment]]:
    """Both sides of a word-level diff: the old text with deletions marked, the new with insertions."""
    a, b = TOKENS.findall(old), TOKENS.findall(new)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            left.append(Segment("same", "".join(a[i1:i2])))
            right.append(Segment("same", "".join(b[j1:j2])))
            continue
        if i2 > i1:
            left.append(Segment("del", "".join(a[i1:i2])))
        if j2 > j1:
            right.append(Segment("ins", "".join(b[j1:j2])))
    return left, right
