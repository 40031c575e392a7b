"""An endpoint's custom headers at rest: plain, or secret (Fernet-encrypted like an API key,
write-only: never rendered back, masked wherever headers are shown).

Stored in Endpoint.custom_headers as [{"name", "value", "secret"}]; a secret's "value" is the
ciphertext. Validation is the protocol layer's (chat.upstream.headers).
"""

from __future__ import annotations

from dataclasses import dataclass

from chat import crypto
from chat.upstream.headers import MASK, check_headers, masked


@dataclass
class Row:
    """One header as the console's form edits it; a secret's `value` blank = keep the stored one."""

    name: str
    value: str
    secret: bool


def _rows(endpoint) -> list[dict]:
    rows = endpoint.custom_headers
    return [r for r in rows if isinstance(r, dict) and r.get("name")] if isinstance(rows, list) else []


def values(endpoint) -> dict[str, str]:
    """The headers to send, secrets decrypted (raises crypto.DecryptionError naming the header, never ciphertext)."""
    return {r["name"]: _decrypt(r) if r.get("secret") else str(r.get("value", "")) for r in _rows(endpoint)}


def _decrypt(row: dict) -> str:
    try:
        return crypto.decrypt(row["value"])
    except crypto.DecryptionError:
        raise crypto.DecryptionError(
            f"The endpoint's secret header {row['name']} cannot be decrypted with FIELD_ENCRYPTION_KEYS (was a key removed?)"
        ) from None


def secret_names(endpoint) -> tuple[str, ...]:
    return tuple(r["name"] for r in _rows(endpoint) if r.get("secret"))


def shown(endpoint) -> dict[str, str]:
    """For display (View code, the Inspector, the console): secret values masked."""
    plain = {r["name"]: ("" if r.get("secret") else str(r.get("value", ""))) for r in _rows(endpoint)}
    return masked(plain, secret_names(endpoint))


def stored_rows(endpoint) -> list[Row]:
    """The rows for the console's form: a secret's value is never given back."""
    return [Row(r["name"], "" if r.get("secret") else str(r.get("value", "")), bool(r.get("secret"))) for r in _rows(endpoint)]


def set_rows(endpoint, rows: list[Row]) -> None:
    """Store `rows` (validated; raises chat.upstream.headers.HeaderError). A secret row with a blank
    value keeps the value stored under that name; a new secret needs one."""
    old = {r["name"].lower(): r for r in _rows(endpoint)}
    checked = check_headers((row.name, row.value) for row in rows)
    stored = []
    for row, (name, value) in zip(rows, checked.items()):
        if row.secret:
            previous = old.get(name.lower())
            if not value:
                if not previous or not previous.get("secret"):
                    from chat.upstream.headers import HeaderError

                    raise HeaderError(f"Enter the secret value of {name}.")
                stored.append({"name": name, "value": previous["value"], "secret": True})
            else:
                stored.append({"name": name, "value": crypto.encrypt(value), "secret": True})
        else:
            stored.append({"name": name, "value": value, "secret": False})
    endpoint.custom_headers = stored


def rotate(endpoint) -> bool:
    """Re-encrypt secret values under the newest key (manage.py rotate_keys); True if any."""
    changed = False
    for row in _rows(endpoint):
        if row.get("secret"):
            row["value"] = crypto.rotate(row["value"])
            changed = True
    return changed




def recorded(endpoint) -> dict:
    """The endpoint's headers as a completion records them when sent: secret values masked."""
    return {"headers": shown(endpoint), "secret": list(secret_names(endpoint))}


def for_display(endpoint, conversation_headers: dict | None, sent: dict | None = None) -> list[tuple[str, str, bool]]:
    """Every header a request to `endpoint` carries, as (name, value, secret), the endpoint's
    winning a clash as when sent; a secret's value is the mask (exports read it from the environment).
    `sent`: the endpoint's headers a completion recorded (recorded()); without it, the endpoint's now."""
    from chat.upstream.headers import merged

    if not isinstance(sent, dict):
        sent = recorded(endpoint) if endpoint is not None else {}
    own, secret = dict(sent.get("headers") or {}), {str(name).lower() for name in sent.get("secret") or []}
    extra = conversation_headers if isinstance(conversation_headers, dict) else {}
    return [(name, value, name.lower() in secret) for name, value in merged(own, extra).items()]
