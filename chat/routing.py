from django.urls import path

from chat import consumers

websocket_urlpatterns = [
    path("ws/conversations/<uuid:public_id>/", consumers.ConversationConsumer.as_asgi()),
]
