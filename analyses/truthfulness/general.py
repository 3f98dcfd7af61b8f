"""Generalisation of truth probes across datasets (Marks & Tegmark; Du et al. 2025): for each statement set held
out in turn, probes are fit on the pooled statements of all the others and evaluated on it, per layer and model.

Each set contributes a small balanced sample (both splits), read at the statement's last token (statement alone).
Uncached: the page keeps the table in its session, the CLI (--generalisation) writes it."""
from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import torch

from analyses.common import Progress, Steps
from analyses.config_check import check_settings
from analyses.statements import statement_set, statement_set_names
from analyses.study import setting
from steering.errors import InvalidInputError
from steering.extraction import collect_residuals

from . import probes as tp
from .data import balanced


@dataclass(frozen=True)
class GeneralConfig:
    """Settings of the generalisation table."""

    datasets: tuple[str, ...] = setting(("cities", "capitals", "translations", "larger_than", "elements", "animals"),
                                        "statement sets, each held out in turn")
    n_per_set: int = setting(60, "balanced statements per set (0 = all)", at_least=0, special="0 = all")
    layer_step: int = setting(2, "probe every k-th layer", at_least=1)
    logistic_c: float = setting(1.0, "inverse regularisation of the logistic probe", above=0)
    batch_size: int = setting(16, "statements per forward pass", at_least=1)
    seed: int = setting(0, "seed of the balanced samples", at_least=0)


def _sets(config: GeneralConfig) -> dict[str, pd.DataFrame]:
    unknown = [d for d in config.datasets if d not in statement_set_names()]
    if unknown or len(config.datasets) < 2:
        raise InvalidInputError(f"Generalisation needs two or more of {', '.join(statement_set_names())}"
                                + (f" (unknown: {', '.join(unknown)})." if unknown else "."))
    return {d: balanced(statement_set(d), config.n_per_set, config.seed) for d in config.datasets}


def generalisation(pair, config: GeneralConfig = GeneralConfig(), progress: Progress | None = None) -> pd.DataFrame:
    """Rows: model, held_out, trained_on, layer, method, accuracy (and seconds taken, in `attrs`)."""
    check_settings(config)  # NaN, infinity or a setting out of range: one sentence, before any work
    start = time.perf_counter()
    sets = _sets(config)
    layers = list(range(0, pair.n_layers, config.layer_step))
    steps = Steps(progress, {role: 1 for role in pair.models()})
    acts: dict[str, dict[str, torch.Tensor]] = {}
    for role, model in pair.models().items():
        report = steps.stage(role, f"reading {role} activations")
        statements = [s for f in sets.values() for s in f["statement"]]
        every = collect_residuals(model, pair.tokenizer, statements, layers=layers, positions=(-1,),
                                  batch_size=config.batch_size, progress=report)[:, :, 0]
        acts[role] = dict(zip(sets, torch.split(every, [len(f) for f in sets.values()])))
    labels = {d: torch.as_tensor(f["label"].to_numpy().copy()) for d, f in sets.items()}
    table = tp.generalisation_table(acts, labels, layers, config.logistic_c)
    steps.done()
    table.attrs["seconds"] = round(time.perf_counter() - start, 2)
    return table

