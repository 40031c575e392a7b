"""Log-in works from the first moment: the bootstrap's printed credentials open the playground."""

from io import StringIO

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_first_run_credentials_log_in_and_the_simulator_endpoints_show(live_server_url, page, settings, monkeypatch):
    monkeypatch.delenv("PLAYGROUND_ADMIN_PASSWORD", raising=False)
    settings.SIMULATOR_BASE_URL = live_server_url + "/simulator/v1"  # as `make run` sets it from PORT
    out = StringIO()
    call_command("bootstrap", stdout=out)
    password = out.getvalue().split("password:")[1].split()[0]

    page.goto(live_server_url + "/")
    assert "/login/" in page.url  # every page but login needs log-in
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(live_server_url + "/")
    expect(page.get_by_role("strong").filter(has_text=re.compile(r"^Simulated vLLM \(offline demo\) — sim/qwen3$"))).to_be_visible()
    expect(page.locator(".badge.sim").first).to_be_visible()

    # a newcomer opens a conversation on the simulated Qwen endpoint and watches it stream
    page.select_option("select[name=endpoint]", label="Simulated vLLM (offline demo) — sim/qwen3")
    page.click("text=New conversation")
    page.fill("#composer textarea", "Hello!")
    page.keyboard.press("Enter")
    expect(page.locator(".message.assistant .reasoning")).not_to_be_empty()
    expect(page.locator(".message.assistant")).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(page.locator(".message.assistant .content")).to_contain_text("simulated")

    page.click("text=Endpoint console")
    page.click("text=Endpoints")
    expect(page.locator("#result_list")).to_be_visible()
    expect(page.locator("#result_list").get_by_text("sim/gemma-4").first).to_be_visible()


def test_wrong_password_is_refused(live_server_url, page, staff):
    page.goto(live_server_url + "/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_be_visible()
