"""The paper's studies, one package each, listed in `STUDIES` (each exports a `Study` record: see analyses/study.py).

    from analyses import STUDIES, RECORDS, find_study
    for s in STUDIES: print(s.name, s.title)
    refusal = find_study("refusal"); result = refusal.run(pair, refusal.Config())
    for r in RECORDS: ...        # the studies and the post-training lab: what the front doors list

No Streamlit here. The packages are imported when STUDIES is first read, so `import analyses.statements` stays
light."""
from __future__ import annotations

import importlib

from .study import Study

# The registry: a sixth study is one more name here (and its package, laid out as analyses/study.py says).
STUDY_NAMES = ("truthfulness", "refusal", "knowledge", "confidence", "diffing")
# Beyond the studies, what the front doors (the CLI's sub-commands, the app's pages, the landing page's links) list:
# the post-training lab, which runs every study of the registry along the road from base to DPO.
RUNNERS = ("lab",)


def find_study(name: str) -> Study:
    """The study record of that name; an unknown name gets the list of known ones."""
    if name not in STUDY_NAMES:
        from steering.errors import InvalidInputError

        raise InvalidInputError(f"Unknown study '{name}'. Known studies: {', '.join(STUDY_NAMES)}.")
    return importlib.import_module(f"analyses.{name}").STUDY


def find_record(name: str) -> Study:
    """The record of a study or of the lab (every package of the front doors' list exports `STUDY`)."""
    if name not in STUDY_NAMES + RUNNERS:
        from steering.errors import InvalidInputError

        raise InvalidInputError(f"Unknown study '{name}'. Known: {', '.join(STUDY_NAMES + RUNNERS)}.")
    return importlib.import_module(f"analyses.{name}").STUDY


def __getattr__(attr: str):
    if attr == "STUDIES":
        return [find_study(name) for name in STUDY_NAMES]
    if attr == "RECORDS":  # the one list the front doors iterate: every study, then the lab
        return [find_record(name) for name in STUDY_NAMES + RUNNERS]
    raise AttributeError(f"module 'analyses' has no attribute {attr!r}")
