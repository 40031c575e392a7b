"""Checks a JSON answer against the schema its request asked for (never fetching remote $ref)."""

from __future__ import annotations

import json

from jsonschema import validators
from jsonschema.exceptions import SchemaError
from referencing import Registry


def requested_schema(body: dict) -> tuple[bool, dict | None]:
    """(expects JSON, schema or None) from a request body's response_format / structured_outputs."""
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return True, (rf.get("json_schema") or {}).get("schema")
    if rf.get("type") == "json_object":
        return True, None
    so = body.get("structured_outputs") or {}
    if "json" in so:
        schema = so["json"]
        return True, schema if isinstance(schema, dict) else None
    if "json_object" in so:
        return True, None
    return False, None


def check_answer(body: dict, text: str) -> dict | None:
    expects_json, schema = requested_schema(body)
    if not expects_json:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        return {"valid": False, "error": f"not valid JSON ({e})"}
    if schema is None:
        return {"valid": True, "error": ""}
    try:
        cls = validators.validator_for(schema)
        cls.check_schema(schema)
        error = next(iter(sorted(cls(schema, registry=Registry()).iter_errors(value), key=lambda e: e.path)), None)
    except (SchemaError, Exception) as e:  # an unusable schema: say so rather than crash the page
        return {"valid": False, "error": f"the schema could not be used ({type(e).__name__})"}
    if error is None:
        return {"valid": True, "error": ""}
    path = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return {"valid": False, "error": f"at {path}: {error.message}"}
