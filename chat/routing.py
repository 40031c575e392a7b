from django.urls import path

from chat import consumers, consumers_batch

websocket_urlpatterns = [
    path("ws/conversations/<uuid:public_id>/", consumers.ConversationConsumer.as_asgi()),
    path("ws/batch/<uuid:public_id>/", consumers_batch.BatchProgressConsumer.as_asgi()),
]
