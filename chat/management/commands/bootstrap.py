"""First-run and every-run set-up, idempotent: admin account, simulator endpoints, endpoints from the env.

Environment variables are the ones the vendor pages use: HEXGRID_API_KEY with
QWEN_/LLAMA_/MISTRAL_/GEMMA_BASE_URL and _MODEL, and the generic page's
BASE_URL / API_KEY / MODEL. Unset variables are skipped silently; malformed
ones are reported and skipped.
"""

from __future__ import annotations

import os
import secrets

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from chat.models import ApiKey, Endpoint
from chat.upstream.client import UpstreamClient
from chat.upstream.urls import normalize_base_url
from chat.upstream.errors import UpstreamError

# (env prefix, family key, label) for the four model pages.
FAMILY_PAGES = [
    ("QWEN", "qwen", "Qwen"),
    ("LLAMA", "llama", "Llama"),
    ("MISTRAL", "mistral", "Mistral"),
    ("GEMMA", "gemma", "Gemma 4"),
]

SIMULATOR_KEY_NAME = "Simulator (offline demo)"
SIMULATOR_PREFIX = "Simulated vLLM (offline demo)"


def simulator_endpoints() -> list[dict]:
    """One endpoint per simulated model, from the simulator's own model list."""
    from chat.simulator import DEFAULT_MODELS, REASONING_INLINE

    return [
        {
            "model_id": spec.id,
            "family": spec.family,
            "image_input": spec.multimodal,
            "auto_tool_choice": spec.auto_tools,
            "reasoning_parser": spec.reasoning_output != REASONING_INLINE,
            "name": f"{SIMULATOR_PREFIX} — {spec.id}",
        }
        for spec in DEFAULT_MODELS
    ]


class Command(BaseCommand):
    help = "Create the admin account on first run, the simulator endpoints, and endpoints from environment variables."

    def handle(self, *args, **options) -> None:
        self.ensure_admin()
        if settings.SIMULATOR_ENABLED:
            self.ensure_simulator()
        self.endpoints_from_env()

    # --- admin account -------------------------------------------------------

    def ensure_admin(self) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.getenv("PLAYGROUND_ADMIN_USER", "") or "admin"
        password = os.getenv("PLAYGROUND_ADMIN_PASSWORD", "")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        shown = password if generated else "(the value of PLAYGROUND_ADMIN_PASSWORD)"
        self.stdout.write(
            self.style.SUCCESS(
                "\n  Created the admin account. Log in with\n"
                f"    username: {username}\n    password: {shown}\n"
                "  This password is printed only once; change it in the admin.\n"
            )
        )

    # --- simulator -------------------------------------------------------------

    @transaction.atomic
    def ensure_simulator(self) -> None:
        key, _ = ApiKey.objects.get_or_create(name=SIMULATOR_KEY_NAME)
        if key.get_secret() != settings.SIMULATOR_API_KEY:
            key.set_secret(settings.SIMULATOR_API_KEY)
            key.save()
        base_url = normalize_base_url(settings.SIMULATOR_BASE_URL)
        for spec in simulator_endpoints():
            Endpoint.objects.update_or_create(
                name=spec["name"],
                defaults={
                    "base_url": base_url, "model_id": spec["model_id"], "family": spec["family"], "api_key": key,
                    "image_input": spec["image_input"], "reasoning_parser": spec["reasoning_parser"],
                    "auto_tool_choice": spec["auto_tool_choice"],
                    "is_simulator": True, "timeout": 60.0,
                },
            )
        self.stdout.write(f"Simulator endpoints ready at {base_url} ({len(simulator_endpoints())} models).")

    # --- environment --------------------------------------------------------------

    def endpoints_from_env(self) -> None:
        hexgrid_key = self.key_from_env("HEXGRID_API_KEY")
        for prefix, family, label in FAMILY_PAGES:
            base_var, model_var = f"{prefix}_BASE_URL", f"{prefix}_MODEL"
            base_url, model = os.getenv(base_var, "").strip(), os.getenv(model_var, "").strip()
            if not base_url and not model:
                continue
            if not base_url or not model:
                missing = base_var if not base_url else model_var
                self.stderr.write(f"{missing} is not set; skipped the {label} endpoint.")
                continue
            url = self.valid_url(base_var, base_url)
            if url:
                self.upsert(f"{label} (from {base_var})", url, model, family, hexgrid_key)

        base_url = os.getenv("BASE_URL", "").strip()
        if not base_url:
            return
        url = self.valid_url("BASE_URL", base_url)
        if not url:
            return
        key = self.key_from_env("API_KEY")
        model = os.getenv("MODEL", "").strip()
        models = [model] if model else self.served_models(url, key)
        for model_id in models:
            self.upsert(f"{model_id} (from BASE_URL)", url, model_id, "", key)

    def key_from_env(self, var: str) -> ApiKey | None:
        value = os.getenv(var, "").strip()
        if not value:
            return None
        key, _ = ApiKey.objects.get_or_create(name=f"{var} (from environment)")
        if key.get_secret() != value:
            key.set_secret(value)
            key.save()
        return key

    def valid_url(self, var: str, value: str) -> str | None:
        try:
            return normalize_base_url(value)
        except ValueError as e:
            self.stderr.write(f"{var}={value!r} is not a valid base URL ({e}); skipped.")
            return None

    def served_models(self, url: str, key: ApiKey | None) -> list[str]:
        client = UpstreamClient(url, key.get_secret() if key else None, timeout=10.0, connect_timeout=5.0)

        async def run() -> list[str]:
            try:
                return [m["id"] for m in await client.list_models() if m.get("id")]
            finally:
                await client.aclose()

        try:
            return async_to_sync(run)()
        except UpstreamError as e:
            self.stderr.write(f"BASE_URL is set but MODEL is not, and GET {url}/models failed ({e.message}); skipped.")
            return []

    def upsert(self, name: str, url: str, model: str, family: str, key: ApiKey | None) -> None:
        defaults = {"base_url": url, "model_id": model, "api_key": key}
        if family:
            defaults["family"] = family
        # The family's capabilities (Gemma takes images) when the endpoint is made, as Discover models
        # does; later runs leave them to the admin, who may have changed them in the console.
        created_with = {**defaults, **Endpoint.family_fields(model, family)}
        endpoint, created = Endpoint.objects.update_or_create(name=name[:200], defaults=defaults, create_defaults=created_with)
        self.stdout.write(f"{'Created' if created else 'Updated'} endpoint {endpoint.name} → {url}")
