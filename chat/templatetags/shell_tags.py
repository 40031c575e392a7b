"""The app shell's sidebar: New conversation, search, the user's recent conversations."""

from django import template

from chat.forms import NewConversationForm
from chat.history import with_messages
from chat.models import Conversation

register = template.Library()

RECENT = 12


@register.inclusion_tag("_sidebar.html", takes_context=True)
def app_sidebar(context) -> dict:
    request = context["request"]
    user = request.user
    # The history page's own New conversation form (with its errors after a refused POST) is the
    # sidebar's: one form, one set of ids, one query for its endpoints.
    form = context.get("form")
    if not isinstance(form, NewConversationForm):
        form = NewConversationForm(user=user, auto_id="sidebar_%s")
    current = context.get("conversation")
    on_history = request.resolver_match is not None and request.resolver_match.view_name == "chat:index"
    return {
        "request": request, "user": user, "csrf_token": context.get("csrf_token"), "new_form": form,
        # As the history list: a conversation nothing was said in yet is not one to go back to.
        "recent": with_messages(Conversation.objects.filter(owner=user)).only("public_id", "title")[:RECENT],
        "current": current.public_id if isinstance(current, Conversation) else None,
        "q": request.GET.get("q", "") if on_history else "",
    }
