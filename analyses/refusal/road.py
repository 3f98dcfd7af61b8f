"""What the refusal study offers the post-training lab, which runs it at every stage of the road from base to DPO:

    final = final_direction(final_result)                       # the final model's selected direction
    direction_cosines(stage_result, final)                      # the stage's direction against the final's, base's
    transfer_along_road(stage_pair, stage_result, final, config, data)   # rows: the stage steered by both

Transfer along the road: the base's and the final model's refusal directions, added to every stage on harmless
prompts and ablated from it on harmful ones, scored as the refusal study scores its test interventions (the same
interventions, strength and phrases; the stage's own residual norms scale the addition)."""
from __future__ import annotations

import pandas as pd
import torch

from steering.generation import format_prompts

from .compute import Result, steering_of
from .config import Config
from .data import RefusalData, default_data
from .evaluate import SelectedDirection, intervention_for
from .scores import generate_conditions, refusal_flags, refusal_token_ids

SIDES = {"harmful": "ablate", "harmless": "add"}


def _hook(model, mode: str, source: SelectedDirection, target: SelectedDirection, positions, config):
    return lambda rows, length: intervention_for(model, mode, source, target, positions, config.alpha,
                                                 config.ablation, rows, length)()


def transfer_rows(model, tokenizer, own: SelectedDirection, sources: dict[str, SelectedDirection],
                  data: RefusalData, positions: list[int], token_ids: list[int], config) -> list[dict]:
    """One row per (direction source, prompt set): refusal rate and score on the test split with that source's
    direction added (harmless) or ablated (harmful), and the unsteered baseline ('none'). `own` is the stage's
    own selected direction: its norms and harmless mean make the intervention the stage's."""
    rows = []
    for side, mode in SIDES.items():
        raw = data.get(side, "test", config.n_test)
        hooks = [None] + [_hook(model, mode, source, own, positions, config) for source in sources.values()]
        outs = generate_conditions(model, tokenizer, format_prompts(tokenizer, raw), token_ids, hooks,
                                   max_new_tokens=config.max_new_tokens, batch_size=config.batch_size)
        for name, (replies, scores) in zip(["none", *sources], outs):
            flags = refusal_flags(replies, config.phrases or None)
            rows.append({"direction_from": name, "intervention": "none" if name == "none" else mode,
                         "prompts": side, "n": len(flags), "refusal_rate": sum(flags) / len(flags),
                         "refusal_score": float(pd.Series(scores).mean())})
    return rows


def final_direction(result: Result) -> SelectedDirection:
    """The post-trained model's selected direction of a refusal result (the road's final model's, in the lab)."""
    return steering_of(result)["post"]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=0))


def direction_cosines(result: Result, final: SelectedDirection) -> dict[str, float]:
    """The stage's refusal candidate at the final model's selected cell against the final model's direction and
    against the base's candidate there (the cell: the final model's selected layer and position), so all stages
    are compared at one place."""
    key = f"@{final.position}"
    own, base = result.candidate_directions["post" + key], result.candidate_directions["base" + key]
    return {"direction_cosine_with_final": _cosine(own.at(final.layer), final.vector),
            "direction_cosine_with_base": _cosine(own.at(final.layer), base.at(final.layer))}


def transfer_along_road(pair, result: Result, final: SelectedDirection, config: Config,
                        data: RefusalData | None = None) -> list[dict]:
    """Transfer rows of one stage (see transfer_rows): the base's and the final model's directions steering the
    stage's model, with the stage's own norms and harmless mean (from its refusal result `result`)."""
    own = steering_of(result)
    data = default_data(pair, config) if data is None else data
    return transfer_rows(pair.post, pair.tokenizer, own["post"], {"base": own["base"], "final": final}, data,
                         result.positions, refusal_token_ids(pair.tokenizer, config.refusal_tokens,
                                                             config.phrases or None), config)
