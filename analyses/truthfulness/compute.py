"""Truthfulness: directions, probes, interventions and their transfer between base and post-trained models
(Du et al. 2025, "How Post-Training Reshapes LLMs", truthfulness; method of Marks & Tegmark's Geometry of Truth).

Activations are read at the statement's last token (its period) with the statement alone as the prompt (no
few-shot prefix), as Geometry of Truth does, in the residual stream entering every layer (resid_pre; the paper's
layer L, a block's output, is our L + 1). Per layer and model, the mass-mean direction mean(true) - mean(false):

- method "paper" (the default, Du et al.'s code): from the config's train_sets, each set's activations centred on
  their own mean and then pooled; `dataset` is held out: probes fit on the pooled sets are tested on it (centred
  too), and every one of its statements is steered.
- method "single_set" (truthfulness@2): from `dataset`'s train split; probes tested on its test split.

Then projection and logistic probes (test accuracy), the same probes applied to the other model's activations
(probe transfer), the base/post cosine and each direction's dominant dimensions, and the intervention of
analyses.truthfulness.steer over the 2 x 2 of direction source x steered model. `run` is uncached:
analyses.store.run_cached stores results for the page and the CLI."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from analyses.common import Progress, Steps
from analyses.statements import statement_set, statement_set_names
from analyses.truth_score import few_shot_prefix, prefix_of, shot_facts, shuffled_orders, \
    statement_offsets
from steering.directions import Direction, DirectionInfo
from steering.errors import InvalidInputError
from steering.extraction import collect_residuals

from . import probes as tp
from . import steer as ts
from .config import METHODS, Config
from .data import balanced, check_frame, data_hash, data_name, default_data
from .transfer import transfer_table


@dataclass
class Result:
    probes: pd.DataFrame  # source (probe fit on), model (evaluated on), layer, method, accuracy
    # layer, gap_<role>, top1_share_<role>, top3_share_<role>, top_dim_<role>, cosine (base vs post), cosine_scaled,
    # and with method "paper" cosine_single_set (the directions of `dataset`'s own train split, for comparison)
    direction_stats: pd.DataFrame
    pca: pd.DataFrame  # model, layer, index, pc1, pc2, label, split, statement
    # direction, model, alpha, n, normalised_effect(_true/_false), mean_change(_false/_true), flip_rate,
    # accuracy_*, threshold
    transfer: pd.DataFrame
    steered: pd.DataFrame  # direction, model, alpha, statement, label, order (few-shot lines), score_before, _after
    # role -> mass-mean direction of every probed layer; rows of layers not probed are zero
    directions: dict[str, Direction] = field(default_factory=dict)
    dataset: str = ""
    probe_layer: int = 0
    steer_layers: list = field(default_factory=list)
    offsets: list = field(default_factory=list)  # token offsets steered (statement's last token, its period)
    best: dict = field(default_factory=dict)  # model -> method -> [layer, test accuracy]
    thresholds: dict = field(default_factory=dict)  # model -> score threshold (midpoint of train means)
    prefix: str = ""  # the few-shot prompt in one fixed shuffle (the typed statement's curve uses it)
    answers: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    method: str = "paper"
    train_sets: list = field(default_factory=list)  # the sets the direction comes from (method paper)
    spread: str = "full"  # the coefficient per steered layer: full (the paper's) or split over the layers
    shots: list = field(default_factory=list)  # the few-shot lines; a steered row's prefix is them in its `order`


def probed_layers(config: Config, n_layers: int) -> list[int]:
    top = n_layers - 1 if config.max_layer < 0 else config.max_layer
    if not 0 <= top < n_layers or config.layer_step < 1:
        raise InvalidInputError(f"max_layer must be in 0..{n_layers - 1} (or -1) and layer_step at least 1.")
    return list(range(0, top + 1, config.layer_step))


def paper_layer(fraction: float, n_layers: int, what: str) -> int:
    """The resid_pre layer of the block output at `fraction` of the depth (the paper numbers block outputs: its
    layer L is our resid_pre L + 1). Python's round, so 4.5 -> 4 and 6.75 -> 7 on an 18-layer model."""
    output = round(fraction * n_layers)
    if not 0 <= output < n_layers - 1:
        raise InvalidInputError(f"{what} {fraction} gives block output {output}, whose stream no layer reads; give a "
                                f"fraction below {(n_layers - 1.5) / n_layers:.3f} or a layer number.")
    return output + 1


def check_config(config: Config, n_layers: int) -> list[int]:
    """Every setting checked before any model runs; returns the probed layers."""
    layers = probed_layers(config, n_layers)
    if config.method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, not {config.method!r}.")
    if config.method == "paper":
        unknown = [t for t in config.train_sets if t not in statement_set_names()]
        if not config.train_sets or unknown:
            raise InvalidInputError("The paper method needs train_sets among " + ", ".join(statement_set_names())
                                    + (f" (unknown: {', '.join(unknown)})." if unknown else "."))
        if config.dataset in config.train_sets:
            raise InvalidInputError(f"The paper method holds {config.dataset} out: leave it out of train_sets.")
    probe = paper_layer(config.probe_fraction, n_layers, "probe_fraction") if config.probe_layer == -1 \
        else config.probe_layer
    if probe >= 0 and probe not in layers:
        raise InvalidInputError(f"probe_layer {probe} is not among the probed layers "
                                f"{layers[0]}..{layers[-1]} (step {config.layer_step}); use -1 for the paper's.")
    if config.probe_layer < -2 or config.layer_start < -2 or config.layer_start >= n_layers:
        raise InvalidInputError(f"probe_layer and layer_start must be in 0..{n_layers - 1}, -1 (the paper's depth "
                                "fraction) or -2 (truthfulness@2's choice).")
    if config.layer_start == -1:
        paper_layer(config.start_fraction, n_layers, "start_fraction")
    if config.spread not in ("full", "split") or config.shuffle not in ("per_statement", "fixed"):
        raise InvalidInputError("spread must be full or split, and shuffle per_statement or fixed.")
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
    """The probe layer (given, the paper's depth fraction, or the best mean train accuracy) and the steering range
    up to it."""
    if config.probe_layer == -1:
        probe = paper_layer(config.probe_fraction, n_layers, "probe_fraction")
    elif config.probe_layer == -2:
        probe = layers[int(np.argmax(train_acc))]
    else:
        probe = config.probe_layer
    if not 0 <= probe < n_layers:
        raise InvalidInputError(f"probe_layer must be in 0..{n_layers - 1} (or -1, -2).")
    if probe not in layers:
        raise InvalidInputError(f"probe_layer {probe} is not among the probed layers {layers}.")
    start = {-1: lambda: paper_layer(config.start_fraction, n_layers, "start_fraction"),
             -2: lambda: n_layers // 3}.get(config.layer_start, lambda: config.layer_start)()
    return probe, list(range(min(start, probe), probe + 1))


def _best(probes: pd.DataFrame) -> dict:
    own = probes[probes["source"] == probes["model"]]
    return {role: {method: [int(g.loc[g["accuracy"].idxmax(), "layer"]), round(float(g["accuracy"].max()), 4)]
                   for method, g in by_model.groupby("method")} for role, by_model in own.groupby("model")}


@dataclass
class Split:
    """The statements a run reads and how they are used: `fit` (the direction and the probes; with the paper
    method several sets, each centred on its own mean) and `test` (probe accuracy, the PCA), in reading order."""

    fit: list[pd.DataFrame]  # one frame per set the direction is fit on
    test: pd.DataFrame
    centre: bool  # centre each set (and the test set) on its own mean: the paper's collect_acts(center=True)

    def statements(self) -> list[str]:
        return [s for f in [*self.fit, self.test] for s in f["statement"]]

    def parts(self, acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, L, d] in reading order -> (pooled fit activations, test activations), centred when the method says."""
        sizes = [len(f) for f in self.fit] + [len(self.test)]
        *fit, test = torch.split(acts, sizes)
        if self.centre:
            return tp.pooled_centred(fit), tp.centred(test)
        return torch.cat(fit), test

    def raw_fit(self, acts: torch.Tensor) -> torch.Tensor:
        return acts[:sum(len(f) for f in self.fit)]

    def fit_labels(self) -> torch.Tensor:
        return torch.as_tensor(np.concatenate([f["label"].to_numpy() for f in self.fit]))


def split_statements(frame: pd.DataFrame, config: Config) -> Split:
    if config.method == "paper":
        return Split([statement_set(name) for name in config.train_sets], balanced(frame, config.n_test, config.seed),
                     centre=True)
    train, test = used_statements(frame, config)
    return Split([train], test, centre=False)


def _probe_stage(config, layers, split: Split, acts):
    """Probe table, direction table, PCA, the mass-mean directions and each layer's mean train accuracy."""
    y_fit = split.fit_labels()
    y_test = torch.as_tensor(split.test["label"].to_numpy().copy())
    parts = {r: split.parts(a) for r, a in acts.items()}
    probes = tp.probe_table({r: (fit, y_fit) for r, (fit, _) in parts.items()},
                            {r: (test, y_test) for r, (_, test) in parts.items()}, layers, config.logistic_c)
    diffs = {r: tp.mass_mean(fit, y_fit) for r, (fit, _) in parts.items()}
    scale = torch.cat([fit for fit, _ in parts.values()]).std(0)
    directions = tp.direction_table(diffs, layers, scale)
    if split.centre and len(acts) == 2:  # the single-set direction beside the paper's: `dataset`'s train split
        train = torch.as_tensor((split.test["split"] == "train").to_numpy().copy())
        if train.any() and (~train).any():
            own = {r: tp.mass_mean(test[train], y_test[train]) for r, (_, test) in parts.items()}
            directions["cosine_single_set"] = tp.direction_table(own, layers)["cosine"].to_numpy()
    n_fit = len(y_fit)
    pca = pd.concat([tp.pca_table(a[n_fit:], y_test, list(split.test["split"]), layers).assign(model=r)
                     for r, a in acts.items()])
    pca["statement"] = split.test["statement"].to_numpy()[pca["index"].to_numpy()]
    train_acc = np.mean([tp.accuracy(tp.ProjectionProbe.fit(fit, y_fit).predict(fit), y_fit)
                         for fit, _ in parts.values()], axis=0)
    return probes, directions, pca.reset_index(drop=True), diffs, train_acc


def truth_directions(pair, diffs: dict, fit_acts: dict, layers: list[int], dataset: str, hash_: str,
                     method: str) -> dict[str, Direction]:
    """Each model's mass-mean directions as a playground Direction over all its layers: the probed layers' rows,
    zeros elsewhere; resid_norms the mean norm of the (uncentred) fit statements' residual at each probed layer."""
    out = {}
    how = ("mass_mean (true - false) of the pooled train sets, each centred; " + dataset + " held out"
           if method == "paper" else "mass_mean (true - false, train split)")
    for role, diff in diffs.items():
        vectors = torch.zeros(pair.n_layers, diff.shape[-1])
        norms = torch.zeros(pair.n_layers)
        vectors[layers] = diff.float()
        norms[layers] = fit_acts[role].norm(dim=-1).mean(0).float()
        info = DirectionInfo(model=pair.model_id(role), dataset=f"truthfulness:{dataset}", dataset_hash=hash_,
                             method=how, position=-1, use="add")
        out[role] = Direction(vectors, info, norms)
    return out


def run(pair, config: Config, *, data: pd.DataFrame | None = None, progress: Progress | None = None) -> Result:
    """The whole study on a statement set (columns statement, label, fact, split; None: the config's built-in set)."""
    layers = check_config(config, pair.n_layers)
    frame = default_data(pair, config) if data is None else data
    check_frame(frame)
    timings, start = {}, time.perf_counter()
    models = pair.models()
    split = split_statements(frame, config)
    steps = Steps(progress, {f"acts {r}": 4 for r in models} | {"probes": 1} | {
        "scoring": 2 * len(models) + len(models) ** 2 * len(config.alphas)})
    acts = read_activations(pair, split.statements(), layers, config.batch_size, steps)
    timings["activations"] = time.perf_counter() - start
    steps.stage("probes", "fitting probes")
    probes, stats, pca, diffs, train_acc = _probe_stage(config, layers, split, acts)
    steps.partial("probes", probes)
    probe, steer_layers = choose_layers(config, layers, train_acc, pair.n_layers)
    name = data_name(frame, config)
    directions = truth_directions(pair, diffs, {r: split.raw_fit(a) for r, a in acts.items()}, layers, name,
                                  data_hash(frame), config.method)
    timings["probes"] = time.perf_counter() - start - timings["activations"]
    vectors = {r: ts.layer_vectors(d.at(probe), steer_layers, config.spread) for r, d in directions.items()}
    transfer, steered, thresholds, prefix, shots = _intervene(pair, config, frame, vectors, steps)
    timings["interventions"] = time.perf_counter() - start - timings["activations"] - timings["probes"]
    steps.done()
    return Result(
        probes=probes, direction_stats=stats, pca=pca, transfer=transfer, steered=steered, directions=directions,
        dataset=name, probe_layer=probe, steer_layers=steer_layers,
        offsets=list(statement_offsets(pair.tokenizer)), best=_best(probes), thresholds=thresholds,
        prefix=prefix, answers=list(config.answers), timings={k: round(v, 2) for k, v in timings.items()},
        method=config.method, train_sets=list(config.train_sets) if config.method == "paper" else [],
        spread=config.spread, shots=shots)


def judged_sets(frame: pd.DataFrame, config: Config) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The few-shot judging prefix (one fixed shuffle), the statements steered and the train statements that
    calibrate each model's threshold (none of them from a fact in the prefix). Steered: with the paper method every
    statement of the held-out set (n_steer = 0), with single_set its test split."""
    prefix = few_shot_prefix(frame, config.n_shots, config.seed, config.answers)
    pool = frame[~frame["fact"].isin(shot_facts(prefix, frame))]
    steerable = pool if config.method == "paper" else pool[pool["split"] == "test"]
    scored = balanced(steerable, config.n_steer, config.seed)
    calib = balanced(pool[pool["split"] == "train"], config.n_calib, config.seed + 1)
    return prefix, scored, calib


def prompt_orders(config: Config, n_shots: int, n: int, stream: int) -> list[tuple[int, ...]]:
    """The few-shot order of each of n prompts: reshuffled per statement (seeded; stream 0 the steered statements,
    1 the calibration ones), or one fixed order (the lines as few_shot_prefix shuffled them)."""
    if config.shuffle == "per_statement":
        return shuffled_orders(n_shots, n, config.seed * 2 + stream)
    return [tuple(range(n_shots))] * n


def used_statements(frame: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """single_set: the balanced train and test samples whose activations are read."""
    train = balanced(frame[frame["split"] == "train"], config.n_train, config.seed)
    test = balanced(frame[frame["split"] == "test"], config.n_test, config.seed)
    if train.empty or test.empty:
        raise InvalidInputError("The statement set needs statements in both the train and the test split.")
    return train, test


def _intervene(pair, config: Config, frame: pd.DataFrame, vectors: dict, steps: Steps):
    """Thresholds from unsteered train scores, then the 2 x 2 (x alphas) table with its unsteered scores."""
    models, tok = pair.models(), pair.tokenizer
    prefix, scored, calib = judged_sets(frame, config)
    # the lines in the fixed prefix's order, so that order (0, 1, ...) is the fixed prompt
    shots = prefix.splitlines(keepends=True)
    report = steps.stage("scoring", "scoring statements")
    n_jobs, done = 2 * len(models), 0
    thresholds = {}
    kw = dict(answers=tuple(config.answers), batch_size=config.batch_size)
    calib_prefixes = [prefix_of(shots, o) for o in prompt_orders(config, len(shots), len(calib), 1)]
    for role, model in models.items():
        calib_scores = ts.steered_scores(model, tok, list(calib["statement"]), [], None, prefix=calib_prefixes, **kw)
        thresholds[role] = ts.threshold(calib_scores, calib["label"].to_numpy())
        done += 1
        report(done, n_jobs)
    orders = prompt_orders(config, len(shots), len(scored), 0)
    transfer, steered, _ = transfer_table(models, tok, scored, vectors, thresholds, config.alphas,
                                          prefix=[prefix_of(shots, o) for o in orders],
                                          report=lambda d, n: report(done + d, done + n), **kw)
    order_text = [" ".join(map(str, o)) for o in orders]  # steered holds one block of `scored` per job, in order
    steered.insert(5, "order", np.tile(np.array(order_text, dtype=object), len(steered) // max(len(scored), 1)))
    return transfer, steered, thresholds, prefix, shots


def steering_vectors(result: Result) -> dict[str, dict[int, torch.Tensor]]:
    """role -> {layer: vector} the study steers with: the probe layer's direction at each steered layer (whole, or
    divided over them with spread "split")."""
    return {r: ts.layer_vectors(d.at(result.probe_layer), result.steer_layers, result.spread)
            for r, d in result.directions.items()}


def score_curve(pair, result: Result, statement: str, alphas) -> pd.DataFrame:
    """A typed statement's score as alpha moves (positive pushes towards TRUE), every model x direction source."""
    if not statement.strip():
        raise InvalidInputError("Type a statement to score.")
    return ts.alpha_curve(pair.models(), pair.tokenizer, statement.strip(), steering_vectors(result), alphas,
                          prefix=result.prefix, answers=tuple(result.answers))
