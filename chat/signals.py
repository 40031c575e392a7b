"""Access changes made outside the playground (the admin, scripts) reach open sockets.

Team membership lives in django.contrib.auth (users' groups), so its changes arrive as signals:
a user removed from a team, a team deleted, or a user deactivated gets every open socket
re-checked (chat.sharing.recheck_user); sockets that lost access are emptied and closed.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_save, pre_delete
from django.dispatch import receiver

from chat.models import Conversation
from chat.sharing import recheck_user

User = get_user_model()


@receiver(m2m_changed, sender=User.groups.through, dispatch_uid="chat-team-membership")
def team_membership_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    if action == "pre_clear" and reverse:  # group.user_set.clear(): remember who is leaving
        instance._chat_leaving = list(instance.user_set.values_list("pk", flat=True))
    if action not in ("post_remove", "post_clear"):
        return
    if not reverse:  # user.groups.remove(...) / .clear() / the admin's user form
        users = [instance.pk]
    elif action == "post_remove":  # group.user_set.remove(...)
        users = list(pk_set or ())
    else:
        users = getattr(instance, "_chat_leaving", [])
    for pk in users:
        recheck_user(pk)


@receiver(pre_delete, sender=Group, dispatch_uid="chat-team-deleted")
def team_deleted(sender, instance, **kwargs) -> None:
    # Its shared conversations go back to private, kept by their owners (the FK's SET_NULL alone
    # would break the rule that a team-visible conversation names its team).
    Conversation.objects.filter(team=instance).update(team=None, visibility=Conversation.Visibility.PRIVATE)
    for pk in instance.user_set.values_list("pk", flat=True):
        recheck_user(pk)


@receiver(post_save, sender=User, dispatch_uid="chat-user-deactivated")
def user_saved(sender, instance, created, **kwargs) -> None:
    if not created and not instance.is_active:
        recheck_user(instance.pk)
