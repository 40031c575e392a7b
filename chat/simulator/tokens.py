"""A deterministic stand-in tokenizer and token log-probabilities.

The pieces look like a byte-level BPE's: a word with its leading space
(" model"), long words split in two or three (" simul" "ator"), one token per
digit, punctuation runs ('{"', '":'), newline runs, and special tokens
(<think>, <|im_end|>) kept whole. Joining the tokens gives the text back.
"""

from __future__ import annotations

import math
import random
import re

_TOKEN_RE = re.compile(
    r"""
      <\|[^|<>\s]{1,24}\|>            # special tokens: <|im_end|>
    | </?think> | \[/?THINK\] | </?tool_call>
    | \n+                             # newline runs: "\n", "\n\n"
    | [ ]?[^\W\d_]+                   # a word, with its leading space
    | \d                              # one digit per token, like Qwen
    | [ ]?(?:[^\w\s]|_)+              # punctuation runs: '{"', '":', '_'
    | [ \t]+
    | [\s\S]                          # anything else, one character at a time
    """,
    re.VERBOSE,
)

_FIRST_PIECE = 7  # characters (with the leading space) kept in a word's first token
_NEXT_PIECE = 5


def tokenize(text: str) -> list[str]:
    """Split `text` into token-sized pieces; ''.join(tokenize(t)) == t."""
    tokens: list[str] = []
    for match in _TOKEN_RE.finditer(text):
        piece = match.group()
        if len(piece) <= _FIRST_PIECE or not piece.strip().isalpha():
            tokens.append(piece)
            continue
        tokens.append(piece[:_FIRST_PIECE])
        for start in range(_FIRST_PIECE, len(piece), _NEXT_PIECE):
            tokens.append(piece[start : start + _NEXT_PIECE])
    return tokens


def count_tokens(text: str) -> int:
    return len(tokenize(text)) if text else 0


# Plausible runner-up tokens for top_logprobs.
_ALTERNATIVES = (
    " the", ",", ".", " a", " and", " to", "\n", " I", " is", " of", " you",
    " it", " this", " that", "!", " in", " for", " simulated", " model", " with",
    " on", " be", " as", " we", ":", " answer", " not", " can", "?", " request",
)


class LogprobSampler:
    """Produces vLLM-shaped logprob entries, reproducibly for a given rng.

    The chosen token is always the most likely one; the alternatives follow in
    decreasing order and all probabilities together stay below 1.
    """

    def __init__(self, rng: random.Random, top: int, temperature: float | None):
        self.rng = rng
        self.top = top
        t = 1.0 if temperature is None else max(0.0, min(float(temperature), 2.0))
        # Hotter sampling spreads the mass: the chosen token is less certain.
        self.spread = 0.004 + 0.12 * t

    def entry(self, token: str) -> dict:
        rng = self.rng
        p0 = 1.0 - self.spread * (0.05 + rng.random())
        p0 = min(max(p0, 0.5), 0.9999)
        lp0 = math.log(p0)
        top: list[dict] = []
        if self.top:
            top.append({"token": token, "logprob": lp0, "bytes": list(token.encode("utf-8"))})
            p = (1.0 - p0) * rng.uniform(0.3, 0.5)
            start = rng.randrange(len(_ALTERNATIVES))
            used = {token}
            i = start
            while len(top) < self.top:
                alt = _ALTERNATIVES[i % len(_ALTERNATIVES)]
                i += 1
                if alt in used:
                    continue
                used.add(alt)
                top.append({"token": alt, "logprob": math.log(p), "bytes": list(alt.encode("utf-8"))})
                p *= rng.uniform(0.2, 0.5)
        return {"token": token, "logprob": lp0, "bytes": list(token.encode("utf-8")), "top_logprobs": top}
