from django import template

from chat.models import Conversation
from chat.sharing import RenameForm, VisibilityForm

register = template.Library()


@register.simple_tag(takes_context=True)
def conversation_sharing(context, conversation: Conversation) -> dict:
    """What the conversation header shows this viewer: owner-only forms, and the fork's source if they may see it."""
    user = context["request"].user
    can_edit = conversation.can_edit(user)
    source = None
    if conversation.forked_from_id:
        source = (
            Conversation.objects.visible_to(user).filter(pk=conversation.forked_from_id).only("public_id", "title").first()
        )
    sharing = {"can_edit": can_edit, "forked": conversation.forked_from_id is not None, "source": source}
    if can_edit:
        sharing["rename_form"] = RenameForm(initial={"title": conversation.title})
        sharing["visibility_form"] = VisibilityForm(
            initial=VisibilityForm.initial_for(conversation), teams=user.groups.order_by("name")
        )
    return sharing


@register.simple_tag
def query_with(query: str, **params) -> str:
    """The list's query string with some parameters replaced (pagination links keep the filters)."""
    from django.http import QueryDict

    data = QueryDict(query, mutable=True)
    for key, value in params.items():
        data[key] = value
    return data.urlencode()
