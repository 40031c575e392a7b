"""Batch runs in Chromium against the playground as `make run` starts it (the launcher: Daphne plus
the batch worker, SQLite, in-memory layer, the simulator): a 20-row test set on two endpoints,
the progress bar moving without a reload, the tab closed and reopened with the run still going,
the server restarted mid-run and the run finishing with 40 results, none twice; then a second
run compared with it, and the results exported as CSV.

The prompt and the test set are made through the ORM (the library's own pages have their tests);
everything about the batch run is done in the browser, as a user does it."""

from __future__ import annotations

import csv
import io
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.launched import PASSWORD, ROOT, Server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SEED = """
from django.contrib.auth.models import User
from chat.models import Prompt, PromptVersion, TestSet, TestCase
admin = User.objects.get(username="admin")
prompt = Prompt.objects.create(owner=admin, name="Weather")
messages = [{"role": "user", "content": "What is the weather in {{city}}? Answer in {{unit}}."}]
PromptVersion.objects.create(prompt=prompt, number=1, created_by=admin, messages=messages, note="first",
                             values={"system_prompt": "", "options": {"max_tokens": 60, "temperature": 0}})
PromptVersion.objects.create(prompt=prompt, number=2, created_by=admin, messages=messages, note="shorter",
                             values={"system_prompt": "", "options": {"max_tokens": 8, "temperature": 0}})
cities = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Perth", "Dakar", "Seoul", "Hanoi",
          "Delhi", "Accra", "Bern", "Doha", "Kyiv", "Riga", "Sofia", "Turin", "Lagos", "Nice"]
test_set = TestSet.objects.create(owner=admin, name="Twenty cities", variables=["city", "unit"])
TestCase.objects.bulk_create([TestCase(test_set=test_set, position=i, values={"city": c, "unit": "celsius"})
                              for i, c in enumerate(cities)])
"""


def db(server: Server, sql: str, *args):
    with sqlite3.connect(server.data / "playground.sqlite3") as connection:
        return connection.execute(sql, args).fetchall()


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path, token_delay=0.2)
    subprocess.run([sys.executable, "manage.py", "shell", "-c", SEED], cwd=ROOT, env=server.env, check=True,
                   capture_output=True, timeout=120)
    server.start()
    yield server
    if server.process.poll() is None:
        server.signal(signal.SIGTERM)


def log_in(page, server: Server) -> None:
    page.goto(server.url + "/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")


def set_checks_and_open_the_run_form(page) -> None:
    """On the test set's page: its checks typed and saved, then *Run as a batch…*."""
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Prompts, presets, test sets").click()
    page.get_by_role("link", name="Twenty cities").click()
    page.get_by_text("Edit the checks (JSON)").click()
    page.locator("#checks-json").fill("")
    page.locator("#checks-json").press_sequentially('[{"kind": "contains", "value": "{{city}}"}]', delay=5)
    page.get_by_role("button", name="Save the checks").click()
    expect(page.locator("#check-list")).to_have_text('Contains "{{city}}"')
    page.get_by_role("link", name="Run as a batch…").click()
    expect(page.get_by_label("Test set")).to_have_value(re.compile("[0-9a-f-]{36}"))  # this test set, picked


def start_run(page, version_label: str, from_sidebar: bool = True) -> str:
    """From the sidebar (or the open form) to a started run on the first two simulated endpoints; returns its address."""
    if from_sidebar:
        page.get_by_role("navigation", name="Pages").get_by_role("link", name="Batch runs").click()
        page.get_by_role("link", name="New batch run").click()
        page.get_by_label("Test set").select_option(label="Twenty cities")
    page.get_by_label("Prompt version").select_option(label=version_label)
    boxes = page.locator("fieldset.batch-endpoint-picks input[type=checkbox]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    expect(page.get_by_label("Rows at once per endpoint")).to_have_value("4")  # the default
    page.get_by_role("button", name="Start the run").click()
    page.wait_for_url(re.compile(r"/batch/[0-9a-f-]{36}/$"))
    return page.url


def finished_count(page) -> int:
    return int(page.locator("#batch-finished").text_content())


def test_a_batch_run_survives_a_closed_tab_and_a_restart_and_is_compared_and_exported(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(20_000)
            log_in(page, server)
            set_checks_and_open_the_run_form(page)
            url = start_run(page, "Weather v2 — shorter", from_sidebar=False)  # the second version first: yesterday's deployment
            expect(page.locator("#batch-status")).to_have_text("Done", timeout=120_000)
            first_url = url

            url = start_run(page, "Weather v1 — first")
            # The progress bar moves while we watch: no reload.
            expect(page.locator("#batch-total")).to_have_text("40")
            page.wait_for_function("() => +document.querySelector('#batch-finished').textContent > 0", timeout=60_000)
            seen, bar = page.evaluate("() => [+document.querySelector('#batch-finished').textContent, "
                                      "document.querySelector('#batch-bar').value]")
            assert 0 < seen < 40 and bar == seen
            assert page.locator("#batch-status").text_content() == "Running"

            # Close the tab; open the run again: it went on without us.
            page.close()
            time.sleep(2)
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.goto(url)
            expect(page.locator("#batch-status")).to_have_text("Running")
            page.wait_for_function(f"() => +document.querySelector('#batch-finished').textContent > {seen}", timeout=60_000)
            again = finished_count(page)
            assert seen < again < 40, (seen, again)

            # Restart the server (and its worker) mid-run.
            server.signal(signal.SIGTERM)
            before = db(server, "SELECT r.status, count(*) FROM chat_batchresult r JOIN chat_batchrun b ON r.run_id = b.id "
                                "WHERE b.status != 'done' GROUP BY r.status")
            assert dict(before).get("pending", 0) > 0 and "running" not in dict(before), before  # put back, not lost
            server.start()
            page.goto(url)
            expect(page.locator("#batch-status")).to_have_text("Done", timeout=120_000)
            expect(page.locator("#batch-finished")).to_have_text("40")
            expect(page.locator("#batch-results td.batch-cell[data-status=done]")).to_have_count(40)
            [(run_id, conversation_id)] = db(server, "SELECT id, conversation_id FROM chat_batchrun WHERE public_id = ?",
                                             url.rstrip("/").rsplit("/", 1)[1].replace("-", ""))
            rows = db(server, "SELECT position, endpoint_index, completion_id FROM chat_batchresult WHERE run_id = ? AND status = 'done'", run_id)
            assert len(rows) == 40 and len({(p_, e) for p_, e, _ in rows}) == 40 and len({c for _, _, c in rows}) == 40
            answers = db(server, "SELECT count(*), count(DISTINCT completion_id) FROM chat_message "
                                 "WHERE conversation_id = ? AND role = 'assistant'", conversation_id)
            assert answers == [(40, 40)]  # no row answered twice, no stray attempt left
            assert db(server, "SELECT count(*) FROM chat_completion WHERE conversation_id = ?", conversation_id) == [(40,)]
            expect(page.locator(".batch-rate").first).to_contain_text("pass rate 100% (20/20)")

            # Compare with the first run (max_tokens 8: the answers stop before naming the city).
            page.get_by_role("link", name="Compare with another run").click()
            page.get_by_role("combobox", name=re.compile("^Compare")).select_option(value=first_url.rstrip("/").rsplit("/", 1)[1])
            page.get_by_role("button", name="Compare", exact=True).click()
            expect(page.locator("#overall-delta")).to_have_text("+100 pts")  # earlier (v2) -> later (v1)
            expect(page.locator("#compare-changed tr.changed-row[data-change=fixed]")).to_have_count(40)

            # Export the results as CSV.
            page.goto(url)
            with page.expect_download() as download:
                page.get_by_role("link", name="Export CSV").click()
            text = open(download.value.path(), encoding="utf-8-sig").read()
            exported = list(csv.DictReader(io.StringIO(text)))
            assert len(exported) == 40 and {r["passed"] for r in exported} == {"true"}
            assert {r["row"] for r in exported} == {str(i) for i in range(1, 21)}
        finally:
            browser.close()


def test_a_batch_run_survives_the_server_being_killed(server):
    """SIGKILL: the launcher dies, its worker with it (PR_SET_PDEATHSIG), rows are left running under a
    lease nobody renews; the next start's worker takes them up again and the run ends with 40 results."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            log_in(page, server)
            set_checks_and_open_the_run_form(page)
            url = start_run(page, "Weather v1 — first", from_sidebar=False)
            page.wait_for_function("() => +document.querySelector('#batch-finished').textContent > 0", timeout=60_000)
            workers = subprocess.run(["pgrep", "-f", "django batch_worker", "-P", str(server.process.pid)],
                                     capture_output=True, text=True).stdout.split()
            assert len(workers) == 1
            server.signal(signal.SIGKILL)
            time.sleep(0.5)
            state = subprocess.run(["ps", "-o", "stat=", "-p", workers[0]], capture_output=True, text=True).stdout.strip()
            assert state in ("", "Z"), state  # gone with it (a zombie until something reaps it)
            left = dict(db(server, "SELECT status, count(*) FROM chat_batchresult GROUP BY status"))
            assert left.get("running", 0) > 0 and left.get("done", 0) < 40, left  # cut mid-run

            server.start()
            page.goto(url)
            expect(page.locator("#batch-status")).to_have_text("Done", timeout=120_000)
            expect(page.locator("#batch-results td.batch-cell[data-status=done]")).to_have_count(40)
            rows = db(server, "SELECT position, endpoint_index, completion_id FROM chat_batchresult WHERE status = 'done'")
            assert len(rows) == 40 and len({(p_, e) for p_, e, _ in rows}) == 40 and len({c for *_, c in rows}) == 40
            assert db(server, "SELECT count(*), count(DISTINCT completion_id) FROM chat_message WHERE role = 'assistant'") == [(40, 40)]
            assert db(server, "SELECT count(*) FROM chat_completion") == [(40,)]  # the cut attempts are gone
            expect(page.locator(".batch-rate").first).to_contain_text("pass rate 100% (20/20)")
        finally:
            browser.close()
