"""The CSV files that come in (the users' uploads) and go out (the tables the CLI and the pages export), in one
place, so every reader accepts the same files and every writer escapes the same cells.

    rows = csv_rows(text, "mine.csv")       # list of rows; BadFileError names the file, the line and the fix
    text = table_csv(frame)                 # a DataFrame as CSV text, text cells escaped against formula injection
    write_table_csv(frame, out / "x.csv")
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from steering.errors import BadFileError

FIELD_LIMIT = csv.field_size_limit()  # the csv module's longest cell: 131,072 characters
# OWASP, CSV injection: a spreadsheet runs a cell starting with one of these as a formula (tab and carriage return
# too, since some spreadsheets strip them first); a leading single quote makes it plain text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# RFC 4180's CRLF: the csv module quotes a cell only for the characters of its line end, so with pandas' "\n" a
# cell holding a bare "\r" would go out unquoted and a spreadsheet would break the row there.
LINE_END = "\r\n"


def csv_rows(text: str, name: str) -> list[list[str]]:
    """Every row of a CSV text. Any line end is accepted: \\n, \\r\\n, and the bare \\r of Excel's "CSV
    (Macintosh)" (read as universal newlines, so a line end inside a quoted cell becomes \\n)."""
    reader = csv.reader(io.StringIO(text, newline=None))
    try:
        return list(reader)
    except csv.Error as e:
        raise _unreadable(name, reader.line_num, e) from None


def _unreadable(name: str, line: int, error: csv.Error) -> BadFileError:
    if "field limit" in str(error):
        return BadFileError(name, f"line {line} has a cell longer than {FIELD_LIMIT:,} characters",
                            "Shorten that cell, or check that a quote (\") opened in it is closed where it should be.")
    return BadFileError(name, f"line {line} is not valid CSV ({error})",
                        "Save the file again as CSV (UTF-8) from your spreadsheet and upload it again.")


def escaped_cell(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula, with a single quote in front; anything else (numbers,
    negative ones included) as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def escaped(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its text cells (and column names) escaped; numeric columns are left alone."""
    out = frame.copy()
    for column in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[column]) or pd.api.types.is_datetime64_any_dtype(out[column])):
            out[column] = out[column].astype(object).map(escaped_cell)
    return out.rename(columns=lambda c: escaped_cell(c))


def table_csv(frame: pd.DataFrame) -> str:
    """The frame as CSV text for a download button, escaped (see `escaped`)."""
    return escaped(frame).to_csv(index=False, lineterminator=LINE_END)


def write_table_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """The frame as a CSV file, escaped (see `escaped`)."""
    path = Path(path)
    escaped(frame).to_csv(path, index=False, lineterminator=LINE_END)
    return path
