"""Bytes to raw rows that never raise on a row: the layer the readers in :mod:`sources` build on.

A file has two ways to fail. One the ETL cannot read at all (empty, no header, not JSON, a header
without the format's columns, a gzip stream that is not one) raises :class:`UnreadableFile`, and the
readers' dispatchers turn it into ONE quarantined row that names the file and says why. Anything
smaller stays a row: one with more fields than the header, the unterminated quote a truncated file
ends in, bytes that are not UTF-8, a line that is not a JSON object. Such a row carries its reason in
:data:`REJECT`, and normalisation quarantines it, so rows in = rows out + deduplicated + quarantined
for any file, and one bad line never costs the rest of the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from typing import Any

import pandas as pd

REJECT = "_reject"  # why the reader could not lay out this row (None: it could)
DETAIL = "_detail"  # what the reader saw that does not fit (surplus fields, the parser's message)
READER_COLUMNS = (REJECT, DETAIL)
NOT_UTF8 = "bytes that are not UTF-8"
_MARK = "\ufffd"  # what invalid bytes decode to; rows holding it in a file that is not UTF-8 are rejected


class UnreadableFile(ValueError):
    """A whole file the ETL cannot read: ``reason`` is short and fixed (the quarantine groups by it),
    ``detail`` says what was seen."""

    def __init__(self, source: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{source}: {reason}" + (f" ({detail})" if detail else ""))
        self.source, self.reason, self.detail = source, reason, detail


def unreadable_row(exc: UnreadableFile, columns: list[str], **known: str) -> pd.DataFrame:
    """The one raw row that stands for a file that could not be read (``source`` names the file)."""
    row = {c: None for c in columns} | known | {"source": exc.source, REJECT: f"unreadable file: {exc.reason}",
                                                 DETAIL: exc.detail[:500] or None}
    return pd.DataFrame([row], columns=[*columns, *READER_COLUMNS], dtype=object)


def decode(data: bytes) -> tuple[str, bool]:
    """UTF-8 text without a byte-order mark, and whether some bytes were not UTF-8 (then replaced)."""
    try:
        text, bad = data.decode("utf-8"), False
    except UnicodeDecodeError:
        text, bad = data.decode("utf-8", errors="replace"), True
    return text.removeprefix("\ufeff"), bad


def read_csv_rows(data: bytes, source: str, required: list[str]) -> pd.DataFrame:
    """A CSV as strings under its header's names (a repeated name: the first column wins; ``None`` for
    missing trailing fields), plus :data:`READER_COLUMNS` for the rows that did not fit.

    The C parser reads the file. Only when it stops (a row with more fields than the header, an
    unterminated quote) does Python's csv module reread it, so those rows are rejected one by one."""
    text, bad_utf8 = decode(data)
    if not text.strip():
        raise UnreadableFile(source, "empty file")
    try:
        grid = pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False, index_col=False)
        reasons = None
    except pd.errors.ParserError:
        grid, reasons = _reread(text)
    header = ["" if h is None or h != h else str(h).strip() for h in grid.iloc[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise UnreadableFile(source, "missing columns", f"{', '.join(missing)} not in the header {header[:12]}")
    first = {name: i for i, name in reversed(list(enumerate(header)))}
    body = grid.iloc[1:, list(first.values())].astype(object).reset_index(drop=True)
    body.columns = list(first)
    body = body.where(body.notna(), None)
    body[REJECT] = reasons[0][1:] if reasons else None
    body[DETAIL] = reasons[1][1:] if reasons else None
    if bad_utf8:
        marked = body[list(first)].apply(lambda c: c.str.contains(_MARK, regex=False, na=False)).any(axis=1)
        body.loc[marked & body[REJECT].isna(), REJECT] = NOT_UTF8
    return body


def _reread(text: str) -> tuple[pd.DataFrame, tuple[list, list]]:
    """Python's csv module over a file the C parser stopped on: every record, and per record a reason
    (more fields than the header; the last record runs to the end of a truncated file) and detail."""
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""))
    records, last_start, line = [], 0, 0
    for record in reader:
        if record:
            records.append(record)
            last_start = line
        line = reader.line_num
    width = len(records[0])
    reasons: list[str | None] = [None] * len(records)
    details: list[str | None] = [None] * len(records)
    for i, record in enumerate(records):
        if len(record) > width:
            reasons[i], details[i] = "more fields than the header", json.dumps(record[width:], ensure_ascii=False)
    if len(records) > 1 and _open_quote("".join(io.StringIO(text, newline="").readlines()[last_start:])):
        reasons[-1] = "unterminated quoted field (a truncated file?)"
    grid = pd.DataFrame([r[:width] + [None] * (width - len(r)) for r in records], dtype=object)
    return grid, (reasons, details)


def _open_quote(record: str) -> bool:
    """Whether a CSV record's text ends inside a quoted field (the csv module's strict mode says so)."""
    try:
        list(csv.reader(io.StringIO(record, newline=""), strict=True))
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def gunzip(data: bytes, source: str) -> tuple[bytes, bool]:
    """Plain bytes of a gzip file (or ``data`` as is when it is not gzip), and whether the stream ended
    early: a truncated download keeps what it has."""
    if data[:2] != b"\x1f\x8b":
        return data, False
    try:
        return gzip.decompress(data), False
    except EOFError:
        return zlib.decompressobj(wbits=31).decompress(data), True
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise UnreadableFile(source, "not a valid gzip file", str(exc)) from exc


class JsonObject(dict):
    """A JSON object that also keeps every (key, value) pair in order: ``json`` keeps only the last of
    a repeated key, and a repeated date in a price series is a row that must not vanish unseen."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def json_document(data: bytes, source: str) -> dict[str, Any]:
    """A JSON file that must hold one object (each object a :class:`JsonObject`)."""
    try:
        doc = json.loads(data, object_pairs_hook=JsonObject)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UnreadableFile(source, "not JSON", str(exc)[:200]) from exc
    if not isinstance(doc, dict):
        raise UnreadableFile(source, "not a JSON object", f"a JSON {type(doc).__name__}")
    return doc


def json_line(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """One JSON Lines record: ``(object, None)``, or ``(None, reason)`` for a line that is not one."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return None, NOT_UTF8
    except (ValueError, RecursionError):
        return None, "not JSON"
    return (obj, None) if isinstance(obj, dict) else (None, "not a JSON object")
