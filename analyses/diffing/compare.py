"""The activation difference against the other studies' directions (refusal, truth), read where it is shown (the
page, the CLI's output), never in the run: those directions come from the user's store and the shipped results, which
differ between machines, and a run reads only its inputs, all of them covered by its key.

    compared_with(result, pair)   # layer, direction, cosine (empty when no study direction is stored for the pair)
"""
from __future__ import annotations

import pandas as pd

from steering.directions import Direction

from .difference import cosines


def compared_with(result, pair) -> pd.DataFrame:
    """layer, direction, cosine: the result's difference against every other study's stored direction for this
    pair (of the same shape)."""
    return cosines(result.difference, study_directions(pair))


def study_directions(pair) -> list[tuple[str, Direction]]:
    """The other studies' stored and shipped directions for this pair (this study's own left out), each once: a
    direction both stored and shipped keeps its shipped label, the same on every machine."""
    from analyses.study_directions import directions_for

    kept: dict[bytes, tuple[str, Direction]] = {}
    for label, direction in directions_for(pair):
        if label.startswith("diffing "):
            continue
        key = direction.vectors.numpy().tobytes()
        if key not in kept or (label.endswith("(shipped)") and not kept[key][0].endswith("(shipped)")):
            kept[key] = (label, direction)
    return list(kept.values())
