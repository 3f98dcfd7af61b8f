"""The refusal study's headline: per model, the selected cell and the refusal rates of the paper's conditions."""
from __future__ import annotations

import pandas as pd

# (key, intervention, prompt set, whose direction): the unsteered rates, then the four transfer conditions
CONDITIONS = (("refusal_rate_harmful_unsteered", "none", "harmful", None),
              ("refusal_rate_harmless_unsteered", "none", "harmless", None),
              ("refusal_rate_harmful_ablated_own", "ablate", "harmful", "own"),
              ("refusal_rate_harmful_ablated_transferred", "ablate", "harmful", "other"),
              ("refusal_rate_harmless_added_own", "add", "harmless", "own"),
              ("refusal_rate_harmless_added_transferred", "add", "harmless", "other"))


def _rate(scores: pd.DataFrame, model: str, intervention: str, prompts: str, whose: str | None) -> float | None:
    rows = scores[(scores.model == model) & (scores.intervention == intervention) & (scores.prompts == prompts)]
    if whose == "own":
        rows = rows[rows.direction_from == model]
    elif whose == "other":
        rows = rows[rows.direction_from != model]
    return float(rows.refusal_rate.iloc[0]) if len(rows) else None


def headline(result) -> dict[str, float | int]:
    """Flat numbers per steered model ("…/base", "…/post"): the selected layer, position (offset from the prompt's
    end) and its harmless KL; the refusal rate unsteered on both prompt sets, with the own and the other model's
    direction ablated on harmful prompts and added on harmless ones ("transferred" is backward transfer for the
    base model, forward for the post-trained one; absent for a single model)."""
    out: dict[str, float | int] = {}
    for row in result.selected.itertuples():
        out[f"selected_layer/{row.model}"] = int(row.layer)
        out[f"selected_position/{row.model}"] = int(row.position)
        out[f"selected_kl/{row.model}"] = float(row.kl)
    for model in result.selected.model:
        for key, intervention, prompts, whose in CONDITIONS:
            rate = _rate(result.scores, model, intervention, prompts, whose)
            if rate is not None:
                out[f"{key}/{model}"] = rate
    return out
