"""Truthfulness: directions, probes, interventions and their transfer between base and post-trained models
(Du et al. 2025, "How Post-Training Reshapes LLMs", truthfulness; method of Marks & Tegmark's Geometry of Truth).

    python -m analyses.truthfulness --pair demo --dataset cities --out out/truthfulness [--generalisation]

Activations are read at the statement's last token (its period) with the statement alone as the prompt (no
few-shot prefix), as Geometry of Truth does, in the residual stream entering every layer. Per layer and model:
the mass-mean direction (train split), a projection probe and a logistic-regression probe (test accuracy), the
same probes applied to the other model's activations (probe transfer), and the base/post cosine. Then the
intervention of analyses.truthfulness_steer over the 2 x 2 of direction source x steered model. All results are
cached (analyses.common.ResultCache) and shared by the page and this CLI."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from analyses import truthfulness_probes as tp
from analyses import truthfulness_steer as ts
from analyses.common import Progress, ResultCache, Steps, cache_key
from analyses.statements import statement_set
from analyses.truth_score import few_shot_prefix, shot_facts, statement_offsets
from steering.errors import InvalidInputError
from steering.extraction import collect_residuals
from steering.tokens import dataset_hash

STUDY_VERSION = "truthfulness-1"


@dataclass(frozen=True)
class Config:
    """Settings of the truthfulness study (the page's controls and the CLI's options)."""

    dataset: str = "cities"  # a built-in statement set (analyses.statements) or a name for an uploaded one
    n_train: int = 200  # training statements used (balanced sample of the train split; 0 = all)
    n_test: int = 100  # test statements for probe accuracy (balanced sample of the test split; 0 = all)
    layer_step: int = 1  # probe every k-th layer...
    max_layer: int = -1  # ...from 0 up to this one (-1 = the last)
    probe_layer: int = -1  # layer whose direction steers (-1 = the best by train projection accuracy)
    layer_start: int = -1  # first layer the direction is added at (-1 = a third of the depth)
    n_shots: int = 4  # labelled statements in the few-shot judging prompt
    n_steer: int = 24  # test statements scored with and without the intervention (balanced)
    n_calib: int = 12  # train statements scored unsteered to set each model's TRUE/FALSE threshold
    alphas: tuple[float, ...] = (1.0, 4.0)  # intervention strengths (1 = one true/false gap in all)
    answers: tuple[str, str] = ("TRUE", "FALSE")  # the answer words scored as P(first) - P(second)
    logistic_c: float = 1.0  # inverse regularisation of the logistic probe
    batch_size: int = 16
    seed: int = 0


@dataclass
class Result:
    probes: pd.DataFrame  # source (probe fit on), model (evaluated on), layer, method, accuracy
    directions: pd.DataFrame  # layer, gap_<role>, cosine (base vs post), cosine_scaled
    pca: pd.DataFrame  # model, layer, index, pc1, pc2, label, split, statement
    transfer: pd.DataFrame  # direction, model, alpha, n, mean_change(_false/_true), flip_rate, accuracy_*, threshold
    steered: pd.DataFrame  # direction, model, alpha, statement, label, score_before, score_after
    dataset: str = ""
    probe_layer: int = 0
    steer_layers: list = field(default_factory=list)
    offsets: list = field(default_factory=list)  # token offsets steered (statement's last token, its period)
    best: dict = field(default_factory=dict)  # model -> method -> [layer, test accuracy]
    thresholds: dict = field(default_factory=dict)  # model -> score threshold (midpoint of train means)
    prefix: str = ""  # the few-shot prompt
    answers: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    vectors: np.ndarray | None = None  # [n_models, d_model] steering vector (probe layer) per direction source
    roles: list = field(default_factory=list)


def balanced(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """n rows, half true and half false (all rows when n <= 0 or n is at least the frame's size)."""
    if n <= 0 or n >= len(frame):
        return frame
    parts = [g.sample(min(len(g), n // 2 + (label == 1) * (n % 2)), random_state=seed)
             for label, g in frame.groupby("label")]
    return pd.concat(parts).sort_index()


def probed_layers(config: Config, n_layers: int) -> list[int]:
    top = n_layers - 1 if config.max_layer < 0 else config.max_layer
    if not 0 <= top < n_layers or config.layer_step < 1:
        raise InvalidInputError(f"max_layer must be in 0..{n_layers - 1} (or -1) and layer_step at least 1.")
    return list(range(0, top + 1, config.layer_step))


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


def compute(pair, config: Config, frame: pd.DataFrame, progress: Progress | None = None) -> Result:
    """The whole study on a statement set (columns statement, label, fact, split)."""
    timings, start = {}, time.perf_counter()
    models = pair.models()
    layers = probed_layers(config, pair.n_layers)
    train = balanced(frame[frame["split"] == "train"], config.n_train, config.seed)
    test = balanced(frame[frame["split"] == "test"], config.n_test, config.seed)
    if train.empty or test.empty:
        raise InvalidInputError("The statement set needs statements in both the train and the test split.")
    used = pd.concat([train, test])
    steps = Steps(progress, {f"acts {r}": 4 for r in models} | {"probes": 1} | {
        "scoring": 2 * len(models) + len(models) ** 2 * len(config.alphas)})
    acts = read_activations(pair, list(used["statement"]), layers, config.batch_size, steps)
    timings["activations"] = time.perf_counter() - start
    steps.stage("probes", "fitting probes")
    probes, directions, pca, diffs, train_acc = _probe_stage(config, layers, train, test, acts,
                                                             list(used["split"]), used)
    probe, steer_layers = choose_layers(config, layers, train_acc, pair.n_layers)
    timings["probes"] = time.perf_counter() - start - timings["activations"]
    vectors = {r: ts.layer_vectors(d[layers.index(probe)], steer_layers) for r, d in diffs.items()}
    transfer, steered, thresholds, prefix = _intervene(pair, config, frame, vectors, steps)
    timings["interventions"] = time.perf_counter() - start - timings["activations"] - timings["probes"]
    steps.done()
    return Result(
        probes=probes, directions=directions, pca=pca, transfer=transfer, steered=steered,
        dataset=config.dataset, probe_layer=probe, steer_layers=steer_layers,
        offsets=list(statement_offsets(pair.tokenizer)), best=_best(probes), thresholds=thresholds,
        prefix=prefix, answers=list(config.answers), timings={k: round(v, 2) for k, v in timings.items()},
        vectors=np.stack([d[layers.index(probe)].numpy() for d in diffs.values()]), roles=list(diffs))


def _intervene(pair, config: Config, frame: pd.DataFrame, vectors: dict, steps: Steps):
    """Thresholds from unsteered train scores, unsteered test scores, then the 2 x 2 (x alphas) table."""
    models, tok = pair.models(), pair.tokenizer
    prefix = few_shot_prefix(frame, config.n_shots, config.seed, config.answers)
    pool = frame[~frame["fact"].isin(shot_facts(prefix, frame))]
    scored = balanced(pool[pool["split"] == "test"], config.n_steer, config.seed)
    calib = balanced(pool[pool["split"] == "train"], config.n_calib, config.seed + 1)
    report = steps.stage("scoring", "scoring statements")
    n_jobs, done = 2 * len(models) + len(models) ** 2 * len(config.alphas), 0
    baselines, thresholds = {}, {}
    kw = dict(prefix=prefix, answers=tuple(config.answers), batch_size=config.batch_size)
    for role, model in models.items():
        calib_scores = ts.steered_scores(model, tok, list(calib["statement"]), [], None, **kw)
        thresholds[role] = ts.threshold(calib_scores, calib["label"].to_numpy())
        baselines[role] = ts.steered_scores(model, tok, list(scored["statement"]), [], None, **kw)
        done += 2
        report(done, n_jobs)
    transfer, steered = ts.transfer_table(models, tok, scored, vectors, baselines, thresholds, config.alphas,
                                          report=lambda d, _: report(done + d, n_jobs), **kw)
    return transfer, steered, thresholds, prefix


def frame_hash(frame: pd.DataFrame) -> str:
    return dataset_hash(list(frame["statement"]), [str(v) for v in frame["label"]],
                        [str(v) for v in frame["split"]], [str(v) for v in frame["fact"]])


def run(pair, config: Config = Config(), progress: Progress | None = None, frame: pd.DataFrame | None = None,
        cache: ResultCache | None = None) -> Result:
    """The study on a built-in set (config.dataset) or an uploaded frame, cached by models, config and data."""
    frame = statement_set(config.dataset) if frame is None else frame
    key = cache_key(STUDY_VERSION, pair.fingerprint("base"),
                    pair.fingerprint("post") if pair.post is not None else None, config, frame_hash(frame))
    return (cache or ResultCache("truthfulness")).get_or_compute(key, lambda: compute(pair, config, frame, progress))


def score_curve(pair, result: Result, statement: str, alphas) -> pd.DataFrame:
    """A typed statement's score as alpha moves (positive pushes towards TRUE), every model x direction source."""
    if not statement.strip():
        raise InvalidInputError("Type a statement to score.")
    vectors = {r: ts.layer_vectors(torch.as_tensor(v), result.steer_layers) for r, v in zip(result.roles, result.vectors)}
    return ts.alpha_curve(pair.models(), pair.tokenizer, statement.strip(), vectors, alphas,
                          prefix=result.prefix, answers=tuple(result.answers))


if __name__ == "__main__":
    import sys

    from analyses.truthfulness_cli import main

    sys.exit(main())
