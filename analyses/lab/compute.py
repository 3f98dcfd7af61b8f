"""The lab: every study of the registry at every stage of the road from base to SFT to DPO, each stage as a pair
with the base, gathered into one tidy table (stage, step, phase, study, metric, model, value).

One base stays loaded; each stage's model is loaded beside it, used by every study, and freed before the next.
Every study result goes through the result store (`run_cached`), so a rerun of one stage or one study computes
only what is missing, and a study page opened on a stage pair (`demo@step36`) finds it too."""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from steering.pairs import ModelPair, load_beside, with_base_only
from steering.stages import training_losses

from .. import STUDY_NAMES, find_study
from ..common import Progress, Steps
from ..store import ResultStore, config_json, run_cached
from .config import Config, study_config
from .data import LabData, default_data
from .transfer import transfer_rows

# Progress weights: each study's typical seconds per stage at the lab's settings in the shipped demo run (one
# thread, sharing the cores); only their ratios matter.
SECONDS = {"truthfulness": 250.0, "refusal": 240.0, "knowledge": 110.0, "confidence": 130.0, "diffing": 8.0}
TRANSFER_SECONDS = 20.0
TIMELINE_COLUMNS = ["stage", "step", "phase", "study", "metric", "model", "value"]


@dataclass
class Result:
    timeline: pd.DataFrame  # stage, step, phase, study, metric, model, value: every headline number at every stage
    transfer: pd.DataFrame  # stage, step, phase, direction_from, intervention, prompts, n, refusal_rate, refusal_score
    losses: pd.DataFrame  # step, phase, split, metric, value: the committed training logs on the same step axis
    runs: pd.DataFrame  # stage, study, seconds (0 when the store had it), key
    settings: dict = field(default_factory=dict)  # study -> the config it ran with at every stage
    versions: dict = field(default_factory=dict)  # study -> its version


def split_metric(name: str) -> tuple[str, str]:
    """'ece/base' -> ('ece', 'base'); 'flip_rate/base->post' -> ('flip_rate', 'base->post'); 'n_traced' -> pair."""
    metric, slash, model = name.rpartition("/")
    return (metric, model) if slash else (name, "pair")


def headline_rows(stage, study: str, headline: dict) -> list[dict]:
    rows = []
    for name, value in headline.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        metric, model = split_metric(name)
        rows.append({"stage": stage.name, "step": stage.step, "phase": stage.phase, "study": study,
                     "metric": metric, "model": model, "value": float(value)})
    return rows


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=0))


def direction_rows(stage, result, final) -> list[dict]:
    """The stage's refusal candidates at the final model's selected cell, against the final model's and the base's
    (the cell: the final model's selected layer and position), so all stages are compared at one place."""
    key = f"@{final.position}"
    own, base = result.candidate_directions["post" + key], result.candidate_directions["base" + key]
    values = {"direction_cosine_with_final": _cosine(own.at(final.layer), final.vector),
              "direction_cosine_with_base": _cosine(own.at(final.layer), base.at(final.layer))}
    return [{"stage": stage.name, "step": stage.step, "phase": stage.phase, "study": "refusal", "metric": name,
             "model": "post", "value": value} for name, value in values.items()]


def _weights(data: LabData, studies, transfer: bool) -> dict[str, float]:
    """In running order; the final model's refusal run comes first, and its turn in the loop finds it stored."""
    names = [s.name for s in studies]
    weights = {"final refusal": SECONDS["refusal"]} if "refusal" in names else {}
    for stage in data.stages:
        for name in names:
            weights[f"{stage.name} {name}"] = (1.0 if (stage.pair, name) == (data.final, "refusal")
                                               else SECONDS.get(name, 60.0))
            if transfer and name == "refusal":  # transfer runs right after the stage's refusal study
                weights[f"{stage.name} transfer"] = TRANSFER_SECONDS
    return weights


def models_needed(data: LabData) -> int:
    """Models a run loads in all (the base and each stage but the base stage); two are in memory at a time."""
    return 1 + sum(stage.name != "base" for stage in data.stages)


def run(pair: ModelPair, config: Config, *, data: LabData | None = None, progress: Progress | None = None,
        store: ResultStore | None = None, settings: dict[str, Any] | None = None,
        study_data: dict[str, Any] | None = None) -> Result:
    """The lab on the road of the loaded pair's registered name (its base is used; its post model is not).

    settings / study_data (scripted runs and tests): study name -> the Config / data it runs with at every stage
    instead of the lab's settings and its built-in data."""
    from ..refusal.compute import steering_of

    data = default_data(pair, config) if data is None else data
    settings, study_data = settings or {}, study_data or {}

    def config_of(study):
        return settings.get(study.name) or study_config(study)

    names = config.studies or STUDY_NAMES
    studies = [find_study(n) for n in names]
    transfer = config.transfer and "refusal" in names
    base_pair = with_base_only(pair)
    steps = Steps(progress, _weights(data, studies, transfer))
    refusal = find_study("refusal")
    final = None
    if "refusal" in names:  # the final model's direction: the cell every stage is compared at, and a source
        final_pair = load_beside(base_pair, data.final)
        final_result = run_cached(refusal, final_pair, config_of(refusal), data=study_data.get("refusal"),
                                  store=store, notice=lambda m: None,
                                  progress=steps.within("final refusal", f"{data.final}: Refusal")).result
        final = steering_of(final_result)
        del final_pair, final_result
        gc.collect()
    timeline, transfers, runs = [], [], []
    for stage in data.stages:
        stage_pair = load_beside(base_pair, stage.pair)
        for study in studies:
            key = f"{stage.name} {study.name}"
            start = time.perf_counter()
            stored = run_cached(study, stage_pair, config_of(study), data=study_data.get(study.name), store=store,
                                notice=lambda m: None,
                                progress=steps.within(key, f"{stage.name} ({stage.phase}, step {stage.step}): "
                                                           f"{study.title}"))
            runs.append({"stage": stage.name, "study": study.name, "key": stored.manifest["key"],
                         "seconds": round(time.perf_counter() - start, 1)})
            timeline += headline_rows(stage, study.name, dict(study.headline(stored.result)))
            if study.name == "refusal":
                timeline += direction_rows(stage, stored.result, final["post"])
                if transfer:
                    report = steps.stage(f"{stage.name} transfer", f"{stage.name}: transfer along the road")
                    transfers += _transfer_at(stage, stage_pair, stored.result, final["post"], config_of(refusal),
                                              study_data.get("refusal"))
                    report(1, 1)
            steps.partial("timeline", pd.DataFrame(timeline, columns=TIMELINE_COLUMNS))
        del stage_pair
        gc.collect()
    steps.done()
    return Result(pd.DataFrame(timeline, columns=TIMELINE_COLUMNS), pd.DataFrame(transfers),
                  pd.DataFrame(training_losses(data.pair)), pd.DataFrame(runs),
                  {s.name: config_json(config_of(s)) for s in studies}, {s.name: s.version for s in studies})


def _transfer_at(stage, pair: ModelPair, result, final, config, data) -> list[dict]:
    """Transfer rows of one stage: the base's and the final model's directions steering the stage's model, with
    the stage's own norms and harmless mean (from its refusal result)."""
    from ..refusal.compute import steering_of
    from ..refusal.scores import refusal_token_ids

    own = steering_of(result)
    rows = transfer_rows(pair.post, pair.tokenizer, own["post"], {"base": own["base"], "final": final},
                         find_study("refusal").resolve_data(pair, config, data), result.positions,
                         refusal_token_ids(pair.tokenizer, config.refusal_tokens, config.phrases or None), config)
    return [{"stage": stage.name, "step": stage.step, "phase": stage.phase, **r} for r in rows]


def merged(full: Result, part: Result) -> Result:
    """`full` with the (stage, study) cells and the stages' transfer rows that `part` recomputed taken from `part`:
    what the page shows after a live run of one stage or one study."""
    cells = set(zip(part.timeline["stage"], part.timeline["study"]))
    keep = ~pd.Series(list(zip(full.timeline["stage"], full.timeline["study"])), index=full.timeline.index,
                      dtype=object).isin(cells)
    timeline = pd.concat([full.timeline[keep], part.timeline], ignore_index=True).sort_values(
        ["step", "study"], kind="stable").reset_index(drop=True)
    transfer = full.transfer
    if not part.transfer.empty:
        transfer = pd.concat([full.transfer[~full.transfer["stage"].isin(set(part.transfer["stage"]))],
                              part.transfer], ignore_index=True).sort_values("step", kind="stable")
    return Result(timeline, transfer.reset_index(drop=True), full.losses,
                  pd.concat([full.runs, part.runs], ignore_index=True), {**full.settings, **part.settings},
                  {**full.versions, **part.versions})
