"""True/false statements generated from the project's fact tables (Geometry-of-Truth style)."""
from __future__ import annotations

import csv
import random

import pandas as pd

from steering.registry import ASSETS


def _table(name: str) -> list[dict[str, str]]:
    with (ASSETS / "facts" / f"{name}.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def city_statements(seed: int = 0) -> pd.DataFrame:
    """'The city of X is in Y.' once with the true country (label 1) and once with a wrong one (label 0)."""
    rows = [r for r in _table("cities") if r["city"] != r["country"]]
    countries = sorted({r["country"] for r in rows})
    rng = random.Random(seed)
    out = []
    for r in rows:
        wrong = rng.choice([c for c in countries if c != r["country"]])
        out.append({"statement": f"The city of {r['city']} is in {r['country']}.", "label": 1, "city": r["city"]})
        out.append({"statement": f"The city of {r['city']} is in {wrong}.", "label": 0, "city": r["city"]})
    return pd.DataFrame(out)
