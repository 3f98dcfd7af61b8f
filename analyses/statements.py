"""True/false statement sets generated from the project's fact tables (Geometry-of-Truth style), and uploads.

Every set is balanced: each fact gives one true statement (label 1) and one false one (label 0) built from the
same template with a wrong object, so the two differ in one word. Each set has a fixed train/test split by fact,
so a fact's true and false versions are always on the same side.

    statement_set("cities")  ->  DataFrame[statement, label, subject, object, fact, split]
"""
from __future__ import annotations

import csv
import random
from collections.abc import Callable

import pandas as pd

from steering.errors import InvalidInputError
from steering.registry import ASSETS

from .csv_files import csv_rows

TEST_SHARE = 0.25
COLUMNS = ["statement", "label", "subject", "object", "fact", "split"]


def _table(name: str) -> list[dict[str, str]]:
    with (ASSETS / "facts" / f"{name}.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _pairs(facts: list[tuple[str, str]], template: str, seed: int) -> pd.DataFrame:
    """One true and one false statement per (subject, object) fact; the false object is another fact's."""
    rng = random.Random(seed)
    objects = sorted({o for _, o in facts})
    rows = []
    for number, (subject, obj) in enumerate(facts):
        wrong = rng.choice([o for o in objects if o != obj])
        for label, o in ((1, obj), (0, wrong)):
            rows.append({"statement": template.format(s=subject, o=o), "label": label, "subject": subject,
                         "object": o, "fact": number})
    return pd.DataFrame(rows)


def _number_word(n: int) -> str:
    ones = "zero one two three four five six seven eight nine".split()
    tens = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty", 9: "ninety"}
    return tens[n // 10] + ("" if n % 10 == 0 else "-" + ones[n % 10])


def _larger_than(seed: int) -> pd.DataFrame:
    """'Seventy-two is larger than fifty-eight.' for numbers 51..99 (as in Geometry of Truth), both orders."""
    rng = random.Random(seed)
    numbers = list(range(51, 100))
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < 150:
        a, b = rng.sample(numbers, 2)
        chosen.add((max(a, b), min(a, b)))
    rows = []
    for number, (big, small) in enumerate(sorted(chosen)):
        for label, (x, y) in ((1, (big, small)), (0, (small, big))):
            rows.append({"statement": f"{_number_word(x).capitalize()} is larger than {_number_word(y)}.",
                         "label": label, "subject": _number_word(x), "object": _number_word(y), "fact": number})
    return pd.DataFrame(rows)


def _cities(seed: int) -> pd.DataFrame:
    facts = [(r["city"], r["country"]) for r in _table("cities") if r["city"] != r["country"]]
    return _pairs(facts, "The city of {s} is in {o}.", seed)


def _capitals(seed: int) -> pd.DataFrame:
    facts = [(r["country"], r["capital"]) for r in _table("capitals") if r["country"] != r["capital"]]
    return _pairs(facts, "The capital of {s} is {o}.", seed)


def _translations(seed: int) -> pd.DataFrame:
    facts = [(r["spanish"], r["english"]) for r in _table("translations") if r["spanish"] != r["english"]]
    return _pairs(facts, "The Spanish word '{s}' means '{o}'.", seed)


def _elements(seed: int) -> pd.DataFrame:
    facts = [(r["element"], r["symbol"]) for r in _table("elements")]
    return _pairs(facts, "The chemical symbol of {s} is {o}.", seed)


def _animals(seed: int) -> pd.DataFrame:
    def article(word: str) -> str:
        return ("an " if word[0] in "aeiou" else "a ") + word

    facts = [(r["animal"], article(r["class"])) for r in _table("animals")]
    return _pairs(facts, "The {s} is {o}.", seed)


BUILDERS: dict[str, tuple[Callable[[int], pd.DataFrame], str]] = {
    "cities": (_cities, "'The city of X is in Y.' (386 cities and their countries)"),
    "capitals": (_capitals, "'The capital of X is Y.' (185 countries)"),
    "translations": (_translations, "'The Spanish word X means Y.' (280 words)"),
    "larger_than": (_larger_than, "'Seventy-two is larger than fifty-eight.' (numbers 51-99, both orders)"),
    "elements": (_elements, "'The chemical symbol of X is Y.' (100 elements)"),
    "animals": (_animals, "'The X is a Y.' (132 animals and their class)"),
}


def statement_set_names() -> list[str]:
    return list(BUILDERS)


def describe(name: str) -> str:
    return BUILDERS[name][1] if name in BUILDERS else "uploaded statements"


def with_split(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Add the fixed train/test split by fact: a seeded shuffle, a quarter of the facts to test. Facts are
    stratified by their labels, so an uploaded set (one statement per fact) keeps both labels on both sides."""
    rng = random.Random(seed)
    test: set = set()
    kinds = frame.groupby("fact")["label"].agg(lambda labels: tuple(sorted(set(labels))))
    for _, facts in kinds.groupby(kinds):
        chosen = sorted(facts.index)
        rng.shuffle(chosen)
        test.update(chosen[: max(1, round(len(chosen) * TEST_SHARE))])
    return frame.assign(split=["test" if f in test else "train" for f in frame["fact"]])


def statement_set(name: str, seed: int = 0) -> pd.DataFrame:
    """A built-in set with columns statement, label, subject, object, fact, split."""
    if name not in BUILDERS:
        raise InvalidInputError(f"Unknown statement set '{name}': choose one of {', '.join(BUILDERS)}.")
    return with_split(BUILDERS[name][0](seed), seed)[COLUMNS]


def city_statements(seed: int = 0) -> pd.DataFrame:
    """'The city of X is in Y.' once with the true country (label 1) and once with a wrong one (label 0)."""
    return statement_set("cities", seed)


_LABELS = {"1": 1, "true": 1, "t": 1, "yes": 1, "0": 0, "false": 0, "f": 0, "no": 0}


def check_one_label_each(frame: pd.DataFrame, name: str) -> None:
    """A statement labelled both true and false cannot train a probe (its two rows cancel, and may land on both
    sides of the split), and one given twice would be tested on what it was trained on: each statement once."""
    labels = frame.groupby("statement", sort=False)["label"].agg(["nunique", "size"])
    for statement, (n_labels, n_rows) in labels[labels["size"] > 1].iterrows():
        what = "labelled both true and false" if n_labels > 1 else f"given {n_rows} times"
        raise InvalidInputError(f"{name}: the statement '{statement}' is {what}; give each statement once, "
                                "with one label (1 or 0).")


def parse_statement_csv(text: str, name: str = "the file") -> pd.DataFrame:
    """The user's own set: a CSV with columns statement,label (label 1/0 or true/false), one statement per row.
    Each row becomes its own fact; the split is the same seeded shuffle as the built-in sets."""
    rows = csv_rows(text.strip(), name)
    if not rows:
        raise InvalidInputError(f"{name} is empty: it needs a header row 'statement,label' and one row per statement.")
    header = [h.strip().lower() for h in rows[0]]
    if "statement" not in header or "label" not in header:
        raise InvalidInputError(f"{name}, line 1: the header must name the columns 'statement' and 'label' "
                                f"(found: {', '.join(header) or 'nothing'}).")
    s_col, l_col = header.index("statement"), header.index("label")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidInputError(f"{name}, line {line}: expected {len(header)} columns, found {len(row)} "
                                    "(quote statements that contain commas).")
        statement, label = row[s_col].strip(), row[l_col].strip().lower()
        if not statement:
            raise InvalidInputError(f"{name}, line {line}: the statement is empty.")
        if label not in _LABELS:
            raise InvalidInputError(f"{name}, line {line}: label '{row[l_col]}' is not one of 1, 0, true, false.")
        out.append({"statement": statement, "label": _LABELS[label], "subject": "", "object": "", "fact": len(out)})
    frame = pd.DataFrame(out, columns=["statement", "label", "subject", "object", "fact"])
    check_one_label_each(frame, name)
    counts = frame["label"].value_counts()
    if counts.get(1, 0) < 2 or counts.get(0, 0) < 2:
        raise InvalidInputError(f"{name} needs at least two true and two false statements "
                                f"(found {counts.get(1, 0)} true, {counts.get(0, 0)} false).")
    return with_split(frame)[COLUMNS]
