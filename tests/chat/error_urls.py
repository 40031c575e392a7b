"""The app's URLs plus one view that fails, for the 500 page (tests/chat/test_errors.py)."""

from django.urls import path

from playground.urls import urlpatterns as app_urlpatterns


def boom(request):
    raise RuntimeError("a bug")


urlpatterns = [path("boom/", boom), *app_urlpatterns]
