"""Test set files: CSV (a header row of variable names) or JSONL (one object per line), parsed with the
standard library's csv and json into rows of variable values plus an optional expected answer.

A file is accepted whole or not at all: the first problem raises DataError naming the row (and the
column), e.g. 'Row 3 (line 4), column "city": empty'. The column `expected` holds the expected
answer; every other column is a variable, named as prompt variables are ({{name}}).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from chat.templating import valid_name

EXPECTED = "expected"
MAX_BYTES = 5_000_000
MAX_ROWS = 5_000
MAX_COLUMNS = 50
MAX_CELL = 100_000


class DataError(ValueError):
    """Why a file was refused, naming the row and column where it could."""


@dataclass
class Parsed:
    variables: list[str]
    rows: list[dict] = field(default_factory=list)  # {"values": {var: text}, "expected": text}


def decode(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise DataError(f"The file is too large ({len(data):,} bytes; at most {MAX_BYTES:,}).")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"Line {line} is not UTF-8 text (byte {e.start + 1}); save the file as UTF-8.") from None
    return text


def guess_format(text: str, filename: str = "") -> str:
    """"jsonl" for a .jsonl/.ndjson/.json name or text starting with {, else "csv"."""
    name = filename.lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    return "jsonl" if text.lstrip().startswith("{") else "csv"


def parse(text: str, fmt: str) -> Parsed:
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(f"Line {line} holds a NUL character: this is not a text file.")
    parsed = parse_jsonl(text) if fmt == "jsonl" else parse_csv(text)
    if not parsed.rows:
        raise DataError("The file has no rows.")
    return parsed


def check_columns(names: list[str], where: str = "The header") -> list[str]:
    """Variable columns (every name but `expected`), validated."""
    seen = set()
    for number, name in enumerate(names, 1):
        if name in seen:
            raise DataError(f'{where}: column {number} "{name}" appears twice.')
        seen.add(name)
        if name != EXPECTED and not valid_name(name):
            raise DataError(
                f'{where}: column {number} "{name}" is not a valid variable name (a letter or _, then letters, digits or _).'
            )
    variables = [n for n in names if n != EXPECTED]
    if not variables:
        raise DataError(f"{where} names no variable column (only {EXPECTED!r}).")
    if len(names) > MAX_COLUMNS:
        raise DataError(f"{where} has {len(names)} columns; at most {MAX_COLUMNS}.")
    return variables


def _cell(where: str, name: str, value: str) -> str:
    if len(value) > MAX_CELL:
        raise DataError(f'{where}, column "{name}": too long ({len(value):,} characters; at most {MAX_CELL:,}).')
    if name != EXPECTED and not value.strip():
        raise DataError(f'{where}, column "{name}": empty (every variable needs a value).')
    return value


def parse_csv(text: str) -> Parsed:
    first = text.split("\n", 1)[0]
    # The header line decides the delimiter: commas, else tabs, else semicolons (spreadsheet exports).
    delimiter = next((d for d in (",", "\t", ";") if d in first), ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    number = 0
    try:
        header = next(reader, None)
        if header is None:
            raise DataError("The file is empty.")
        header = [h.strip() for h in header]
        variables = check_columns(header, "The header (line 1)")
        parsed = Parsed(variables)
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue  # blank lines (a trailing newline, spacing) are not rows
            number += 1
            where = f"Row {number} (line {reader.line_num})"
            if len(cells) != len(header):
                raise DataError(f"{where}: {len(cells)} field{'s' if len(cells) != 1 else ''}, but the header has {len(header)} columns.")
            if number > MAX_ROWS:
                raise DataError(f"More than {MAX_ROWS:,} rows; split the file.")
            values = {name: _cell(where, name, cell) for name, cell in zip(header, cells)}
            parsed.rows.append({"values": {v: values[v] for v in variables}, "expected": values.get(EXPECTED, "")})
    except csv.Error as e:
        raise DataError(f"Row {number + 1} (line {reader.line_num}): not valid CSV ({e}).") from None
    return parsed


def _text(where: str, name: str, value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and value is not None:
        return json.dumps(value)
    kind = "null" if value is None else ("an object" if isinstance(value, dict) else "a list")
    raise DataError(f'{where}, column "{name}": {kind}; give text or a number.')


def parse_jsonl(text: str) -> Parsed:
    """One JSON object per line; the first row's keys name the columns, and every row has the same ones."""
    parsed: Parsed | None = None
    columns: list[str] = []
    number = 0
    for line_number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        number += 1
        where = f"Row {number} (line {line_number})"
        if number > MAX_ROWS:
            raise DataError(f"More than {MAX_ROWS:,} rows; split the file.")
        try:
            row = json.loads(line, parse_constant=_refuse_constant)
        except ValueError as e:
            raise DataError(f"{where}: not valid JSON ({e}).") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: a JSON object is expected, e.g. {{\"city\": \"Paris\"}}.")
        if parsed is None:
            columns = list(row)
            parsed = Parsed(check_columns(columns, f"{where}, the first"))
        missing = [c for c in columns if c not in row]
        if missing:
            raise DataError(f'{where}, column "{missing[0]}": missing (the first row has it).')
        extra = [k for k in row if k not in columns]
        if extra:
            raise DataError(f'{where}, column "{extra[0]}": not in the first row\'s columns ({", ".join(columns)}).')
        values = {name: _cell(where, name, _text(where, name, row[name])) for name in columns}
        parsed.rows.append({"values": {v: values[v] for v in parsed.variables}, "expected": values.get(EXPECTED, "")})
    if parsed is None:
        raise DataError("The file has no rows.")
    return parsed


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")
