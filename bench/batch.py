"""Batch-run benchmark (issue 16): 1,000 rows against the simulator (no token delay) at
concurrency 32, in two setups:

  single     SQLite, one worker (`manage.py batch_worker`), the embedded default
  scaleout   PostgreSQL, two workers (BATCH_TASKS_PER_RUN=2: the run's two tasks, one per worker)

    .venv/bin/python bench/batch.py                       # both setups
    .venv/bin/python bench/batch.py --setup single --rows 200
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/h16b_bench .venv/bin/python bench/batch.py --setup scaleout

Processes, loopback only: the simulator (`manage.py simulate --token-delay 0`, its own process),
the worker(s), and this process (which seeds the database and watches). Each setup has a
throw-away database: a SQLite file in a temporary directory; the PostgreSQL database named by
DATABASE_URL (default postgres://postgres@127.0.0.1:5432/h16b_bench) is dropped and made again.

Measures:
  rows/s        rows / (run finished_at - run started_at), as the worker(s) stamp them
  CPU ms / row  utime+stime of the worker process(es) (/proc/<pid>/stat) from the run's start to its
                end, per row; PostgreSQL's own backends are not counted
  saved         results done, each with its own complete Completion and assistant message,
                none twice (distinct (row, endpoint) and distinct completions)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/h16b_bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGETS = {"single_rate": 40.0, "single_cpu": 25.0, "scaleout_rate": 40.0}

SEED = """
import json, sys
from django.contrib.auth.models import User
from chat import batch
from chat.models import ApiKey, Endpoint, Prompt, PromptVersion, TestCase, TestSet
rows, url, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
user = User.objects.create_user("bench")
api_key = ApiKey(name="bench")
api_key.set_secret(key)
api_key.save()
endpoint = Endpoint.objects.create(name="Simulator", base_url=url, model_id="sim/llama-3.3", api_key=api_key)
prompt = Prompt.objects.create(owner=user, name="Bench")
version = PromptVersion.objects.create(prompt=prompt, number=1, created_by=user,
    messages=[{"role": "user", "content": "Row {{n}}: what is the weather in {{city}}?"}],
    values={"system_prompt": "Be brief.", "options": {"max_tokens": 64}})
test_set = TestSet.objects.create(owner=user, name="Bench", variables=["n", "city"],
    checks=[{"kind": "contains", "value": "{{city}}"}, {"kind": "regex", "pattern": "Row \\\\d+"}])
cities = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Perth", "Dakar"]
TestCase.objects.bulk_create([TestCase(test_set=test_set, position=i, values={"n": str(i), "city": cities[i % 8]}) for i in range(rows)])
run = batch.create_run(user, version=version, test_set=test_set, endpoints=[endpoint], concurrency=32)
print(run.pk)
"""

REPORT = """
import json, sys
from django.db.models import Count
from chat.models import BatchRun, Message
run = BatchRun.objects.get(pk=int(sys.argv[1]))
results = run.results.all()
done = results.filter(status="done")
print(json.dumps({
    "status": run.status,
    "started": run.started_at.timestamp() if run.started_at else None,
    "finished": run.finished_at.timestamp() if run.finished_at else None,
    "rows": results.count(),
    "done": done.count(),
    "complete": done.filter(completion__status="complete", message__status="complete").count(),
    "passed": done.filter(passed=True).count(),
    "errors": done.filter(completion__status="error").count(),
    "first_error": (done.filter(completion__status="error").values_list("message__error", flat=True).first() or "")[:200],
    "first_failure": next((c["detail"] for r in done.filter(passed=False, completion__status="complete")[:1] for c in r.checks if not c["passed"]), ""),
    "distinct_cells": done.values("position", "endpoint_index").distinct().count(),
    "distinct_completions": done.values("completion").distinct().count(),
    "answers": Message.objects.filter(conversation=run.conversation, role="assistant").count(),
    "worker_ids": sorted(set(done.values_list("worker", flat=True))),
}))
"""



def status_reader(data: Path, database_url: str | None):
    """The run's status, read straight from the database (a manage.py per look would cost more CPU
    than the workers under test)."""
    if database_url:
        import psycopg

        connection = psycopg.connect(database_url, autocommit=True)
        return lambda run_id: connection.execute("SELECT status FROM chat_batchrun WHERE id = %s", (run_id,)).fetchone()[0]
    import sqlite3

    connection = sqlite3.connect(data / "playground.sqlite3", isolation_level=None)
    return lambda run_id: connection.execute("SELECT status FROM chat_batchrun WHERE id = ?", (run_id,)).fetchone()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def manage(env: dict, *args, capture: bool = True) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=capture, text=True, timeout=600)
    if result.returncode:
        raise SystemExit(f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def shell(env: dict, code: str, *argv) -> str:
    # manage.py shell -c does not take arguments: they travel in the environment.
    return manage({**env, "BENCH_ARGV": "\x1f".join(argv)}, "shell", "-c",
                  "import sys, os; sys.argv = ['x', *os.environ['BENCH_ARGV'].split('\\x1f')]\n" + code).strip()


def reset_postgres(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def run_setup(name: str, rows: int, workers: int, database_url: str | None) -> dict:
    data = Path(tempfile.mkdtemp(prefix=f"bench-batch-{name}-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PLAYGROUND_DATA_DIR=str(data), DJANGO_SETTINGS_MODULE="playground.settings", DEBUG="True", LOG_LEVEL="WARNING",
               BATCH_TASKS_PER_RUN=str(workers), SIMULATOR_ENABLED="False", SIMULATOR_TOKEN_DELAY="0")
    if database_url:
        env["DATABASE_URL"] = database_url
        reset_postgres(database_url)
    port = free_port()
    key = "bench-batch-key"
    simulator = subprocess.Popen([sys.executable, "manage.py", "simulate", "--port", str(port), "--token-delay", "0",
                                  "--log-level", "warning"], cwd=ROOT, env={**env, "SIMULATOR_API_KEY": key},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs: list[subprocess.Popen] = []
    try:
        manage(env, "migrate", "--noinput")
        run_id = int(shell(env, SEED, str(rows), f"http://127.0.0.1:{port}/v1", key).splitlines()[-1])
        status = status_reader(data, database_url)
        procs = [subprocess.Popen([sys.executable, "manage.py", "batch_worker", "--verbosity", "0"], cwd=ROOT, env=env)
                 for _ in range(workers)]
        # CPU from the run's start (the first worker marks it running) to its end.
        while status(run_id) == "queued":
            time.sleep(0.02)
        cpu_start = sum(cpu_seconds(p.pid) for p in procs)
        wall_start = time.monotonic()
        while status(run_id) not in ("done", "cancelled"):
            time.sleep(0.1)
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_start
        wall = time.monotonic() - wall_start
        report = json.loads(shell(env, REPORT, str(run_id)).splitlines()[-1])
    finally:
        for process in [*procs, simulator]:
            process.terminate()
        for process in [*procs, simulator]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(data, ignore_errors=True)
    duration = report["finished"] - report["started"]
    return {"setup": name, "workers": workers, "rows": rows, "rate": rows / duration, "duration": duration, "wall": wall,
            "cpu_ms_per_row": 1000 * cpu / rows, **report}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_table(results: list[dict]) -> None:
    lines = [("setup", "rows/s", "target", "worker CPU ms/row", "target", "saved", "result")]
    for r in results:
        saved_ok = (r["done"] == r["complete"] == r["rows"] == r["distinct_cells"] == r["distinct_completions"] == r["answers"])
        if r["setup"] == "single":
            rate_t, cpu_t = TARGETS["single_rate"], TARGETS["single_cpu"]
            ok = saved_ok and r["rate"] >= rate_t and r["cpu_ms_per_row"] <= cpu_t
            cpu_target = f"≤ {cpu_t:g}"
        else:
            rate_t, cpu_target = TARGETS["scaleout_rate"], ""
            ok = saved_ok and r["rate"] >= rate_t and len(r["worker_ids"]) == r["workers"]  # both workers ran rows
        saved = f"{r['done']}/{r['rows']} done, {r['distinct_completions']} completions, {r['answers']} answers, {r['passed']} passed"
        label = f"{r['setup']} ({'SQLite' if r['setup'] == 'single' else 'PostgreSQL'}, {r['workers']} worker{'s' if r['workers'] > 1 else ''})"
        lines.append((label, f"{r['rate']:.1f}", f"≥ {rate_t:g}", f"{r['cpu_ms_per_row']:.1f}", cpu_target, saved, verdict(ok)))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)))
    for r in results:
        if r["errors"] or r["first_failure"]:
            print(f"- {r['setup']}: {r['errors']} upstream errors ({r['first_error']!r}); a failed check: {r['first_failure']!r}")
        print(f"- {r['setup']}: run {r['duration']:.2f}s ({r['wall']:.2f}s watched); rows run by {len(r['worker_ids'])} worker process(es); "
              f"load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", choices=["single", "scaleout", "both"], default="both")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "").strip() or PG_DEFAULT,
                        help="PostgreSQL for the scaleout setup (dropped and made again)")
    args = parser.parse_args()
    results = []
    if args.setup in ("single", "both"):
        results.append(run_setup("single", args.rows, 1, None))
    if args.setup in ("scaleout", "both"):
        try:
            reset_postgres(args.database_url)
        except Exception as error:  # no PostgreSQL here: say so (make bench runs both setups)
            if args.setup == "scaleout":
                raise
            print(f"scaleout: skipped, PostgreSQL at {args.database_url} is not reachable ({type(error).__name__})")
        else:
            results.append(run_setup("scaleout", args.rows, 2, args.database_url))
    print(f"Batch runs: {args.rows} rows, concurrency 32, the simulator with no token delay "
          f"({os.cpu_count()} cores, shared; numbers vary with the load)")
    print_table(results)


if __name__ == "__main__":
    main()
