"""Custom request headers: which may be sent to an upstream, and how they are shown.

An endpoint's headers (set by an admin, values possibly secret) and a conversation's (plain, for
routing or tracing, or the simulator's x-sim-* faults) go with every request to the endpoint.
`Authorization` belongs to the endpoint's API key, and hop-by-hop or framing headers belong to the
HTTP client: they are refused, as are names and values HTTP cannot carry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# RFC 9110 field-name: a token.
_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Visible ASCII, spaces and tabs inside; no CR, LF or NUL (header injection).
_VALUE = re.compile(r"^[\x20-\x7e\t]*$")

# The API key's header, hop-by-hop headers (RFC 9110 7.6.1) and what the client itself frames.
REFUSED = {
    "authorization": "the endpoint's API key sets Authorization",
    "proxy-authorization": "a proxy credential is not a request header to forward",
    "connection": "a hop-by-hop header",
    "keep-alive": "a hop-by-hop header",
    "proxy-connection": "a hop-by-hop header",
    "te": "a hop-by-hop header",
    "trailer": "a hop-by-hop header",
    "transfer-encoding": "a hop-by-hop header",
    "upgrade": "a hop-by-hop header",
    "host": "the base URL sets Host",
    "content-length": "the client sets the body's length",
    "content-type": "the client sends JSON",
    "cookie": "cookies are not forwarded",
}
MAX_HEADERS = 32
MAX_NAME = 100
MAX_VALUE = 4096
MASK = "••••"


class HeaderError(ValueError):
    """A header that cannot be sent; the message names it and says why."""


def check_name(name: str) -> str:
    """The header name as it will be sent (stripped), or HeaderError."""
    name = name.strip()
    if not name:
        raise HeaderError("A header needs a name.")
    if len(name) > MAX_NAME:
        raise HeaderError(f"The header name {name[:40]!r}… is longer than {MAX_NAME} characters.")
    if not _NAME.match(name):
        raise HeaderError(f"{name!r} is not a valid header name (letters, digits and -_.!#$%&'*+^`|~ only).")
    reason = REFUSED.get(name.lower())
    if reason:
        raise HeaderError(f"{name} cannot be set here: {reason}.")
    return name


def check_value(name: str, value: str) -> str:
    value = value.strip()
    if len(value) > MAX_VALUE:
        raise HeaderError(f"The value of {name} is longer than {MAX_VALUE} characters.")
    if not _VALUE.match(value):
        raise HeaderError(f"The value of {name} holds a character HTTP headers cannot carry (a line break or non-ASCII).")
    return value


def check_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Validated headers, in order; a name given twice (in any case) is refused."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        name = check_name(name)
        if name.lower() in seen:
            raise HeaderError(f"{name} is given twice.")
        seen.add(name.lower())
        out[name] = check_value(name, value)
    if len(out) > MAX_HEADERS:
        raise HeaderError(f"At most {MAX_HEADERS} headers.")
    return out


def parse_lines(text: str) -> dict[str, str]:
    """`Name: value` per line (blank lines ignored), validated; HeaderError names the bad line."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise HeaderError(f"Line {number} is not 'Name: value'.")
        pairs.append((name, value))
    return check_headers(pairs)


def to_lines(headers: Mapping[str, str]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in headers.items())


def merged(base: Mapping[str, str] | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    """`extra` (a conversation's) under `base` (the endpoint's): the admin's header wins a clash."""
    out = dict(extra or {})
    lowered = {name.lower(): name for name in out}
    for name, value in (base or {}).items():
        out.pop(lowered.get(name.lower(), name), None)
        out[name] = value
    return out


def masked(headers: Mapping[str, str], secret: Iterable[str] = ()) -> dict[str, str]:
    """For display: the values of the `secret` names replaced by a mask."""
    hidden = {name.lower() for name in secret}
    return {name: (MASK if name.lower() in hidden else value) for name, value in headers.items()}
