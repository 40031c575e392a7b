from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Playground"

    def ready(self) -> None:
        from chat import signals  # noqa: F401  (connects the access-change receivers)
