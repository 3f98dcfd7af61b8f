"""The paper's studies, one package each, listed in `STUDIES` (each exports a `Study` record: see analyses/study.py).

    from analyses import STUDIES, find_study
    for s in STUDIES: print(s.name, s.title)
    refusal = find_study("refusal"); result = refusal.run(pair, refusal.Config())

No Streamlit here. The packages are imported when STUDIES is first read, so `import analyses.statements` stays
light."""
from __future__ import annotations

import importlib

from .study import Study

# The registry: a fifth study is one more name here (and its package).
STUDY_NAMES = ("truthfulness", "refusal", "knowledge", "confidence", "diffing")


def find_study(name: str) -> Study:
    """The study record of that name; an unknown name gets the list of known ones."""
    if name not in STUDY_NAMES:
        from steering.errors import InvalidInputError

        raise InvalidInputError(f"Unknown study '{name}'. Known studies: {', '.join(STUDY_NAMES)}.")
    return importlib.import_module(f"analyses.{name}").STUDY


def __getattr__(attr: str):
    if attr == "STUDIES":
        return [find_study(name) for name in STUDY_NAMES]
    raise AttributeError(f"module 'analyses' has no attribute {attr!r}")
