"""BatchResult.public_id: a UUID for the review address (addresses never carry integer keys).
Added nullable, filled for existing rows, then made unique and required."""

import uuid

from django.db import migrations, models


def fill(apps, schema_editor):
    BatchResult = apps.get_model("chat", "BatchResult")
    for result in BatchResult.objects.filter(public_id__isnull=True).only("pk").iterator():
        BatchResult.objects.filter(pk=result.pk).update(public_id=uuid.uuid4())


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0010_server_insight"),
    ]

    operations = [
        migrations.AddField(model_name="batchresult", name="public_id", field=models.UUIDField(null=True, editable=False)),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="batchresult", name="public_id",
            field=models.UUIDField(default=uuid.uuid4, unique=True, editable=False, help_text="In addresses (never the integer key)"),
        ),
    ]
