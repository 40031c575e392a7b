"""The capability probe of an endpoint, stored: run it (the console), read it (the grid, the
pickers' summary, the settings panel's notes). The requests themselves are chat.upstream.probe's.

Running a probe sets the endpoint's capability flags from what the server did (reasoning parser,
auto tool choice, image input); an admin can still change them afterwards in the console, and
they keep the admin's value until the next probe.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.utils import timezone

from chat import endpoint_headers
from chat.crypto import DecryptionError
from chat.upstream.client import UpstreamClient
from chat.upstream.probe import FAIL, LABELS, PASS, UNSUPPORTED, run_probe

# Which panel fields a cell speaks for.
PANEL_FIELDS = {
    "reasoning": ("thinking",),
    "tools_auto": ("tool_choice",),
    "tools_required": ("tool_choice",),
    "tools_named": ("tool_choice",),
    "parallel_tool_calls": ("parallel_tool_calls",),
    "json_object": ("response_format__type",),
    "json_schema": ("response_format__type",),
    "so_json": ("structured_outputs__kind",),
    "so_regex": ("structured_outputs__kind",),
    "so_choice": ("structured_outputs__kind",),
    "so_grammar": ("structured_outputs__kind",),
    "logprobs": ("logprobs", "top_logprobs"),
    "n2": ("n",),
    "stream_usage": ("stream_options__include_usage",),
}
# The capability flags a probe sets: flag <- cell passed.
FLAGS = {"reasoning_parser": "reasoning", "auto_tool_choice": "tools_auto", "image_input": "image"}


def client_for(endpoint) -> UpstreamClient:
    """A client of its own (closed after the probe), with the endpoint's key and headers."""
    return UpstreamClient(
        endpoint.base_url, endpoint.api_key.get_secret() if endpoint.api_key else None,
        verify=endpoint.verify_tls, ca_bundle=endpoint.ca_bundle or None, timeout=min(endpoint.timeout, 60.0),
        headers=endpoint_headers.values(endpoint), secret_headers=endpoint_headers.secret_names(endpoint),
    )


def run(endpoint) -> dict:
    """Probe `endpoint` now, store the result with its time and set the capability flags.
    Returns the stored result; a key or header that cannot be decrypted is one failed cell."""
    try:
        client = client_for(endpoint)
    except (DecryptionError, ValueError) as e:
        result = {"cells": [{"key": "models", "label": LABELS["models"], "status": FAIL, "message": str(e), "latency_ms": None}],
                  "facts": {}}
    else:
        async def go():
            async with client:
                return await run_probe(client, endpoint.model_id)

        cells, facts = async_to_sync(go)()
        result = {"cells": [c.as_dict() for c in cells], "facts": facts}
    endpoint.probe_result = result
    endpoint.probed_at = timezone.now()
    fields = ["probe_result", "probed_at"]
    by_key = {c["key"]: c for c in result["cells"]}
    for flag, key in FLAGS.items():
        cell = by_key.get(key)
        if cell is not None and cell["status"] in (PASS, UNSUPPORTED):  # a failure says nothing either way
            setattr(endpoint, flag, cell["status"] == PASS)
            fields.append(flag)
    endpoint.save(update_fields=fields)
    return result


def cells(endpoint) -> list[dict]:
    result = getattr(endpoint, "probe_result", None)
    rows = result.get("cells") if isinstance(result, dict) else None
    return [c for c in rows if isinstance(c, dict) and c.get("key")] if isinstance(rows, list) else []


def summary(endpoint, *, short: bool = False) -> str:
    """One line: "probe 16/18 pass · 2 not supported" (short, for a select's options: "probe 16/18
    pass", plus the failures), or "" before any probe."""
    rows = cells(endpoint)
    if not rows:
        return ""
    count = {s: sum(1 for c in rows if c.get("status") == s) for s in (PASS, FAIL, UNSUPPORTED)}
    parts = [f"probe {count[PASS]}/{len(rows)} pass"]
    if short:
        return parts[0] + (f" · {count[FAIL]} failed" if count[FAIL] else "")
    if count[UNSUPPORTED]:
        parts.append(f"{count[UNSUPPORTED]} not supported")
    if count[FAIL]:
        parts.append(f"{count[FAIL]} failed")
    return " · ".join(parts)


def panel_notes(endpoint) -> dict[str, str]:
    """Panel field name -> what the probe found wrong with that option on this endpoint."""
    if endpoint is None:
        return {}
    notes: dict[str, list[str]] = {}
    for cell in cells(endpoint):
        if cell.get("status") in (FAIL, UNSUPPORTED):
            verdict = "not supported" if cell["status"] == UNSUPPORTED else "failed"
            for name in PANEL_FIELDS.get(cell["key"], ()):
                notes.setdefault(name, []).append(f"{cell.get('label')}: {verdict} on this endpoint — {cell.get('message', '')}")
    when = timezone.localtime(endpoint.probed_at).strftime("%Y-%m-%d %H:%M") if endpoint.probed_at else ""
    return {name: "; ".join(lines) + (f" (probe of {when}; it can still be sent)" if when else "") for name, lines in notes.items()}


def max_model_len(endpoint) -> int | None:
    result = getattr(endpoint, "probe_result", None)
    facts = result.get("facts") if isinstance(result, dict) else None
    value = facts.get("max_model_len") if isinstance(facts, dict) else None
    return value if isinstance(value, int) else None
