"""Settings come from the environment; production values pass `check --deploy`; bad values fail clearly."""

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "False",
    "SECRET_KEY": "x" * 20 + "A-long-random-production-secret-key-0123456789",
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "playground.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://playground.example.com",
}


def run_manage(*args, env: dict, tmp_path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL")}
    clean.update(env, PLAYGROUND_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="playground.settings")
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def test_check_deploy_passes_with_production_values(tmp_path):
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_debug_off_without_secrets_fails_with_a_clear_message(tmp_path):
    result = run_manage("check", env={"DEBUG": "False"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY and FIELD_ENCRYPTION_KEYS must be set when DEBUG is off" in result.stderr
    assert not (tmp_path / "secrets.json").exists()


def test_embedded_default_generates_secrets_once_with_a_log_line(tmp_path):
    first = run_manage("check", env={}, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Generated SECRET_KEY and FIELD_ENCRYPTION_KEYS" in first.stderr
    secrets_file = tmp_path / "secrets.json"
    content = secrets_file.read_text()
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    second = run_manage("check", env={}, tmp_path=tmp_path)
    assert "Generated" not in second.stderr
    assert secrets_file.read_text() == content


def test_booleans_are_strict(tmp_path):
    result = run_manage("check", env={"DEBUG": "yes"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "Unexpected value DEBUG='yes'" in result.stderr


def test_malformed_encryption_key_is_refused(tmp_path):
    result = run_manage("check", env={**PRODUCTION, "FIELD_ENCRYPTION_KEYS": "not-a-key"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS must be comma-separated Fernet keys" in result.stderr


def test_redis_url_selects_the_redis_channel_layer(tmp_path):
    code = "from django.conf import settings; print(settings.CHANNEL_LAYERS['default']['BACKEND'])"
    result = run_manage("shell", "-c", code, env={"REDIS_URL": "redis://127.0.0.1:6379/0"}, tmp_path=tmp_path)
    assert result.stdout.split()[-1] == "chat.layers.RedisChannelLayer", result.stderr  # channels-redis's, subclassed
    result = run_manage("shell", "-c", code, env={}, tmp_path=tmp_path)
    assert result.stdout.split()[-1] == "channels.layers.InMemoryChannelLayer", result.stderr


def test_redis_max_connections_sizes_the_pool_and_refuses_fewer_than_two(tmp_path):
    code = "from django.conf import settings; print(settings.CHANNEL_LAYERS['default']['CONFIG']['max_connections'])"
    redis = {"REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert run_manage("shell", "-c", code, env=redis, tmp_path=tmp_path).stdout.split()[-1] == "50"
    assert run_manage("shell", "-c", code, env={**redis, "REDIS_MAX_CONNECTIONS": "400"}, tmp_path=tmp_path).stdout.split()[-1] == "400"
    result = run_manage("check", env={**redis, "REDIS_MAX_CONNECTIONS": "1"}, tmp_path=tmp_path)
    assert result.returncode != 0 and "REDIS_MAX_CONNECTIONS" in result.stderr


def test_the_simulator_is_off_in_production_unless_enabled(tmp_path):
    code = "from django.conf import settings; print(settings.SIMULATOR_ENABLED)"
    assert run_manage("shell", "-c", code, env=PRODUCTION, tmp_path=tmp_path).stdout.split()[-1] == "False"
    enabled = run_manage("shell", "-c", code, env={**PRODUCTION, "SIMULATOR_ENABLED": "True"}, tmp_path=tmp_path)
    assert enabled.stdout.split()[-1] == "True"
    assert run_manage("shell", "-c", code, env={}, tmp_path=tmp_path).stdout.split()[-1] == "True"  # the embedded default


def test_run_grace_seconds_defaults_to_20_and_refuses_negative_values(tmp_path):
    code = "from django.conf import settings; print(settings.RUN_GRACE_SECONDS)"
    assert run_manage("shell", "-c", code, env={}, tmp_path=tmp_path).stdout.split()[-1] == "20.0"
    assert run_manage("shell", "-c", code, env={"RUN_GRACE_SECONDS": "0"}, tmp_path=tmp_path).stdout.split()[-1] == "0.0"
    result = run_manage("check", env={"RUN_GRACE_SECONDS": "-1"}, tmp_path=tmp_path)
    assert result.returncode != 0 and "RUN_GRACE_SECONDS" in result.stderr
