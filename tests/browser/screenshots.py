"""The README's screenshots (docs/*.png), light and dark. Not part of the suite (the file name is not
test_*); run it on purpose, then look at the pictures before committing them:

    .venv/bin/python -m pytest tests/browser/screenshots.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from playwright.sync_api import expect

from chat.forms import family_defaults
from chat.models import Conversation, Endpoint, Message
from tests.browser.conftest import wait_synced
from tests.browser.rich import logprobs_for, rich_conversation
from tests.browser.test_interface import DESKTOP, PHONE, log_in, new_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = Path(__file__).resolve().parents[2] / "docs"
CANBERRA = ("The capital of Australia is Canberra, not Sydney. It was chosen in 1908 as a compromise between "
            "Sydney and Melbourne, and Parliament first sat there in 1927.")


def test_readme_screenshots(live_server_url, browser, owner, monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "SIMULATOR_BASE_URL", live_server_url + "/simulator/v1")
    call_command("bootstrap", stdout=(tmp_path / "bootstrap.txt").open("w"))  # the simulator endpoints, as `make run` names them
    owner.is_staff = owner.is_superuser = True
    owner.save()
    qwen = Endpoint.objects.get(model_id="sim/qwen3")
    for title in ("Summarize the vLLM release notes", "JSON schema for a support ticket", "Translate the onboarding email"):
        c = Conversation.objects.create(owner=owner, endpoint=qwen, title=title, options=family_defaults(qwen))
        Message.objects.create(conversation=c, position=0, role="user", content=title)
    rich = rich_conversation(owner, qwen)
    capital = Conversation.objects.create(owner=owner, endpoint=qwen, title="The capital of Australia",
                                          options={**family_defaults(qwen), "logprobs": True, "top_logprobs": 3})
    question = Message.objects.create(conversation=capital, position=0, role="user", content="What is the capital of Australia?")
    Message.objects.create(conversation=capital, parent=question, position=1, role="assistant", content=CANBERRA,
                           logprobs=logprobs_for(CANBERRA, seed=2), finish_reason="stop")

    for theme in ("light", "dark"):
        page = new_page(browser, DESKTOP, theme)
        log_in(page, live_server_url, owner, f"/c/{rich.public_id}/")
        wait_synced(page)
        answer = page.locator("#messages article.message.assistant", has_text="22 °C").first
        answer.evaluate("el => el.scrollIntoView({block: 'start'})")
        page.mouse.move(700, 260)  # over the answer: its actions show
        page.wait_for_timeout(300)
        page.screenshot(path=DOCS / f"playground-{theme}.png")

        page.goto(f"{live_server_url}/c/{capital.public_id}/")
        wait_synced(page)
        page.locator(".lp-content .lp-ln > span", has_text="Australia").first.hover()  # a doubtful one
        expect(page.locator("#lp-pop")).to_be_visible()
        page.screenshot(path=DOCS / f"logprobs-{theme}.png", clip={"x": 264, "y": 0, "width": 800, "height": 560})
        page.context.close()

    phone = new_page(browser, PHONE, "light")
    log_in(phone, live_server_url, owner, f"/c/{rich.public_id}/")
    wait_synced(phone)
    phone.screenshot(path=DOCS / "phone-light.png")
    phone.context.close()
    phone = new_page(browser, PHONE, "dark")
    log_in(phone, live_server_url, owner, f"/c/{rich.public_id}/")
    wait_synced(phone)
    phone.locator("#settings-toggle").click()
    phone.wait_for_timeout(400)
    phone.locator("#settings-filter").blur()
    phone.screenshot(path=DOCS / "phone-settings-dark.png")
    phone.context.close()

    console = new_page(browser, DESKTOP, "dark")
    log_in(console, live_server_url, owner, "/admin/chat/endpoint/")
    console.screenshot(path=DOCS / "console-dark.png")
    console.context.close()
