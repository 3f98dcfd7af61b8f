"""Two-sided prompt lists for computing a direction: built-in sets, and the user's own (typed or uploaded)."""
from __future__ import annotations

import csv
from dataclasses import dataclass

from steering.errors import InvalidInputError
from steering.refusal_data import refusal_study_split
from steering.registry import ASSETS

from .csv_files import csv_rows
from .statements import city_statements


@dataclass(frozen=True)
class ContrastSet:
    name: str
    positive: list[str]
    negative: list[str]
    positive_label: str
    negative_label: str
    chat: bool  # whether the prompts are instructions meant for the chat template
    about: str


def _lines(path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]


def builtin_sets() -> dict[str, ContrastSet]:
    statements = city_statements()
    return {s.name: s for s in (
        ContrastSet("harmful vs harmless", refusal_study_split("harmful.txt", "train"), refusal_study_split("harmless.txt", "train"),
                    "harmful", "harmless", True,
                    "The refusal study's training instructions (Arditi et al. style); read through the chat template."),
        ContrastSet("true vs false", statements[statements.label == 1].statement.tolist()[:200],
                    statements[statements.label == 0].statement.tolist()[:200], "true", "false", False,
                    "'The city of X is in Y.' with the right and a wrong country (Geometry of Truth style)."),
        ContrastSet("positive vs negative tone", _lines(ASSETS / "contrast" / "positive.txt"),
                    _lines(ASSETS / "contrast" / "negative.txt"), "positive", "negative", False,
                    "Parallel everyday sentences in a positive and a negative tone."),
    )}


PROMPT_COLUMNS = ("prompt", "text", "instruction", "statement")  # the header names a CSV's prompt column may have


def parse_prompt_list(text: str, what: str = "list", *, csv_file: bool = False) -> list[str]:
    """The prompts of a typed or uploaded list. The rule, in full:

    - an uploaded .csv file (csv_file=True) is a CSV: its first row is the header and must name a prompt column
      (one of PROMPT_COLUMNS), even when it is the only column;
    - otherwise, a CSV: its first row has two or more comma-separated cells and one of them is exactly (case and spaces
      aside) a column name in PROMPT_COLUMNS ("prompt, category"): that row is the header, the prompts are that
      column, and a row with another number of cells is an error naming its line (never a silent misreading: a
      plain list that starts "Text, then..." is told to start with another line);
    - anything else is a plain list: every non-blank line is a prompt, the first one included. Nothing is ever
      dropped as a header from a plain list, so a list whose first prompt is "Prompt" keeps it (a one-column CSV
      reads as a plain list: its header line is a prompt too)."""
    if not text.strip():
        raise InvalidInputError(f"The {what} is empty: give at least one prompt, one per line.")
    if csv_file or _csv_header(text) is not None:
        return _csv_column(text, what)
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _csv_header(text: str) -> list[str] | None:
    """The header cells when the first line is a CSV header naming a prompt column; None for a plain list."""
    first = text.strip().splitlines()[0]
    try:
        cells = [c.strip().lower() for c in next(csv.reader([first]))]
    except (csv.Error, StopIteration):
        return None
    return cells if len(cells) >= 2 and any(c in PROMPT_COLUMNS for c in cells) else None


def _csv_column(text: str, what: str) -> list[str]:
    rows = csv_rows(text.strip(), what)
    header = [h.strip().lower() for h in rows[0]]
    column = next((h for h in header if h in PROMPT_COLUMNS), None)
    if column is None:
        raise InvalidInputError(f"{what}, line 1: a CSV file needs a header row naming its prompt column, one of "
                                f"{', '.join(PROMPT_COLUMNS)} (found: {', '.join(header) or 'nothing'}).")
    index = header.index(column)
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidInputError(f"{what}, line {number}: expected {len(header)} columns "
                                    f"({', '.join(header)}), found {len(row)}: line 1 reads as a CSV header naming "
                                    f"the '{column}' column; for a plain list, start it with another line.")
        if not row[index].strip():
            raise InvalidInputError(f"{what}, line {number}: the '{column}' cell is empty.")
        out.append(row[index].strip())
    if not out:
        raise InvalidInputError(f"The {what} has a header but no rows.")
    return out


def decode_upload(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{name} is not UTF-8 text (byte {e.start}); save it as UTF-8 and upload again.") from None
