"""Content-Security-Policy on every response: scripts only from our origin, no plugins, no framing.

Model output is sanitized server-side; this is the second wall. Styles allow 'unsafe-inline'
because CodeMirror injects its own <style> elements; images only from us or data: URLs, so a
prompt-injected image URL can never make the browser leak data.
"""

from __future__ import annotations

POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response
