"""Endpoint base URLs, normalised once so every module agrees on them.

Admins paste base URLs in every form the pages use: the generic page's
`$BASE_URL` (no /v1), the model pages' `$X_BASE_URL` (with /v1), sometimes
the full `/v1/chat/completions`. All become "scheme://host[:port][/prefix]/v1".
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["normalize_base_url", "server_root"]


def normalize_base_url(url: str) -> str:
    """Return the base URL ending in /v1; raise ValueError saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("The base URL is empty.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as error:
        raise ValueError(f"The base URL is not a valid URL ({error}).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(
            f"The base URL must start with http:// or https:// (got {scheme + '://' if scheme else 'no scheme'})."
        )
    if not parts.hostname:
        raise ValueError("The base URL has no host name.")
    if parts.username is not None or parts.password is not None:
        raise ValueError("Put credentials in an API key, not in the base URL.")
    if parts.query or parts.fragment:
        raise ValueError("The base URL must not have a query string or fragment.")
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/models"):
        path = path.removesuffix(suffix)
    if not path.endswith("/v1"):
        path += "/v1"
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((scheme, netloc, path, "", ""))


def server_root(base_url: str) -> str:
    """The server's root (where vLLM serves /health): the base without /v1."""
    return normalize_base_url(base_url).removesuffix("/v1")
