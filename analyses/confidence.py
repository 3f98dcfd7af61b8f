"""Confidence: entropy neurons, their mean ablation, and calibration, base vs post-trained (Du et al. 2025, §6;
entropy neurons as in Stolfo et al. 2024 and Gurnee et al. 2024).

    python -m analyses.confidence --pair demo --out out/confidence

Steps: (1) score every neuron of one MLP layer (default the last) from its weights: output-weight norm, variance of
its direct logit effect over the vocabulary, fraction in the unembedding's effective null space; candidates are the
lowest-variance neurons among the largest-norm ones. (2) Overlap of the two models' candidates (IoU, by neuron
index) over a grid of thresholds, and correlation of the scores. (3) Mean ablation of each candidate and of random
neurons over held-out text: change in entropy and loss, total and direct (final norm's scale frozen). (4) Entropy,
maximum probability and calibration (ECE, reliability bins) of both models on the same questions."""
from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field

import pandas as pd
import torch

from analyses import confidence_ablation as abl
from analyses import confidence_calibration as cal
from analyses import confidence_weights as cw
from analyses.common import Progress, ResultCache, Steps, cache_key
from steering.errors import InvalidInputError
from steering.model_view import ModelView
from steering.neurons import effective_output_weight, effective_unembedding
from steering.registry import ASSETS
from steering.tokens import dataset_hash

STUDY_VERSION = "confidence-1"
NORM_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)  # overlap sweep
CANDIDATE_COUNTS = (5, 10, 20, 50, 100)


@dataclass(frozen=True)
class Config:
    """Settings of the confidence study (the page's controls and the CLI's options)."""

    layer: int = -1  # MLP layer whose neurons are scored and ablated; negative counts from the end (-1 = last)
    null_dims: int = 10  # bottom singular vectors of the unembedding that span its effective null space
    top_norm_fraction: float = 0.25  # candidates come from this top fraction of neurons by output-weight norm...
    n_candidates: int = 10  # ...and are the ones of them with the lowest logit variance
    n_random: int = 5  # random neurons (same indices in both models, none a candidate) ablated as a control
    max_tokens: int = 512  # tokens of held-out text for the ablations (and the neurons' mean activations)
    n_questions: int = 200  # calibration questions, half capitals, half cities
    n_bins: int = 10  # equal-width confidence bins for ECE and the reliability diagram
    batch_size: int = 4
    seed: int = 0


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


def heldout_texts() -> list[str]:
    lines = (ASSETS / "posttrain" / "heldout_text.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def _check(config: Config, pair) -> int:
    view = ModelView.of(pair.base)
    layer = config.layer + view.n_layers if config.layer < 0 else config.layer
    view.check_layer(layer)
    if not 1 <= config.null_dims < view.d_model:
        raise InvalidInputError(f"The null space needs 1..{view.d_model - 1} dimensions; got {config.null_dims}.")
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


def _random_neurons(d_mlp: int, exclude: set[int], config: Config) -> list[int]:
    pool = [n for n in range(d_mlp) if n not in exclude]
    return sorted(random.Random(config.seed).sample(pool, min(config.n_random, len(pool))))


def _tagged(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([f.assign(model=role) for role, f in frames.items()], ignore_index=True)


def compute(pair, config: Config, texts: list[str], progress: Progress | None = None) -> Result:
    layer, models = _check(config, pair), pair.models()
    n_ablate = config.n_candidates + config.n_random
    steps = Steps(progress, {f"weights {r}": 1 for r in models} | {
        f"{stage} {r}": w for r in models for stage, w in (("ablation", 1 + n_ablate), ("questions", 2))})
    timings, scores, spectra, chosen = {}, {}, {}, {}
    start = time.perf_counter()
    steps.stage(f"weights {next(iter(models))}", "the unembedding's singular vectors")(0, 1)
    geometry = geometries(models)
    for role, model in models.items():
        steps.stage(f"weights {role}", f"scoring neurons of {role}")(0, 1)
        scores[role], spectra[role], chosen[role] = score_model(model, layer, config, geometry[role])
    timings["weights"] = time.perf_counter() - start
    d_mlp = len(scores["base"])
    groups_random = _random_neurons(d_mlp, set().union(*chosen.values()), config)
    batches = abl.text_batches(pair.tokenizer, texts, config.max_tokens, config.batch_size)
    questions = cal.question_set(config.n_questions, config.seed)
    ablations, text_conf, scored = {}, [], {}
    for role, model in models.items():
        start = time.perf_counter()
        report = steps.stage(f"ablation {role}", f"mean-ablating neurons of {role}")
        clean = abl.clean_run(model, batches, layer)
        report(1, 1 + n_ablate)
        ablations[role] = abl.ablation_table(model, batches, layer,
                                             {"candidate": chosen[role], "random": groups_random}, clean,
                                             lambda done, total: report(1 + done, 1 + total))
        text_conf.append({"model": role, "n_tokens": len(clean.stats["loss"]),
                          **{f"mean_{k}" if k != "loss" else k: float(v.mean()) for k, v in clean.stats.items()}})
        timings[f"ablation_{role}"] = time.perf_counter() - start
        start = time.perf_counter()
        scored[role] = cal.score_questions(model, pair.tokenizer, questions, 4 * config.batch_size,
                                           steps.stage(f"questions {role}", f"asking {role} the questions"))
        timings[f"questions_{role}"] = time.perf_counter() - start
    steps.done()
    return _result(scores, spectra, chosen, ablations, text_conf, scored, layer, config, timings)


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


def run(pair, config: Config = Config(), progress: Progress | None = None, texts: list[str] | None = None,
        cache: ResultCache | None = None) -> Result:
    """The whole study on a pair (the post-trained model is optional), cached on disk by models, config and data."""
    texts = heldout_texts() if texts is None else list(texts)
    if not texts:
        raise InvalidInputError("The text set for the ablations is empty.")
    key = cache_key(STUDY_VERSION, pair.fingerprint("base"),
                    pair.fingerprint("post") if pair.post is not None else None, config, dataset_hash(texts))
    return (cache or ResultCache("confidence")).get_or_compute(key, lambda: compute(pair, config, texts, progress))


def main(argv: list[str] | None = None) -> int:
    from analyses import cli
    from analyses.confidence_charts import all_charts

    args = cli.study_parser("python -m analyses.confidence", __doc__.split("\n\n")[0], Config).parse_args(argv)

    return cli.run_study(args, Config, "confidence", run, all_charts, summary_text,
                         "No post-trained model in this pair: the study runs on the base model alone.")


def summary_text(result: Result, elapsed: float) -> str:
    lines = [f"layer {result.layer}, null space = bottom {result.null_dims} singular vectors"]
    lines += [f"candidates {role}: {ids}" for role, ids in result.candidates.items()]
    if result.iou is not None:
        lines.append(f"IoU of the candidate sets: {result.iou:.3f}")
        lines.append(result.correlations.to_string(index=False))
    effects = result.ablation.groupby(["model", "group"])[
        ["d_entropy_total", "d_entropy_direct", "d_entropy_via_norm", "d_loss_total", "d_loss_direct"]].mean()
    lines += ["mean ablation effects (mean over neurons):", effects.to_string()]
    lines += [result.text_confidence.to_string(index=False), result.calibration.to_string(index=False)]
    lines.append(f"timings (s): {result.timings}; this call {elapsed:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy's, so that cached results pickle
    # analyses.confidence.Result, which the page can load, and not __main__.Result, which it cannot.
    from analyses.confidence import main as module_main

    sys.exit(module_main())
