"""Messages form a tree: each follows its parent, and is_active selects a branch among siblings.

Existing rows: a message's parent is the message one position up that was shown (active) when it
was written, else the latest one written before it there; the n choices of one completion share it.
"""

from django.db import migrations, models
import django.db.models.deletion


def link_parents(apps, schema_editor):
    Message = apps.get_model("chat", "Message")
    conversation_ids = Message.objects.values_list("conversation_id", flat=True).distinct()
    for conversation_id in conversation_ids:
        rows = list(Message.objects.filter(conversation_id=conversation_id).order_by("position", "choice_index", "created_at", "id"))
        by_position: dict[int, list] = {}
        for m in rows:
            by_position.setdefault(m.position, []).append(m)
        parent_of_completion: dict[int, int | None] = {}
        for m in rows:
            if m.position == 0:
                continue
            if m.completion_id is not None and m.completion_id in parent_of_completion:
                m.parent_id = parent_of_completion[m.completion_id]
            else:
                earlier = [p for p in by_position.get(m.position - 1, []) if p.created_at <= m.created_at] or by_position.get(m.position - 1, [])
                active = [p for p in earlier if p.is_active]
                chosen = (active or earlier)[-1] if (active or earlier) else None
                if active and len(active) > 1:
                    chosen = min(active, key=lambda p: p.choice_index)
                m.parent_id = chosen.pk if chosen else None
                if m.completion_id is not None:
                    parent_of_completion[m.completion_id] = m.parent_id
            Message.objects.filter(pk=m.pk).update(parent_id=m.parent_id)


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0004_history_tiebreak"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="children", to="chat.message"),
        ),
        migrations.AddField(
            model_name="message",
            name="removed",
            field=models.BooleanField(default=False, help_text="Taken out of the thread by its owner (kept for the record)"),
        ),
        migrations.AlterField(
            model_name="message",
            name="is_active",
            field=models.BooleanField(default=True, help_text="Selected among its siblings (False: another branch is shown)"),
        ),
        migrations.RunPython(link_parents, migrations.RunPython.noop),
    ]
