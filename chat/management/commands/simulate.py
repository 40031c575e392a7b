"""`manage.py simulate`: run the vLLM simulator on its own port with uvicorn.

    python manage.py simulate --port 8001 [--host 127.0.0.1] [--token-delay 0.02] [--no-auth]

It serves the same app as the in-process mount at /simulator/ (see
chat/simulator/__init__.py for routes, models and fault headers), so a
standalone client can point at http://HOST:PORT/v1.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat.simulator import make_simulator


class Command(BaseCommand):
    help = "Run the HexGrid vLLM simulator (an honest fake vLLM 0.32 server) with uvicorn."
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8001, help="port to bind (default 8001)")
        parser.add_argument("--token-delay", type=float, default=None,
                            help="seconds between streamed tokens (default: SIMULATOR_TOKEN_DELAY)")
        parser.add_argument("--no-auth", action="store_true",
                            help="accept requests without an API key (default: require SIMULATOR_API_KEY)")
        parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])

    def handle(self, *args, host: str, port: int, token_delay: float | None, no_auth: bool, log_level: str, **options):
        import uvicorn

        if not 0 < port < 65536:
            raise CommandError(f"invalid port {port}")
        delay = token_delay if token_delay is not None else getattr(settings, "SIMULATOR_TOKEN_DELAY", 0.0)
        api_key = None if no_auth else getattr(settings, "SIMULATOR_API_KEY", None)
        app = make_simulator(api_key=api_key, token_delay=delay)
        self.stdout.write(
            f"HexGrid vLLM simulator (no model runs) on http://{host}:{port}/v1\n"
            f"  models: {', '.join(app.models)}\n"
            f"  token delay: {delay}s; API key: {'settings.SIMULATOR_API_KEY' if api_key else 'not required'}\n"
        )
        uvicorn.run(app, host=host, port=port, log_level=log_level, lifespan="off")
