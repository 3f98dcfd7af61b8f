"""The refusal study's instruction sets (assets/refusal/) and their fixed train/val/test splits."""
from __future__ import annotations

import json
from typing import Literal

from .registry import ASSETS

REFUSAL_DIR = ASSETS / "refusal"


def refusal_study_split(file: Literal["harmful.txt", "harmless.txt"], split: Literal["train", "val", "test"]) -> list[str]:
    """The instructions of one split, in file order (blank lines skipped, as in splits.json)."""
    lines = [ln.strip() for ln in (REFUSAL_DIR / file).read_text(encoding="utf-8").splitlines() if ln.strip()]
    indices = json.loads((REFUSAL_DIR / "splits.json").read_text())[file][split]
    return [lines[i] for i in indices]
