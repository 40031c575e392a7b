"""Re-encrypt every stored API key under the newest FIELD_ENCRYPTION_KEYS entry.

Rotation: prepend a new key to FIELD_ENCRYPTION_KEYS, run this, then drop the old key.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from chat import crypto, endpoint_headers
from chat.models import ApiKey, Endpoint


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
            headers = 0  # endpoints' secret header values (issue 17)
            for endpoint in Endpoint.objects.select_for_update().exclude(custom_headers=[]):
                try:
                    if endpoint_headers.rotate(endpoint):
                        endpoint.save(update_fields=["custom_headers"])
                        headers += 1
                except crypto.DecryptionError:
                    raise CommandError(
                        f"A secret header of endpoint {endpoint.name!r} cannot be decrypted with any FIELD_ENCRYPTION_KEYS entry; nothing was changed."
                    ) from None
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} API key(s) and the secret headers of {headers} endpoint(s) under the newest key."))
