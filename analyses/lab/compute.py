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

from steering.pairs import ModelPair, load_beside, with_base_only
from steering.stages import training_losses

import analyses

from .. import find_study
from ..common import Progress, Steps
from ..refusal import direction_cosines, final_direction, transfer_along_road
from ..store import ResultStore, config_json, run_cached
from .config import Config, study_config
from .data import LabData, default_data

# Progress weights: each study's typical seconds per stage at the lab's settings are on its record
# (`Study.lab.seconds`); transfer along the road's are here. Only their ratios matter.
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


def direction_rows(stage, result, final) -> list[dict]:
    """The stage's refusal direction against the final model's and the base's (refusal's `direction_cosines`)."""
    values = direction_cosines(result, final)
    return [{"stage": stage.name, "step": stage.step, "phase": stage.phase, "study": "refusal", "metric": name,
             "model": "post", "value": value} for name, value in values.items()]


def _weights(data: LabData, studies, transfer: bool) -> dict[str, float]:
    """In running order; the final model's refusal run comes first, and its turn in the loop finds it stored."""
    names = [s.name for s in studies]
    weights = {"final refusal": find_study("refusal").lab.seconds} if "refusal" in names else {}
    for stage in data.stages:
        for study in studies:
            weights[f"{stage.name} {study.name}"] = (1.0 if (stage.pair, study.name) == (data.final, "refusal")
                                                     else study.lab.seconds)
            if transfer and study.name == "refusal":  # transfer runs right after the stage's refusal study
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
    data = default_data(pair, config) if data is None else data
    settings, study_data = settings or {}, study_data or {}

    def config_of(study):
        return settings.get(study.name) or study_config(study)

    names = config.studies or analyses.STUDY_NAMES
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
        final = final_direction(final_result)
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
                timeline += direction_rows(stage, stored.result, final)
                if transfer:
                    report = steps.stage(f"{stage.name} transfer", f"{stage.name}: transfer along the road")
                    transfers += [{"stage": stage.name, "step": stage.step, "phase": stage.phase, **row}
                                  for row in transfer_along_road(stage_pair, stored.result, final,
                                                                 config_of(refusal), study_data.get("refusal"))]
                    report(1, 1)
            steps.partial("timeline", pd.DataFrame(timeline, columns=TIMELINE_COLUMNS))
        del stage_pair
        gc.collect()
    steps.done()
    return Result(pd.DataFrame(timeline, columns=TIMELINE_COLUMNS), pd.DataFrame(transfers),
                  pd.DataFrame(training_losses(data.pair)), pd.DataFrame(runs),
                  {s.name: config_json(config_of(s)) for s in studies}, {s.name: s.version for s in studies})


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
