"""The diffing study's headline numbers."""
from __future__ import annotations

from .compute import Result


def headline(result: Result) -> dict[str, float | int]:
    """Per text: mean and max KL(post || base), the position of the max, mean TV, KL at the last position (for a
    chat turn: the distribution of the answer's first token); per text and model ("…/base"):
    the layer at which the lens position's final answer first enters the top 5; for the activation difference:
    the layer where its norm relative to the residual stream peaks, and that relative norm."""
    out: dict[str, float | int] = {}
    for name, rows in result.tokens.groupby("text", sort=False):
        peak = rows.loc[rows["kl_post_base"].idxmax()]
        out[f"mean_kl_post_base_{name}"] = float(rows["kl_post_base"].mean())
        out[f"max_kl_post_base_{name}"] = float(peak["kl_post_base"])
        out[f"peak_kl_position_{name}"] = int(peak["position"])
        out[f"mean_tv_{name}"] = float(rows["tv"].mean())
        out[f"kl_post_base_at_last_{name}"] = float(rows["kl_post_base"].iloc[-1])  # the answer's first token
    for row in result.answer_layers.itertuples(index=False):
        out[f"answer_top5_layer_{row.text}/{row.model}"] = int(row.first_top5_layer)
    layers = result.difference_norms.iloc[:-1]  # the decoder layers (the last row is the final norm's input)
    peak = layers.loc[layers["relative"].idxmax()]
    out["difference_peak_layer"] = int(peak["layer"])
    out["difference_peak_relative_norm"] = float(peak["relative"])
    return out
