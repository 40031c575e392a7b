"""Branded error pages (templates/404.html, 403.html, 500.html) whatever DEBUG is.

With DEBUG off Django renders those templates itself. With DEBUG on it shows its technical pages
for a 404 (every URL pattern listed) and a 500 (the traceback) instead, and DEBUG is on in the
embedded default `make run` starts, so this middleware renders the branded pages there too; the
traceback of a 500 goes to the log, as with DEBUG off. Outsiders keep getting the same 404.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core import signals
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404
from django.urls import Resolver404
from django.views import defaults

log = logging.getLogger("django.request")


class BrandedErrorPagesMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.DEBUG and response.status_code == 404 and request.resolver_match is None:
            # No URL pattern matched (raised before any view, so process_exception never saw it).
            response = defaults.page_not_found(request, Resolver404())
        return response

    def process_exception(self, request, exception):
        if not settings.DEBUG:
            return None  # Django's own handlers render the same templates
        if isinstance(exception, Http404):
            return defaults.page_not_found(request, exception)
        if isinstance(exception, (PermissionDenied, BadRequest, SuspiciousOperation)):
            return None  # 403 renders 403.html whatever DEBUG is; 400s keep Django's handling
        # What Django does for an uncaught exception, less the technical page.
        signals.got_request_exception.send(sender=None, request=request)
        log.error("Internal Server Error: %s", request.path, exc_info=exception,
                  extra={"status_code": 500, "request": request})
        response = defaults.server_error(request)
        response._has_been_logged = True  # (Django would log it again, without the traceback)
        return response
