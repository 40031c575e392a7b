"""Is an image URL's host one that vLLM must not be sent to fetch? (Server-side request forgery.)

vLLM fetches `image_url` parts itself, from inside the deployment's network. Hosts are parsed
the way URL fetchers parse them (the WHATWG URL standard, which browsers, yarl/aiohttp and curl
follow for IPv4): percent-decoding, a trailing dot, and IPv4 in integer, hex, octal and short
dotted forms (`2130706433`, `0x7f000001`, `0177.1`, `127.1` are all 127.0.0.1), and IPv6 with
IPv4-mapped forms. Names are not resolved (that would be the fetcher's DNS, not ours): a name
is refused only when it is a localhost name.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote, urlsplit

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
# Characters a fetcher may read differently from urlsplit (e.g. a backslash as a path separator).
AMBIGUOUS = re.compile(r"[\\\s\x00-\x1f\x7f]")


class RefusedHost(ValueError):
    """The URL points where vLLM must not fetch; the message says which rule refused it."""


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The WHATWG IPv4 parser: None when the host is a name; RefusedHost when it ends in a number
    but is no valid address (fetchers reject such a URL; we refuse it rather than guess)."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not parts or not _is_number(parts[-1]):
        return None
    if len(parts) > 4:
        raise RefusedHost("has a host that is neither a name nor a valid IPv4 address")
    numbers = []
    for part in parts:
        value = _number(part)
        if value is None:
            raise RefusedHost("has a host that is neither a name nor a valid IPv4 address")
        numbers.append(value)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise RefusedHost("has an IPv4 address out of range")
    value = numbers[-1]
    for index, n in enumerate(numbers[:-1]):
        value += n * 256 ** (3 - index)
    return ipaddress.IPv4Address(value)


def _is_number(part: str) -> bool:
    return bool(re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]*", part))


def _number(part: str) -> int | None:
    if re.fullmatch(r"0[xX][0-9a-fA-F]*", part):
        return int(part[2:] or "0", 16)
    if re.fullmatch(r"0[0-7]+", part):
        return int(part, 8)
    if re.fullmatch(r"[0-9]+", part):
        return int(part, 10) if not (len(part) > 1 and part[0] == "0") else None
    return None


def address_of(url: str) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    """The URL's host as a fetcher reads it (lowercased, percent-decoded, no trailing dot), and
    its IP address when it is one."""
    if AMBIGUOUS.search(url):
        raise RefusedHost("contains a backslash, whitespace or a control character")
    parts = urlsplit(url)
    raw = parts.netloc.rpartition("@")[2]
    if raw.startswith("["):  # IPv6 literal, with an optional zone
        literal = raw[1:].partition("]")[0].partition("%")[0]
        try:
            return literal, ipaddress.IPv6Address(literal)
        except ValueError:
            raise RefusedHost("has an invalid IPv6 address") from None
    host = unquote(parts.hostname or "").lower()
    if not host:
        raise RefusedHost("has no host")
    if AMBIGUOUS.search(host) or "%" in host:
        raise RefusedHost("has a host with encoded control characters")
    address = parse_ipv4(host)
    return host.rstrip("."), address


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool = False) -> str | None:
    """Which rule an address breaks, or None for a public one (or a private one, when allowed:
    loopback, link-local and unspecified addresses are refused whatever the setting)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if mapped is not None:
            return refusal(mapped, allow_private=allow_private)
    rules = [
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address (this machine)"),
        ("is_link_local", "a link-local address (cloud metadata services live there)"),
        ("is_private", "a private network address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
    ]
    for attribute, words in rules:
        if getattr(address, attribute):
            if attribute == "is_private" and allow_private:
                return None
            return f"points at {words}: {address}"
    if not address.is_global and not allow_private:
        return f"points at an address that is not public: {address}"
    return None


def check_host(url: str, *, allow_private: bool = False) -> None:
    """Raise RefusedHost (saying which rule) for a URL vLLM must not fetch. `allow_private`
    (the admin's IMAGE_URLS_ALLOW_PRIVATE) admits private network addresses only."""
    host, address = address_of(url)
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        raise RefusedHost(f"points at this machine (the name {host!r})")
    if address is None:
        return
    reason = refusal(address, allow_private=allow_private)
    if reason:
        raise RefusedHost(reason)
