"""Template filters of the server insight (issue 17)."""

from django import template

from chat import probe

register = template.Library()


@register.filter
def probe_summary(endpoint) -> str:
    """"probe 16/18 pass · 2 not supported", or "" before the endpoint's first probe."""
    return probe.summary(endpoint) if endpoint is not None else ""
