"""API keys are encrypted at rest with MultiFernet; decryption failure raises; rotation works."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from chat import crypto
from chat.models import ApiKey

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def old_key_only(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]


def test_it_round_trips_and_stores_only_ciphertext(db, old_key_only):
    key = ApiKey(name="prod")
    key.set_secret("sk-very-secret-9876")
    key.save()
    stored = ApiKey.objects.values_list("secret_token", flat=True).get(pk=key.pk)
    assert "sk-very-secret" not in stored
    assert ApiKey.objects.get(pk=key.pk).get_secret() == "sk-very-secret-9876"
    assert key.hint == "••••9876"
    assert "sk-very" not in repr(key) and "sk-very" not in str(key)


def test_wrong_key_raises_and_never_returns_ciphertext(db, settings, old_key_only):
    key = ApiKey(name="prod")
    key.set_secret("sk-very-secret-9876")
    key.save()
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    with pytest.raises(crypto.DecryptionError) as excinfo:
        ApiKey.objects.get(pk=key.pk).get_secret()
    assert "gAAAA" not in str(excinfo.value)


def test_cleared_key_is_none(db, old_key_only):
    key = ApiKey(name="none")
    key.set_secret("")
    assert key.get_secret() is None
    assert key.hint == "(empty)"


def test_rotation_command_reencrypts_under_newest_key(db, settings, old_key_only):
    key = ApiKey(name="prod")
    key.set_secret("sk-rotate-me-0001")
    key.save()
    before = ApiKey.objects.get(pk=key.pk).secret_token
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    call_command("rotate_keys")
    after = ApiKey.objects.get(pk=key.pk).secret_token
    assert after != before
    settings.FIELD_ENCRYPTION_KEYS = [NEW]  # the old key can now be dropped
    assert ApiKey.objects.get(pk=key.pk).get_secret() == "sk-rotate-me-0001"


def test_rotation_command_fails_cleanly_on_undecryptable_key(db, settings, old_key_only):
    key = ApiKey(name="prod")
    key.set_secret("sk-rotate-me-0001")
    key.save()
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_keys")
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    assert ApiKey.objects.get(pk=key.pk).get_secret() == "sk-rotate-me-0001"


def test_an_undecryptable_secret_header_is_named_and_never_shown(db, settings, old_key_only):
    from chat import endpoint_headers
    from chat.models import Endpoint

    endpoint = Endpoint.objects.create(name="gw", base_url="http://127.0.0.1:9/v1", model_id="m")
    endpoint_headers.set_rows(endpoint, [endpoint_headers.Row("X-Gateway-Token", "gw-secret-5555", True)])
    endpoint.save()
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    with pytest.raises(crypto.DecryptionError) as excinfo:
        endpoint_headers.values(Endpoint.objects.get(pk=endpoint.pk))
    assert "X-Gateway-Token" in str(excinfo.value) and "API key" not in str(excinfo.value)
    assert "gAAAA" not in str(excinfo.value) and "gw-secret" not in str(excinfo.value)
