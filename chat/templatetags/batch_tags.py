"""Batch-run pieces other pages include: a test set's checks on its page."""

from __future__ import annotations

from django import template

register = template.Library()


@register.inclusion_tag("chat/_testset_checks.html", takes_context=True)
def testset_checks(context, testset):
    from chat.views_batch import checks_context

    return {**checks_context(testset, context["request"].user), "csrf_token": context.get("csrf_token")}
