"""Truthfulness: directions, probes, interventions and their transfer between base and post-trained models
(Du et al. 2025, "How Post-Training Reshapes LLMs", truthfulness; method of Marks & Tegmark's Geometry of Truth).

Activations are read at the statement's last token (its period) with the statement alone as the prompt (no
few-shot prefix), as Geometry of Truth does, in the residual stream entering every layer. Per layer and model:
the mass-mean direction (train split), a projection probe and a logistic-regression probe (test accuracy), the
same probes applied to the other model's activations (probe transfer), and the base/post cosine. Then the
intervention of analyses.truthfulness.steer over the 2 x 2 of direction source x steered model. `run` is
uncached: analyses.store.run_cached stores results for the page and the CLI."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from analyses.common import Progress, Steps
from analyses.truth_score import few_shot_prefix, shot_facts, statement_offsets
from steering.directions import Direction, DirectionInfo
from steering.errors import InvalidInputError
from steering.extraction import collect_residuals

from . import probes as tp
from . import steer as ts
from .config import Config
from .data import balanced, check_frame, data_hash, data_name, default_data
from .transfer import transfer_table


@dataclass
class Result:
    probes: pd.DataFrame  # source (probe fit on), model (evaluated on), layer, method, accuracy
    direction_stats: pd.DataFrame  # layer, gap_<role>, cosine (base vs post), cosine_scaled
    pca: pd.DataFrame  # model, layer, index, pc1, pc2, label, split, statement
    transfer: pd.DataFrame  # direction, model, alpha, n, mean_change(_false/_true), flip_rate, accuracy_*, threshold
    steered: pd.DataFrame  # direction, model, alpha, statement, label, score_before, score_after
    # role -> mass-mean direction (train split) of every probed layer; rows of layers not probed are zero
    directions: dict[str, Direction] = field(default_factory=dict)
    dataset: str = ""
    probe_layer: int = 0
    steer_layers: list = field(default_factory=list)
    offsets: list = field(default_factory=list)  # token offsets steered (statement's last token, its period)
    best: dict = field(default_factory=dict)  # model -> method -> [layer, test accuracy]
    thresholds: dict = field(default_factory=dict)  # model -> score threshold (midpoint of train means)
    prefix: str = ""  # the few-shot prompt
    answers: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


def probed_layers(config: Config, n_layers: int) -> list[int]:
    top = n_layers - 1 if config.max_layer < 0 else config.max_layer
    if not 0 <= top < n_layers or config.layer_step < 1:
        raise InvalidInputError(f"max_layer must be in 0..{n_layers - 1} (or -1) and layer_step at least 1.")
    return list(range(0, top + 1, config.layer_step))


def check_config(config: Config, n_layers: int) -> list[int]:
    """Every setting checked before any model runs; returns the probed layers."""
    layers = probed_layers(config, n_layers)
    if config.probe_layer >= 0 and config.probe_layer not in layers:
        raise InvalidInputError(f"probe_layer {config.probe_layer} is not among the probed layers "
                                f"{layers[0]}..{layers[-1]} (step {config.layer_step}); use -1 for the best.")
    if config.layer_start >= n_layers:
        raise InvalidInputError(f"layer_start must be in 0..{n_layers - 1} (or -1 for a third of the depth).")
    if not config.alphas:
        raise InvalidInputError("Give at least one alpha (intervention strength).")
    if len(config.answers) != 2 or not all(str(a).strip() for a in config.answers):
        raise InvalidInputError("Give two answer words, the true one first, e.g. 'TRUE, FALSE'.")
    if config.batch_size < 1 or config.n_shots < 0 or config.logistic_c <= 0:
        raise InvalidInputError("batch_size must be at least 1, n_shots at least 0 and logistic_c above 0.")
    return layers


def read_activations(pair, statements: list[str], layers: list[int], batch_size: int, steps: Steps) -> dict:
    """role -> [n, len(layers), d_model] residual at the statement's last token (statement alone)."""
    out = {}
    for role, model in pair.models().items():
        report = steps.stage(f"acts {role}", f"reading {role} activations")
        out[role] = collect_residuals(model, pair.tokenizer, statements, layers=layers, positions=(-1,),
                                      batch_size=batch_size, progress=report)[:, :, 0]
    return out


def choose_layers(config: Config, layers: list[int], train_acc: np.ndarray, n_layers: int) -> tuple[int, list[int]]:
    """The probe layer (given, or best mean train accuracy) and the steering range up to it."""
    probe = layers[int(np.argmax(train_acc))] if config.probe_layer < 0 else config.probe_layer
    if not 0 <= probe < n_layers:
        raise InvalidInputError(f"probe_layer must be in 0..{n_layers - 1} (or -1 for the best).")
    if probe not in layers:
        raise InvalidInputError(f"probe_layer {probe} is not among the probed layers {layers}.")
    start = n_layers // 3 if config.layer_start < 0 else config.layer_start
    return probe, list(range(min(start, probe), probe + 1))


def _best(probes: pd.DataFrame) -> dict:
    own = probes[probes["source"] == probes["model"]]
    return {role: {method: [int(g.loc[g["accuracy"].idxmax(), "layer"]), round(float(g["accuracy"].max()), 4)]
                   for method, g in by_model.groupby("method")} for role, by_model in own.groupby("model")}


def _probe_stage(config, layers, train, test, acts, splits, frame):
    """Probe table, direction table, PCA, the mass-mean directions and each layer's mean train accuracy."""
    n_train = len(train)
    y_train = torch.as_tensor(train["label"].to_numpy().copy())
    y_test = torch.as_tensor(test["label"].to_numpy().copy())
    probes = tp.probe_table({r: (a[:n_train], y_train) for r, a in acts.items()},
                            {r: (a[n_train:], y_test) for r, a in acts.items()}, layers, config.logistic_c)
    diffs = {r: tp.mass_mean(a[:n_train], y_train) for r, a in acts.items()}
    scale = torch.cat([a[:n_train] for a in acts.values()]).std(0)
    directions = tp.direction_table(diffs, layers, scale)
    labels = torch.as_tensor(frame["label"].to_numpy().copy())
    pca = pd.concat([tp.pca_table(a, labels, splits, layers).assign(model=r) for r, a in acts.items()])
    pca["statement"] = frame["statement"].to_numpy()[pca["index"].to_numpy()]
    train_acc = np.mean([tp.accuracy(tp.ProjectionProbe.fit(a[:n_train], y_train).predict(a[:n_train]), y_train)
                         for a in acts.values()], axis=0)
    return probes, directions, pca.reset_index(drop=True), diffs, train_acc


def truth_directions(pair, diffs: dict, train_acts: dict, layers: list[int], dataset: str,
                     hash_: str) -> dict[str, Direction]:
    """Each model's mass-mean directions as a playground Direction over all its layers: the probed layers' rows,
    zeros elsewhere; resid_norms the mean norm of the train statements' residual at each probed layer."""
    out = {}
    for role, diff in diffs.items():
        vectors = torch.zeros(pair.n_layers, diff.shape[-1])
        norms = torch.zeros(pair.n_layers)
        vectors[layers] = diff.float()
        norms[layers] = train_acts[role].norm(dim=-1).mean(0).float()
        info = DirectionInfo(model=pair.model_id(role), dataset=f"truthfulness:{dataset}", dataset_hash=hash_,
                             method="mass_mean (true - false, train split)", position=-1, use="add")
        out[role] = Direction(vectors, info, norms)
    return out


def run(pair, config: Config, *, data: pd.DataFrame | None = None, progress: Progress | None = None) -> Result:
    """The whole study on a statement set (columns statement, label, fact, split; None: the config's built-in set)."""
    layers = check_config(config, pair.n_layers)
    frame = default_data(pair, config) if data is None else data
    check_frame(frame)
    timings, start = {}, time.perf_counter()
    models = pair.models()
    train, test = used_statements(frame, config)
    used = pd.concat([train, test])
    steps = Steps(progress, {f"acts {r}": 4 for r in models} | {"probes": 1} | {
        "scoring": 2 * len(models) + len(models) ** 2 * len(config.alphas)})
    acts = read_activations(pair, list(used["statement"]), layers, config.batch_size, steps)
    timings["activations"] = time.perf_counter() - start
    steps.stage("probes", "fitting probes")
    probes, stats, pca, diffs, train_acc = _probe_stage(config, layers, train, test, acts, list(used["split"]), used)
    steps.partial("probes", probes)
    probe, steer_layers = choose_layers(config, layers, train_acc, pair.n_layers)
    name = data_name(frame, config)
    directions = truth_directions(pair, diffs, {r: a[:len(train)] for r, a in acts.items()}, layers, name,
                                  data_hash(frame))
    timings["probes"] = time.perf_counter() - start - timings["activations"]
    vectors = {r: ts.layer_vectors(d.at(probe), steer_layers) for r, d in directions.items()}
    transfer, steered, thresholds, prefix = _intervene(pair, config, frame, vectors, steps)
    timings["interventions"] = time.perf_counter() - start - timings["activations"] - timings["probes"]
    steps.done()
    return Result(
        probes=probes, direction_stats=stats, pca=pca, transfer=transfer, steered=steered, directions=directions,
        dataset=name, probe_layer=probe, steer_layers=steer_layers,
        offsets=list(statement_offsets(pair.tokenizer)), best=_best(probes), thresholds=thresholds,
        prefix=prefix, answers=list(config.answers), timings={k: round(v, 2) for k, v in timings.items()})


def judged_sets(frame: pd.DataFrame, config: Config) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The few-shot judging prefix, the test statements steered and the train statements that calibrate each
    model's threshold (none of them from a fact in the prefix)."""
    prefix = few_shot_prefix(frame, config.n_shots, config.seed, config.answers)
    pool = frame[~frame["fact"].isin(shot_facts(prefix, frame))]
    scored = balanced(pool[pool["split"] == "test"], config.n_steer, config.seed)
    calib = balanced(pool[pool["split"] == "train"], config.n_calib, config.seed + 1)
    return prefix, scored, calib


def used_statements(frame: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The balanced train and test samples whose activations are read."""
    train = balanced(frame[frame["split"] == "train"], config.n_train, config.seed)
    test = balanced(frame[frame["split"] == "test"], config.n_test, config.seed)
    if train.empty or test.empty:
        raise InvalidInputError("The statement set needs statements in both the train and the test split.")
    return train, test


def _intervene(pair, config: Config, frame: pd.DataFrame, vectors: dict, steps: Steps):
    """Thresholds from unsteered train scores, unsteered test scores, then the 2 x 2 (x alphas) table."""
    models, tok = pair.models(), pair.tokenizer
    prefix, scored, calib = judged_sets(frame, config)
    report = steps.stage("scoring", "scoring statements")
    n_jobs, done = 2 * len(models), 0
    thresholds = {}
    kw = dict(prefix=prefix, answers=tuple(config.answers), batch_size=config.batch_size)
    for role, model in models.items():
        calib_scores = ts.steered_scores(model, tok, list(calib["statement"]), [], None, **kw)
        thresholds[role] = ts.threshold(calib_scores, calib["label"].to_numpy())
        done += 1
        report(done, n_jobs)
    transfer, steered, _ = transfer_table(models, tok, scored, vectors, thresholds, config.alphas,
                                          report=lambda d, n: report(done + d, done + n), **kw)
    return transfer, steered, thresholds, prefix


def steering_vectors(result: Result) -> dict[str, dict[int, torch.Tensor]]:
    """role -> {layer: vector} the study steers with: the probe layer's direction spread over the steered layers."""
    return {r: ts.layer_vectors(d.at(result.probe_layer), result.steer_layers) for r, d in result.directions.items()}


def score_curve(pair, result: Result, statement: str, alphas) -> pd.DataFrame:
    """A typed statement's score as alpha moves (positive pushes towards TRUE), every model x direction source."""
    if not statement.strip():
        raise InvalidInputError("Type a statement to score.")
    return ts.alpha_curve(pair.models(), pair.tokenizer, statement.strip(), steering_vectors(result), alphas,
                          prefix=result.prefix, answers=tuple(result.answers))
