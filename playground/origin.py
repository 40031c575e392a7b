"""The websocket's origin check: the page must come from this very site (scheme, host and port).

Channels' AllowedHostsOriginValidator compares host names only, and the settings always allow
the loopback names: a page served on another port of the same host could open a socket with the
user's cookies. Browsers send Origin on every websocket handshake, so the rule is the one
Django's CSRF check applies to unsafe requests: the Origin equals this request's own scheme and
Host (which must itself be an allowed host), or is one of CSRF_TRUSTED_ORIGINS.
"""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def own_origin(scope) -> str | None:
    """This request's own origin (http(s)://host[:port]) from its Host header, if the host is allowed."""
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    secure = scope.get("scheme") in ("wss", "https")
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:  # behind a TLS-terminating proxy that says so (USE_X_FORWARDED_PROTO)
        header = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        secure = headers.get(header, b"").decode("latin-1").split(",")[0].strip() == proxy[1]
    return f"{'https' if secure else 'http'}://{host}"


def origin_allowed(scope) -> bool:
    origin = dict(scope.get("headers") or []).get(b"origin", b"").decode("latin-1").strip().lower()
    if not origin or origin == "null":
        return False
    trusted = {o.strip().rstrip("/").lower() for o in settings.CSRF_TRUSTED_ORIGINS}
    return origin == own_origin(scope) or origin in trusted


class SameOriginValidator:
    """ASGI middleware: refuse (HTTP 403 on the handshake) a websocket from any other origin."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
