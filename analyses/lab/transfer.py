"""Transfer along the road: the base's and the final model's refusal directions, added to every stage on harmless
prompts and ablated from it on harmful ones, scored as the refusal study scores its test interventions (the same
interventions, strength and phrases; the stage's own residual norms scale the addition)."""
from __future__ import annotations

import pandas as pd

from steering.generation import format_prompts

from ..refusal.data import RefusalData
from ..refusal.evaluate import SelectedDirection, intervention_for
from ..refusal.scores import generate_conditions, refusal_flags

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
