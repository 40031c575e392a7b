from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Playground"

    def ready(self) -> None:
        from django.conf import settings

        from chat import signals  # noqa: F401  (connects the access-change receivers)
        from chat.upstream import payload

        payload.ALLOW_PRIVATE_IMAGE_HOSTS = settings.IMAGE_URLS_ALLOW_PRIVATE
