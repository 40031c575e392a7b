"""Branded error pages (404, 403, 500) link back into the app whatever DEBUG is; outsiders get the
same 404 as for a page that does not exist."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.models import Conversation
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

BACK = 'href="/"'


@pytest.fixture(params=[False, True], ids=["DEBUG off", "DEBUG on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def test_an_unknown_page_is_the_branded_404(client, owner, debug):
    client.force_login(owner)
    response = client.get("/no/such/page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "This page does not exist" in page and BACK in page and "Go to the conversations" in page
    assert "URLconf" not in page and "Traceback" not in page  # not Django's technical page
    assert 'id="sidebar"' in page  # the app around it, for a signed-in user


def test_an_outsider_gets_the_same_404_for_a_conversation(client, owner, outsider, debug):
    conversation = Conversation.objects.create(owner=owner, title="Secret plans")
    client.force_login(outsider)
    response = client.get(reverse("chat:conversation", args=[conversation.public_id]))
    page = response.content.decode()
    assert response.status_code == 404 and "This page does not exist" in page
    assert "Secret plans" not in page and "No such conversation" not in page


def test_anonymous_users_get_the_404_without_the_sidebar(client, debug):
    response = client.get("/no/such/page/")
    # LoginRequiredMiddleware only guards views: an unmatched URL is a 404 for everyone
    assert response.status_code == 404 and 'id="sidebar"' not in response.content.decode()


def test_a_missing_slash_still_redirects(client, owner, debug):
    conversation = Conversation.objects.create(owner=owner)
    client.force_login(owner)
    response = client.get(f"/c/{conversation.public_id}")
    assert response.status_code == 301 and response["Location"].endswith(f"/c/{conversation.public_id}/")


def test_the_403_page_in_the_console(client, debug):
    staff = User.objects.create_user("clerk", password=PASSWORD, is_staff=True)  # no permissions
    client.force_login(staff)
    response = client.get(reverse("admin:chat_endpoint_changelist"))
    assert response.status_code == 403
    assert "You may not open this page" in response.content.decode() and BACK in response.content.decode()


@pytest.mark.urls("tests.chat.error_urls")
def test_a_server_error_is_the_branded_500_and_its_traceback_is_logged(owner, debug, caplog):
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/boom/")
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page and BACK in page
    assert "a bug" not in page and "Traceback" not in page
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info and "a bug" in str(record.exc_info[1])
