"""Keep an API key out of text an upstream sends back (error pages, echoed headers).

An echoing proxy or gateway may repeat the bearer token in its error page: plain, base64
(a Basic or Bearer header echoed as received), URL-encoded, JSON- or HTML-escaped, cut at
the excerpt's boundary, or split by markup. Redaction runs on the raw text, before it is cut
or transformed, and again on the final message: every stretch of at least `MIN_RUN`
characters that also occurs in one of the key's encodings is replaced.
"""

from __future__ import annotations

import base64
import html
import json
from functools import lru_cache
from urllib.parse import quote, quote_plus

MIN_RUN = 8  # a stretch this long of a random key's encoding does not occur in ordinary text by chance
MASK = "***"


def encodings(secret: str) -> set[str]:
    """The forms the key can take in an echoed text."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret, safe="").lower(),
             html.escape(secret), json.dumps(secret)[1:-1]}
    # base64 of any text containing the key: its encoding depends on where the key starts
    # (offset 0, 1 or 2 in a 3-byte group); the characters that only the key determines are
    # the same whatever comes before or after it.
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw + b"\0\0").decode()
            start = (offset * 4 + 2) // 3 + (1 if offset else 0)
            end = ((offset + len(raw)) * 4) // 3
            forms.add(encoded[start:end])
    return {form for form in forms if len(form) >= MIN_RUN}


@lru_cache(maxsize=64)
def _grams(secret: str) -> frozenset[str]:
    return frozenset(form[i : i + MIN_RUN] for form in encodings(secret) for i in range(len(form) - MIN_RUN + 1))


def redact(text: str, secret: str | None) -> str:
    """`text` with every stretch of `MIN_RUN`+ characters shared with an encoding of `secret` masked."""
    if not secret or not text or len(secret) < 4:
        return text.replace(secret, MASK) if secret and text else text
    grams = _grams(secret)
    hidden = bytearray(len(text))
    for i in range(len(text) - MIN_RUN + 1):
        if text[i : i + MIN_RUN] in grams:
            hidden[i : i + MIN_RUN] = b"\1" * MIN_RUN
    if not any(hidden):
        return text
    out, i = [], 0
    while i < len(text):
        if hidden[i]:
            while i < len(text) and hidden[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def redact_bytes(body: bytes, secret: str | None) -> bytes:
    if not secret:
        return body
    return redact(body.decode("utf-8", "replace"), secret).encode()
