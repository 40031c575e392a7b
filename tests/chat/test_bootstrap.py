"""`manage.py bootstrap`: first-run admin account, simulator endpoints, endpoints from the docs' env vars."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from chat.models import ApiKey, Endpoint

ENV_VARS = [
    "HEXGRID_API_KEY", "BASE_URL", "API_KEY", "MODEL", "PLAYGROUND_ADMIN_PASSWORD", "PLAYGROUND_ADMIN_USER",
    *[f"{p}_{s}" for p in ("QWEN", "LLAMA", "MISTRAL", "GEMMA") for s in ("BASE_URL", "MODEL")],
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def bootstrap() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("bootstrap", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_first_run_creates_an_admin_with_a_random_password_printed_once(db, client):
    out, _ = bootstrap()
    assert User.objects.filter(is_superuser=True).count() == 1
    password = out.split("password:")[1].split()[0]
    assert len(password) >= 12
    assert client.login(username="admin", password=password)
    again, _ = bootstrap()
    assert "password:" not in again
    assert User.objects.filter(is_superuser=True).count() == 1


def test_admin_password_can_come_from_the_environment(db, client, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_ADMIN_PASSWORD", "from-the-env-123")
    out, _ = bootstrap()
    assert "from-the-env-123" not in out
    assert client.login(username="admin", password="from-the-env-123")


def test_two_admins_never_share_a_password(db):
    out1, _ = bootstrap()
    User.objects.all().delete()
    out2, _ = bootstrap()
    assert out1.split("password:")[1].split()[0] != out2.split("password:")[1].split()[0]


def test_simulator_endpoints_are_created_and_labelled(db, settings):
    settings.SIMULATOR_BASE_URL = "http://127.0.0.1:8000/simulator"
    bootstrap()
    sims = Endpoint.objects.filter(is_simulator=True)
    assert {e.family for e in sims} >= {"qwen", "llama", "mistral", "gemma"}
    assert all("Simulated vLLM (offline demo)" in e.name for e in sims)
    assert all(e.base_url == "http://127.0.0.1:8000/simulator/v1" for e in sims)
    key = sims.first().api_key
    assert key.get_secret() == settings.SIMULATOR_API_KEY
    assert sims.get(family="gemma").image_input


def test_env_endpoints_are_created_and_bootstrap_is_idempotent(db, monkeypatch):
    monkeypatch.setenv("HEXGRID_API_KEY", "hg-secret-abcd")
    monkeypatch.setenv("QWEN_BASE_URL", "https://10.0.0.5:8000/v1")
    monkeypatch.setenv("QWEN_MODEL", "Qwen/Qwen3-8B")
    monkeypatch.setenv("GEMMA_BASE_URL", "https://10.0.0.6:8000")
    monkeypatch.setenv("GEMMA_MODEL", "google/gemma-4-31b-it")
    bootstrap()
    counts = (Endpoint.objects.count(), ApiKey.objects.count())
    bootstrap()
    assert (Endpoint.objects.count(), ApiKey.objects.count()) == counts
    qwen = Endpoint.objects.get(model_id="Qwen/Qwen3-8B")
    assert qwen.family == "qwen" and qwen.base_url == "https://10.0.0.5:8000/v1"
    assert qwen.api_key.get_secret() == "hg-secret-abcd"
    gemma = Endpoint.objects.get(model_id="google/gemma-4-31b-it")
    assert gemma.family == "gemma" and gemma.image_input and gemma.base_url == "https://10.0.0.6:8000/v1"


def test_changed_env_values_update_the_endpoint(db, monkeypatch):
    monkeypatch.setenv("LLAMA_BASE_URL", "http://10.0.0.7:8000/v1")
    monkeypatch.setenv("LLAMA_MODEL", "meta-llama/Llama-3.1-8B-Instruct")
    bootstrap()
    monkeypatch.setenv("LLAMA_MODEL", "meta-llama/Llama-3.3-70B-Instruct")
    bootstrap()
    llamas = Endpoint.objects.filter(family="llama", is_simulator=False)
    assert [e.model_id for e in llamas] == ["meta-llama/Llama-3.3-70B-Instruct"]


def test_malformed_and_partial_variables_are_reported_and_skipped(db, monkeypatch):
    monkeypatch.setenv("MISTRAL_BASE_URL", "ftp://nope")
    monkeypatch.setenv("MISTRAL_MODEL", "mistralai/Magistral-Small-2509")
    monkeypatch.setenv("QWEN_BASE_URL", "http://10.0.0.5:8000/v1")
    _, err = bootstrap()
    assert "MISTRAL_BASE_URL='ftp://nope' is not a valid base URL" in err
    assert "QWEN_MODEL is not set" in err
    assert not Endpoint.objects.filter(is_simulator=False).exists()


def test_unset_variables_are_skipped_silently(db):
    _, err = bootstrap()
    assert err == ""


def test_generic_base_url_discovers_models_when_model_is_unset(db, monkeypatch, simulator):
    monkeypatch.setenv("BASE_URL", simulator.removesuffix("/v1"))  # the generic page adds /v1 itself
    monkeypatch.setenv("API_KEY", "sim-test-key-1234")
    bootstrap()
    discovered = Endpoint.objects.filter(name__endswith="(from BASE_URL)")
    assert discovered.count() >= 5
    assert {e.family for e in discovered} >= {"qwen", "llama", "mistral", "gemma"}


def test_generic_base_url_with_model(db, monkeypatch):
    monkeypatch.setenv("BASE_URL", "http://10.1.2.3:8000")
    monkeypatch.setenv("MODEL", "my-finetune")
    bootstrap()
    endpoint = Endpoint.objects.get(model_id="my-finetune")
    assert endpoint.family == "generic" and endpoint.api_key is None


def test_generic_base_url_unreachable_is_reported(db, monkeypatch):
    from tests.servers import free_port

    monkeypatch.setenv("BASE_URL", f"http://127.0.0.1:{free_port()}")
    _, err = bootstrap()
    assert "BASE_URL is set but MODEL is not" in err
