"""The confidence study's data: held-out texts for the mean ablations (the questions are built in calibration.py)."""
from __future__ import annotations

from collections.abc import Sequence

from steering.registry import ASSETS
from steering.tokens import dataset_hash

HELDOUT = ASSETS / "posttrain" / "heldout_text.txt"


def heldout_texts() -> list[str]:
    """The non-empty, non-comment lines of the held-out text file (text neither model was trained on)."""
    lines = HELDOUT.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def default_data(pair, config) -> list[str]:
    """The built-in data of a run: the held-out texts (for any pair and config)."""
    return heldout_texts()


def data_hash(texts: Sequence[str]) -> str:
    return dataset_hash(list(texts))
