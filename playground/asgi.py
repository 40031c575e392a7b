"""ASGI entry point: Django for HTTP, Channels for websockets, the simulator under /simulator/."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
# Populate the app registry before importing anything that touches models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402
from playground.origin import SameOriginValidator  # noqa: E402

SIMULATOR_PREFIX = "/simulator"


def mount_simulator(http_app):
    """Serve the simulator at /simulator/ in-process, so a fresh install works offline."""
    from chat.simulator import make_simulator

    simulator = make_simulator(api_key=settings.SIMULATOR_API_KEY, token_delay=settings.SIMULATOR_TOKEN_DELAY)

    async def app(scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == SIMULATOR_PREFIX or path.startswith(SIMULATOR_PREFIX + "/")):
            scope = dict(scope, root_path=scope.get("root_path", "") + SIMULATOR_PREFIX)
            return await simulator(scope, receive, send)
        return await http_app(scope, receive, send)

    app.simulator = simulator
    return app


http_application = mount_simulator(django_asgi_app) if settings.SIMULATOR_ENABLED else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
