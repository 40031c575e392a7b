"""The admin is the endpoint console: test connection, discover models, write-only API keys."""

from io import StringIO

import pytest
from django.urls import reverse

from chat.models import ApiKey, Endpoint
from tests.servers import free_port


@pytest.fixture
def admin_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def sim_key(db) -> ApiKey:
    key = ApiKey(name="sim")
    key.set_secret("sim-test-key-1234")
    key.save()
    return key


def run_action(admin_client, action: str, *endpoints: Endpoint):
    return admin_client.post(
        reverse("admin:chat_endpoint_changelist"),
        {"action": action, "_selected_action": [e.pk for e in endpoints]},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_test_connection_succeeds_against_a_real_server(admin_client, simulator, sim_key):
    endpoint = Endpoint.objects.create(name="sim qwen", base_url=simulator, model_id="sim/qwen3", api_key=sim_key)
    response = run_action(admin_client, "test_connection", endpoint)
    [message] = messages_of(response)
    assert "OK: /v1/models" in message and "1-token completion" in message and " ms" in message
    endpoint.refresh_from_db()
    assert endpoint.last_check_ok is True
    assert "sim-test-key-1234" not in response.content.decode()


def test_test_connection_reports_exactly_what_failed(admin_client, simulator, sim_key):
    wrong = ApiKey(name="wrong")
    wrong.set_secret("wrong-key-5678")
    wrong.save()
    unauthorized = Endpoint.objects.create(name="bad key", base_url=simulator, model_id="sim/qwen3", api_key=wrong)
    unknown = Endpoint.objects.create(name="no model", base_url=simulator, model_id="nope", api_key=sim_key)
    down = Endpoint.objects.create(name="down", base_url=f"http://127.0.0.1:{free_port()}", model_id="x")
    response = run_action(admin_client, "test_connection", unauthorized, unknown, down)
    text = "\n".join(messages_of(response))
    assert "bad key: GET /v1/models failed: HTTP 401" in text
    assert "no model: GET /v1/models: model 'nope' is not served here" in text
    assert "down: GET /v1/models failed:" in text
    assert "wrong-key-5678" not in response.content.decode()
    for endpoint in (unauthorized, unknown, down):
        endpoint.refresh_from_db()
        assert endpoint.last_check_ok is False
    changelist = admin_client.get(reverse("admin:chat_endpoint_changelist")).content.decode()
    assert "✘" in changelist


def test_discover_models_creates_one_endpoint_per_served_model(admin_client, simulator, sim_key):
    url = reverse("admin:chat_endpoint_discover")
    response = admin_client.post(url, {"base_url": simulator.removesuffix("/v1"), "api_key": sim_key.pk, "verify_tls": "on"}, follow=True)
    created = Endpoint.objects.filter(base_url=simulator)
    assert created.count() >= 5
    assert set(created.values_list("family", flat=True)) >= {"qwen", "llama", "mistral", "gemma"}
    assert "created" in messages_of(response)[0]
    admin_client.post(url, {"base_url": simulator, "api_key": sim_key.pk}, follow=True)
    assert Endpoint.objects.filter(base_url=simulator).count() == created.count()  # idempotent


def test_discovered_endpoints_take_their_familys_capabilities(admin_client, simulator, sim_key, monkeypatch):
    """As `manage.py bootstrap` makes them: a discovered Gemma endpoint takes images (it once had image input off)."""
    admin_client.post(reverse("admin:chat_endpoint_discover"), {"base_url": simulator, "api_key": sim_key.pk}, follow=True)
    discovered = {e.model_id: e for e in Endpoint.objects.filter(base_url=simulator)}
    assert discovered["sim/gemma-4"].family == "gemma" and discovered["sim/gemma-4"].image_input
    assert not any(e.image_input for e in discovered.values() if e.family != "gemma")
    # The bootstrap's generic BASE_URL discovery uses the same defaults.
    from django.core.management import call_command

    Endpoint.objects.all().delete()
    monkeypatch.setenv("BASE_URL", simulator)
    monkeypatch.setenv("API_KEY", "sim-test-key-1234")
    monkeypatch.delenv("MODEL", raising=False)
    call_command("bootstrap", stdout=StringIO(), stderr=StringIO())
    from_env = {e.model_id: e for e in Endpoint.objects.filter(name__endswith="(from BASE_URL)")}
    assert {m: e.image_input for m, e in from_env.items()} == {m: e.family == "gemma" for m, e in discovered.items()}


def test_discover_reports_a_bad_url_and_an_unreachable_server(admin_client, db):
    url = reverse("admin:chat_endpoint_discover")
    response = admin_client.post(url, {"base_url": "gopher://x"})
    assert response.status_code == 200 and response.context["form"].errors["base_url"]
    response = admin_client.post(url, {"base_url": f"http://127.0.0.1:{free_port()}"}, follow=True)
    assert "GET /v1/models failed" in messages_of(response)[0]
    assert not Endpoint.objects.exists()


def test_endpoint_form_accepts_base_url_with_or_without_v1(admin_client, db):
    for base in ("http://10.0.0.1:8000", "http://10.0.0.2:8000/v1/"):
        admin_client.post(reverse("admin:chat_endpoint_add"), {
            "name": base, "base_url": base, "model_id": "Qwen/Qwen3-8B", "family": "", "verify_tls": "on",
            "timeout": "120", "default_options": "{}", "is_active": "on",
        })
    assert sorted(Endpoint.objects.values_list("base_url", flat=True)) == ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"]
    assert set(Endpoint.objects.values_list("family", flat=True)) == {"qwen"}


def test_api_key_is_write_only(admin_client, db):
    admin_client.post(reverse("admin:chat_apikey_add"), {"name": "prod", "secret": "sk-live-SECRET-wxyz"})
    key = ApiKey.objects.get(name="prod")
    assert key.get_secret() == "sk-live-SECRET-wxyz"
    page = admin_client.get(reverse("admin:chat_apikey_change", args=[key.pk])).content.decode()
    assert "SECRET" not in page and "••••wxyz" in page
    listing = admin_client.get(reverse("admin:chat_apikey_changelist")).content.decode()
    assert "SECRET" not in listing and "••••wxyz" in listing
    # blank keeps the key; the clear checkbox clears it
    admin_client.post(reverse("admin:chat_apikey_change", args=[key.pk]), {"name": "prod", "secret": ""})
    assert ApiKey.objects.get(pk=key.pk).get_secret() == "sk-live-SECRET-wxyz"
    admin_client.post(reverse("admin:chat_apikey_change", args=[key.pk]), {"name": "prod", "clear_secret": "on"})
    assert ApiKey.objects.get(pk=key.pk).get_secret() is None


def test_new_api_key_requires_a_value(admin_client, db):
    response = admin_client.post(reverse("admin:chat_apikey_add"), {"name": "prod", "secret": ""})
    assert response.status_code == 200 and "Enter the key" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_api_key_form_is_redacted_from_error_reports(admin_client, db):
    response = admin_client.post(reverse("admin:chat_apikey_add"), {"name": "prod", "secret": "sk-live-SECRET-wxyz"})
    assert response.wsgi_request.sensitive_post_parameters == ("secret",)
