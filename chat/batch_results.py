"""A batch run's results as pages and files: the table, reviews, run-against-run comparison, exports."""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass, field

from chat import batch
from chat.checks import label
from chat.models import BatchResult, BatchRun

MAX_NOTE = 2000
# Spreadsheets run a cell that starts with one of these as a formula: such cells get a leading '.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def results_of(run: BatchRun):
    return (run.results.select_related("completion", "message").order_by("position", "endpoint_index"))


@dataclass
class Row:
    position: int
    values: dict
    expected: str
    cells: list = field(default_factory=list)

    @property
    def number(self) -> int:
        return self.position + 1


def table(run: BatchRun) -> tuple[list[str], list[Row]]:
    """The endpoints' labels and one Row per test case, with a cell (BatchResult) per endpoint."""
    labels: dict[int, str] = {}
    rows: dict[int, Row] = {}
    for result in results_of(run):
        labels.setdefault(result.endpoint_index, result.endpoint_label)
        row = rows.setdefault(result.position, Row(result.position, result.values, result.expected))
        row.cells.append(result)
    return [labels[i] for i in sorted(labels)], list(rows.values())


def page_context(run: BatchRun, user) -> dict:
    endpoints, rows = table(run)
    return {"run": run, "progress": batch.progress(run), "endpoints": endpoints, "rows": rows,
            "variables": list(rows[0].values) if rows else [], "can_edit": run.can_edit(user),
            "has_expected": any(r.expected for r in rows), "check_labels": [label(c) for c in run.checks or []]}


def review(result: BatchResult, *, rating: str | None, note: str | None) -> str:
    """Set a cell's rating ("up", "down", "" to clear) and/or note; returns an error or ""."""
    fields = []
    if rating is not None:
        wanted = {"up": 1, "down": -1, "": None}.get(rating, "bad")
        if wanted == "bad":
            return "A rating is 👍 or 👎."
        result.rating = None if wanted == result.rating else wanted  # the same button again clears it
        fields.append("rating")
    if note is not None:
        if len(note) > MAX_NOTE:
            return f"A note is at most {MAX_NOTE} characters (this one has {len(note)}); it was not saved."
        result.note = note.strip()
        fields.append("note")
    if fields:
        result.save(update_fields=[*fields, "updated_at"])
    return ""


# --- compare two runs ----------------------------------------------------------------------------


def _rates(run: BatchRun) -> dict[int, dict]:
    return {i: e for i, e in enumerate(batch.progress(run)["endpoints"])}


def compare(a: BatchRun, b: BatchRun) -> dict:
    """Run `a` against run `b` (e.g. yesterday's deployment against today's): the pass rate per
    endpoint (paired by their place in each run) and its delta, and the rows whose result changed
    (pass <-> fail, or an answer in one run only); `answers_changed`: rows whose text differs."""
    rates_a, rates_b = _rates(a), _rates(b)
    pairs = []
    for index in sorted(set(rates_a) | set(rates_b)):
        ra, rb = rates_a.get(index), rates_b.get(index)
        rate_a = ra["pass_rate"] if ra else None
        rate_b = rb["pass_rate"] if rb else None
        delta = rate_b - rate_a if rate_a is not None and rate_b is not None else None
        pairs.append({"index": index, "a": ra, "b": rb, "delta": delta})
    cells_a = {(r.position, r.endpoint_index): r for r in results_of(a)}
    cells_b = {(r.position, r.endpoint_index): r for r in results_of(b)}
    changed, answers_changed = [], []
    for key in sorted(set(cells_a) | set(cells_b)):
        ra, rb = cells_a.get(key), cells_b.get(key)
        entry = {"position": key[0], "number": key[0] + 1, "endpoint_index": key[1], "a": ra, "b": rb,
                 "values": (ra or rb).values}
        pa, pb = (ra.passed if ra else None), (rb.passed if rb else None)
        if ra is None or rb is None or pa != pb:
            entry["change"] = ("fixed" if pb else "broke") if pa is not None and pb is not None else "only in one run"
            changed.append(entry)
        elif _text(ra) != _text(rb):
            entry["change"] = "answer changed"
            answers_changed.append(entry)
    total_a = _overall(rates_a.values())
    total_b = _overall(rates_b.values())
    return {"pairs": pairs, "changed": changed, "answers_changed": answers_changed, "overall_a": total_a, "overall_b": total_b,
            "overall_delta": total_b - total_a if total_a is not None and total_b is not None else None}


def _overall(rates) -> float | None:
    passed = sum(e["passed"] for e in rates)
    graded = sum(e["passed"] + e["failed"] for e in rates)
    return passed / graded if graded else None


def _text(result: BatchResult) -> str:
    return result.message.text if result.message else ""


# --- exports -------------------------------------------------------------------------------------


def export_rows(run: BatchRun):
    """One dict per (row, endpoint): what the table shows, as data. No key, ever: a request body
    never holds one (the key is a header)."""
    for result in results_of(run).iterator(chunk_size=500):
        message, completion = result.message, result.completion
        usage = (completion.usage if completion else None) or {}
        yield {
            "row": result.position + 1,
            "endpoint": result.endpoint_label,
            "model": (completion.response_model or completion.request_body.get("model", "")) if completion else "",
            "values": result.values,
            "expected": result.expected,
            "status": result.status,
            "answer": message.text if message else "",
            "reasoning": message.reasoning if message else "",
            "tool_calls": message.tool_calls if message else None,
            "finish_reason": message.finish_reason if message else "",
            "error": message.error if message else "",
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "ttft_ms": round(completion.ttft_ms, 1) if completion and completion.ttft_ms is not None else None,
            "tokens_per_s": round(completion.tokens_per_s, 1) if completion and completion.tokens_per_s is not None else None,
            "schema_valid": result.schema_valid,
            "checks": result.checks,
            "passed": result.passed,
            "rating": {1: "up", -1: "down"}.get(result.rating, ""),
            "note": result.note,
            "completion_id": str(completion.public_id) if completion else "",
        }


def jsonl_lines(rows):
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


CSV_COLUMNS = ["row", "endpoint", "model", "values", "expected", "status", "answer", "reasoning", "tool_calls", "finish_reason",
               "error", "prompt_tokens", "completion_tokens", "ttft_ms", "tokens_per_s", "schema_valid", "checks", "passed",
               "rating", "note", "completion_id"]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        if value and isinstance(value, list) and all(isinstance(c, dict) and "label" in c for c in value):  # checks
            return "; ".join(f"{c['label']}: {'pass' if c['passed'] else 'FAIL ' + c.get('detail', '')}".strip() for c in value)
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_lines(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
        return text
    writer.writerow(CSV_COLUMNS)
    yield "\ufeff" + take()  # a BOM: spreadsheets read the file as UTF-8
    for row in rows:
        writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
        yield take()
