"""Two-sided prompt lists for computing a direction: built-in sets, and the user's own (typed or uploaded)."""
from __future__ import annotations

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


def parse_prompt_list(text: str, what: str = "list") -> list[str]:
    """One prompt per line; blank lines are skipped. A CSV with a header row 'prompt' or 'text' is read by column."""
    if not text.strip():
        raise InvalidInputError(f"The {what} is empty: give at least one prompt, one per line.")
    first = text.lstrip().splitlines()[0].strip().lower()
    if first in ("prompt", "text", "instruction", "statement") or first.startswith(("prompt,", "text,", "statement,")):
        return _csv_column(text, what)
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _csv_column(text: str, what: str) -> list[str]:
    rows = csv_rows(text.strip(), what)
    header = [h.strip().lower() for h in rows[0]]
    column = next((h for h in header if h in ("prompt", "text", "instruction", "statement")), None)
    if column is None:  # the first line named a column, but not as a CSV cell (e.g. inside quotes with a comma)
        raise InvalidInputError(f"{what}, line 1: the header must name a 'prompt' or 'text' column "
                                f"(found: {', '.join(header) or 'nothing'}).")
    index = header.index(column)
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidInputError(f"{what}, line {number}: expected {len(header)} columns "
                                    f"({', '.join(header)}), found {len(row)}.")
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
