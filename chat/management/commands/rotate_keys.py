"""Re-encrypt every stored API key under the newest FIELD_ENCRYPTION_KEYS entry.

Rotation: prepend a new key to FIELD_ENCRYPTION_KEYS, run this, then drop the old key.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from chat import crypto
from chat.models import ApiKey


class Command(BaseCommand):
    help = "Re-encrypt all API keys under the newest key in FIELD_ENCRYPTION_KEYS."

    def handle(self, *args, **options) -> None:
        rotated = 0
        with transaction.atomic():
            for key in ApiKey.objects.select_for_update().exclude(secret_token=""):
                try:
                    key.secret_token = crypto.rotate(key.secret_token)
                except crypto.DecryptionError:
                    raise CommandError(
                        f"API key {key.name!r} cannot be decrypted with any FIELD_ENCRYPTION_KEYS entry; nothing was changed."
                    ) from None
                key.save(update_fields=["secret_token"])
                rotated += 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} API key(s) under the newest key."))
