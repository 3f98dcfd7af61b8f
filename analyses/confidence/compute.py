"""Confidence: entropy neurons, their mean ablation, and calibration, base vs post-trained (Du et al. 2025, §6;
entropy neurons as in Stolfo et al. 2024 and Gurnee et al. 2024).

    python -m analyses confidence --pair demo --out out/confidence

Steps: (1) score every neuron of one MLP layer (default the last) from its weights: output-weight norm, variance of
its direct logit effect over the vocabulary, fraction in the unembedding's effective null space; candidates are the
lowest-variance neurons among the largest-norm ones. (2) Overlap of the two models' candidates (IoU, by neuron
index) over a grid of thresholds, and correlation of the scores. (3) Mean ablation of each candidate and of random
neurons over held-out text: change in entropy and loss, total and direct (final norm's scale frozen). (4) Entropy,
maximum probability and calibration (ECE, reliability bins) of both models on the same questions."""
from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from analyses.common import Progress, Steps
from steering.errors import InvalidInputError
from steering.model_view import ModelView
from steering.neurons import effective_output_weight, effective_unembedding

from . import ablation as abl
from . import calibration as cal
from . import weights as cw
from .config import CANDIDATE_COUNTS, NORM_FRACTIONS, Config, check_layer_setting
from .data import default_data


@dataclass
class Result:
    neurons: pd.DataFrame  # model, layer, neuron, norm, logit_var, null_frac, top_norm, candidate
    spectrum: pd.DataFrame  # model, index, singular_value, null_space (the unembedding's, final-norm gain folded in)
    overlap: pd.DataFrame  # top_norm_fraction, n_candidates, iou, n_shared
    correlations: pd.DataFrame  # score, pearson, spearman (base vs post across neurons)
    ablation: pd.DataFrame  # model, group (candidate/random), neuron, d_{entropy,loss}_{total,direct,via_norm}
    text_confidence: pd.DataFrame  # model, n_tokens, mean_entropy, mean_max_prob, loss (clean, held-out text)
    questions: pd.DataFrame  # model, set, question, answer, confidence, p_answer, entropy, correct
    calibration: pd.DataFrame  # model, n, accuracy, mean_entropy, mean_max_prob, mean_p_answer, ece
    reliability: pd.DataFrame  # model, mean_confidence, accuracy, count (non-empty bins)
    layer: int = 0
    null_dims: int = 0
    candidates: dict = field(default_factory=dict)  # role -> neuron indices
    iou: float | None = None  # at the configured thresholds
    timings: dict = field(default_factory=dict)  # stage -> seconds, measured when the result was computed


# Progress weights, in units of one neuron's ablation (measured on the demo pair, default settings)
WEIGHTS_COST, CLEAN_COST, QUESTIONS_COST = 1.0, 5.0, 6.0


def check_config(config: Config, pair) -> int:
    """The absolute layer; InvalidInputError for any setting out of range (before any expensive work)."""
    view = ModelView.of(pair.base)
    layer = check_layer_setting(config, view.n_layers)  # named as typed: -99, not -81
    if not 1 <= config.null_dims < view.d_model:
        raise InvalidInputError(f"The null space needs 1..{view.d_model - 1} dimensions; got {config.null_dims}.")
    if not 0 < config.top_norm_fraction <= 1:
        raise InvalidInputError(f"The norm fraction must be in (0, 1]; got {config.top_norm_fraction}.")
    if config.n_candidates < 1:
        raise InvalidInputError(f"Ask for at least one candidate neuron; got {config.n_candidates}.")
    if config.n_questions < 2:
        raise InvalidInputError(f"Ask for at least 2 questions; got {config.n_questions}.")
    if config.max_tokens < 2 or config.batch_size < 1 or config.n_random < 0 or config.n_bins < 2:
        raise InvalidInputError("max_tokens must be at least 2, batch_size at least 1, n_random at least 0 and "
                                "n_bins at least 2.")
    return layer


def geometries(models: dict) -> dict[str, cw.UnembeddingGeometry]:
    """Each model's unembedding geometry, computed once when both models share the same effective unembedding
    (as after a LoRA fine-tune that leaves the embeddings and the final norm alone)."""
    out, seen = {}, []
    for role, model in models.items():
        w = effective_unembedding(ModelView.of(model))
        match = next((g for w2, g in seen if w2.shape == w.shape and torch.equal(w2, w)), None)
        out[role] = match if match is not None else cw.unembedding_geometry(w)
        seen.append((w, out[role]))
    return out


def score_model(model, layer: int, config: Config, geometry: cw.UnembeddingGeometry | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """Neuron scores (with top_norm and candidate flags), the unembedding spectrum, and the candidates."""
    view = ModelView.of(model)
    geometry = geometry or cw.unembedding_geometry(effective_unembedding(view))
    scores = cw.neuron_scores(geometry, effective_output_weight(view, layer), config.null_dims)
    chosen = cw.candidates(scores, config.top_norm_fraction, config.n_candidates)
    top = cw.candidates(scores, config.top_norm_fraction, len(scores))
    scores = scores.assign(layer=layer, top_norm=scores["neuron"].isin(top), candidate=scores["neuron"].isin(chosen))
    sv = geometry.singular_values.numpy()
    spectrum = pd.DataFrame({"index": range(len(sv)), "singular_value": sv,
                             "null_space": [i >= len(sv) - config.null_dims for i in range(len(sv))]})
    return scores, spectrum, chosen


def random_neurons(d_mlp: int, exclude: set[int], config: Config) -> list[int]:
    """The random control neurons: the same indices for both models, none of them a candidate."""
    pool = [n for n in range(d_mlp) if n not in exclude]
    return sorted(random.Random(config.seed).sample(pool, min(config.n_random, len(pool))))


def _tagged(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([f.assign(model=role) for role, f in frames.items()], ignore_index=True)


def run(pair, config: Config, *, data: Sequence[str] | None = None, progress: Progress | None = None) -> Result:
    """The whole study on a pair (the post-trained model is optional); `data` are the held-out texts for the
    ablations (None: the built-in ones). Uncached: analyses.store.run_cached caches."""
    texts = default_data(pair, config) if data is None else list(data)
    if not texts:
        raise InvalidInputError("The text set for the ablations is empty.")
    layer, models = check_config(config, pair), pair.models()
    n_ablate = config.n_candidates + config.n_random
    steps = Steps(progress, {f"weights {r}": WEIGHTS_COST for r in models} | {
        f"{stage} {r}": w for r in models
        for stage, w in (("ablation", CLEAN_COST + n_ablate), ("questions", QUESTIONS_COST))})
    timings: dict[str, float] = {}
    scores, spectra, chosen = _score_weights(models, layer, config, steps, timings)
    controls = random_neurons(len(scores["base"]), set().union(*chosen.values()), config)
    batches = abl.text_batches(pair.tokenizer, texts, config.max_tokens, config.batch_size)
    questions = cal.question_set(config.n_questions, config.seed)
    ablations, text_conf, scored = {}, [], {}
    for role, model in models.items():
        start = time.perf_counter()
        ablations[role], clean_stats = _ablate(model, role, batches, layer, chosen[role], controls, steps,
                                               lambda rows, role=role: steps.partial(
                                                   "ablation", _tagged({**ablations, role: rows})))
        text_conf.append({"model": role, "n_tokens": len(clean_stats["loss"]),
                          **{f"mean_{k}" if k != "loss" else k: float(v.mean()) for k, v in clean_stats.items()}})
        timings[f"ablation_{role}"] = time.perf_counter() - start
        start = time.perf_counter()
        scored[role] = cal.score_questions(model, pair.tokenizer, questions, 4 * config.batch_size,
                                           steps.stage(f"questions {role}", f"asking {role} the questions"))
        timings[f"questions_{role}"] = time.perf_counter() - start
    steps.done()
    return _result(scores, spectra, chosen, ablations, text_conf, scored, layer, config, timings)


def _score_weights(models: dict, layer: int, config: Config, steps: Steps, timings: dict):
    scores, spectra, chosen = {}, {}, {}
    start = time.perf_counter()
    steps.stage(f"weights {next(iter(models))}", "the unembedding's singular vectors")(0, 1)
    geometry = geometries(models)
    for role, model in models.items():
        steps.stage(f"weights {role}", f"scoring neurons of {role}")(0, 1)
        scores[role], spectra[role], chosen[role] = score_model(model, layer, config, geometry[role])
        steps.partial("neurons", _tagged(scores))
    timings["weights"] = time.perf_counter() - start
    return scores, spectra, chosen


def _ablate(model, role: str, batches, layer: int, candidates: list[int], controls: list[int], steps: Steps,
            rows_done):
    """One model's ablation table (candidates and random controls) and its clean run's token statistics;
    `rows_done` gets the rows so far after each neuron."""
    report = steps.stage(f"ablation {role}", f"mean-ablating neurons of {role}")
    n_ablate = len(candidates) + len(controls)
    clean = abl.clean_run(model, batches, layer)
    report(CLEAN_COST, CLEAN_COST + n_ablate)
    table = abl.ablation_table(model, batches, layer, {"candidate": candidates, "random": controls}, clean,
                               lambda done, total: report(CLEAN_COST + done, CLEAN_COST + total), rows_done)
    return table, clean.stats


def _result(scores, spectra, chosen, ablations, text_conf, scored, layer, config, timings) -> Result:
    both = "post" in scores
    overlap = (cw.overlap_sweep(scores["base"], scores["post"], list(NORM_FRACTIONS), list(CANDIDATE_COUNTS))
               if both else pd.DataFrame(columns=["top_norm_fraction", "n_candidates", "iou", "n_shared"]))
    correlations = (cw.score_correlations(scores["base"], scores["post"]) if both
                    else pd.DataFrame(columns=["score", "pearson", "spearman"]))
    questions = _tagged(scored)
    calibration, reliability = cal.summarize(questions, config.n_bins)
    return Result(
        neurons=_tagged(scores), spectrum=_tagged(spectra), overlap=overlap, correlations=correlations,
        ablation=_tagged(ablations), text_confidence=pd.DataFrame(text_conf),
        questions=questions.drop(columns=["prompt"]), calibration=calibration, reliability=reliability,
        layer=layer, null_dims=config.null_dims, candidates=chosen,
        iou=cw.iou(chosen["base"], chosen["post"]) if both else None,
        timings={k: round(v, 2) for k, v in timings.items()},
    )
