"""Refusal study (Du et al. 2025, section 5; method of Arditi et al. 2024): the refusal direction of each model of a
pair, selected on validation prompts, then ablated and added on held-out prompts with each model's own direction
and with the other model's (forward transfer base->post, backward transfer post->base).

    python -m analyses.refusal --pair demo --out out/refusal

Steps: candidate directions (difference in means at every layer x post-instruction position, train split) ->
selection (validation split, fast log-odds score, Arditi's filters) -> interventions on the test split (both
refusal scores: log-odds of refusal tokens and the share of greedy generations starting with a refusal phrase)
-> cosine similarity of the two models' candidates per layer."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import pandas as pd
import torch

from steering.directions import Direction, DirectionInfo
from steering.errors import InvalidInputError
from steering.generation import format_prompts
from steering.pairs import ModelPair

from .common import Progress, ResultCache, Steps, cache_key
from .refusal_data import RefusalData, builtin_data
from .refusal_eval import ROLE_ORDER, evaluate_test, live_generation  # noqa: F401 (live_generation: for the page)
from .refusal_scores import post_instruction_positions, refusal_token_ids, token_names
from .refusal_select import ABLATIONS, apply_filters, candidate_directions, kept_layers, score_candidates, select

STUDY_VERSION = "refusal@3"  # 3: directions keep every layer's candidate at the selected position


@dataclass(frozen=True)
class Config:
    """What the refusal study computes. Sizes are per side (harmful, harmless); None means the whole split."""

    n_train: int | None = None  # train prompts per side for the difference in means
    n_val: int = 8  # validation prompts per side for candidate selection (each candidate costs ~3 passes of them)
    layer_step: int = 1  # score every layer_step-th layer (1 = the full grid; 2 halves the CPU time of selection)
    n_test: int | None = None  # held-out prompts per side for the interventions (None: all 40 + 38 on the demo)
    positions: tuple[int, ...] = ()  # offsets from the prompt's end; () = the template's post-instruction tokens
    alpha: float = 0.1  # addition strength in units of the typical residual norm at the layer (see README/page)
    prune_layer_fraction: float = 0.2  # filter: discard candidates in the last 20% of layers
    max_kl: float = 0.1  # filter: discard candidates whose ablation moves harmless next-token KL above this
    min_addition_score: float = 0.0  # filter: adding the candidate must lift harmless log-odds above this
    refusal_tokens: tuple[str, ...] = ()  # () = first token of each refusal phrase ("I", "Sorry", "As", ...)
    phrases: tuple[str, ...] = ()  # refusal phrases (lowercase openers); () = assets/refusal/refusal_phrases.txt
    max_new_tokens: int = 8  # greedy tokens per reply; enough to judge a refusal opener
    # How a direction is ablated (selection and test): "affine" = ACE (Marshall, Scherlis & Belrose 2024): at the
    # input of every layer l, the component along u is set to c_l, the steered model's mean harmless (train split)
    # projection, at the post-instruction and generated tokens only. "project" = Arditi's projection at every
    # layer, component (resid_pre, attn_out, mlp_out) and position. Default "affine" because on the demo pair
    # projection breaks the model: harmless KL 10-40 nats for every candidate (the diff-in-means direction is
    # dominated by one large residual dimension of Gemma), so nothing passes the KL filter.
    ablation: str = "affine"
    batch_size: int = 16


@dataclass
class Result:
    candidates: pd.DataFrame  # model, layer, position, ablation_score, addition_score, kl, filter
    selected: pd.DataFrame  # model, layer, position, token, scores, passed_filters, resid_norm
    scores: pd.DataFrame  # model, direction_from, transfer, intervention, prompts, n, refusal_score, refusal_rate
    generations: pd.DataFrame  # model, direction_from, intervention, prompts, prompt, reply, refusal, refusal_score
    cosine: pd.DataFrame  # layer, position, cosine (base vs post candidate)
    timings: pd.DataFrame  # step, seconds
    # role -> {"vector", "layer", "position", "norms" [L, P], "harmless_mean" [L, d], "per_layer" [L, d]: the
    # candidate of every layer at the selected position}
    directions: dict = field(default_factory=dict)
    refusal_tokens: list = field(default_factory=list)
    positions: list = field(default_factory=list)
    data_sizes: dict = field(default_factory=dict)
    ablation: str = "affine"  # Config.ablation used for selection and the test interventions


def _cosines(diffs: dict[str, torch.Tensor], positions: tuple[int, ...]) -> pd.DataFrame:
    if set(diffs) != {"base", "post"}:
        return pd.DataFrame(columns=["layer", "position", "cosine"])
    cos = torch.nn.functional.cosine_similarity(diffs["base"], diffs["post"], dim=-1)  # [layers, positions]
    return pd.DataFrame([{"layer": layer, "position": positions[p], "cosine": float(cos[layer, p])}
                         for layer in range(cos.shape[0]) for p in range(cos.shape[1])])


def _select_for(role: str, candidates: pd.DataFrame, n_layers: int, config: Config, tokens: list[str],
                positions: tuple[int, ...]) -> tuple[pd.DataFrame, dict]:
    filtered = apply_filters(candidates, n_layers, prune_layer_fraction=config.prune_layer_fraction,
                             max_kl=config.max_kl, min_addition_score=config.min_addition_score)
    best, passed = select(filtered, config.max_kl)
    chosen = {"model": role, "layer": int(best.layer), "position": int(best.position),
              "token": tokens[positions.index(int(best.position))], "ablation_score": best.ablation_score,
              "addition_score": best.addition_score, "kl": best.kl, "passed_filters": passed}
    return filtered.assign(model=role), chosen


def compute(pair: ModelPair, config: Config, data: RefusalData, progress: Progress | None = None) -> Result:
    if config.ablation not in ABLATIONS:
        raise InvalidInputError(f"Unknown ablation '{config.ablation}': use one of {', '.join(ABLATIONS)}.")
    tok, models = pair.tokenizer, pair.models()
    positions = config.positions or post_instruction_positions(tok)
    ids = refusal_token_ids(tok, config.refusal_tokens, config.phrases or None)
    fmt = {(side, split): format_prompts(tok, data.get(side, split, limit))
           for side in ("harmful", "harmless")
           for split, limit in (("train", config.n_train), ("val", config.n_val), ("test", config.n_test))}
    layers = kept_layers(pair.n_layers, config.prune_layer_fraction)[::max(1, config.layer_step)]
    n_train = len(fmt["harmful", "train"]) + len(fmt["harmless", "train"])
    n_val = len(fmt["harmful", "val"]) + 2 * len(fmt["harmless", "val"])
    n_test = 3 * (len(fmt["harmful", "test"]) + len(fmt["harmless", "test"]))
    weights = {f"{stage} {role}": weight for role in models for stage, weight in
               (("directions", n_train), ("selection", n_val * len(layers) * len(positions) / 2))}
    steps = Steps(progress, {**weights, **{f"test {role}": n_test * 1.5 for role in models}})  # in running order
    diffs, norms, means, candidates, chosen, timings = {}, {}, {}, [], [], []
    for role, model in models.items():
        start = time.perf_counter()
        diffs[role], norms[role], means[role] = candidate_directions(
            model, tok, fmt["harmful", "train"], fmt["harmless", "train"], positions, batch_size=config.batch_size,
            progress=steps.stage(f"directions {role}", f"{role}: difference in means (train split)"))
        timings.append({"step": f"directions {role}", "seconds": time.perf_counter() - start})
        start = time.perf_counter()
        table = score_candidates(model, tok, diffs[role], norms[role], positions, layers, fmt["harmful", "val"],
                                 fmt["harmless", "val"], ids, alpha=config.alpha, batch_size=config.batch_size,
                                 ablation=config.ablation, harmless_mean=means[role],
                                 progress=steps.stage(f"selection {role}", f"{role}: scoring candidates (val split)"))
        filtered, best = _select_for(role, table, pair.n_layers, config, _position_tokens(tok, positions), positions)
        candidates.append(filtered)
        chosen.append(best)
        timings.append({"step": f"selection {role}", "seconds": time.perf_counter() - start})
    directions = {c["model"]: {"layer": c["layer"], "position": c["position"],
                               "vector": diffs[c["model"]][c["layer"], positions.index(c["position"])].clone(),
                               "norms": norms[c["model"]].clone(), "harmless_mean": means[c["model"]].clone(),
                               "per_layer": diffs[c["model"]][:, positions.index(c["position"])].clone()}
                  for c in chosen}
    start = time.perf_counter()
    scores, gens = evaluate_test(models, tok, {side: fmt[side, "test"] for side in ("harmful", "harmless")},
                                 {side: data.get(side, "test", config.n_test) for side in ("harmful", "harmless")},
                                 directions, ids, positions, config, steps)
    timings.append({"step": "test interventions", "seconds": time.perf_counter() - start})
    selected = pd.DataFrame(chosen).assign(
        resid_norm=[float(norms[c["model"]][c["layer"], positions.index(c["position"])]) for c in chosen])
    steps.done()
    return Result(pd.concat(candidates, ignore_index=True), selected, scores, gens, _cosines(diffs, positions),
                  pd.DataFrame(timings), directions, token_names(tok, ids), list(positions), data.sizes(),
                  config.ablation)


def _position_tokens(tok, positions: tuple[int, ...]) -> list[str]:
    ids = tok(format_prompts(tok, ["x"])[0], add_special_tokens=False).input_ids
    return [tok.decode([ids[p]]) if -p <= len(ids) else "?" for p in positions]


def direction_file(result: Result, role: str, model_id: str, data: RefusalData) -> Direction:
    """One model's refusal direction as a direction file for the playground (Direction.save): the candidate of
    every layer at the selected position, with that position's residual norms, so "add at layer L" with alpha in
    residual-norm units is the study's addition, and "ablate with layer L's vector" is Arditi's projection
    ablation (the playground's; the study's default is the affine variant)."""
    if role not in result.directions:
        raise InvalidInputError(f"No refusal direction for '{role}': this result has {', '.join(result.directions)}.")
    entry = result.directions[role]
    p = result.positions.index(entry["position"])
    info = DirectionInfo(model=model_id, dataset=f"refusal:{data.name}", dataset_hash=data.hash(),
                         method=f"diff_in_means (refusal; selected layer {entry['layer']})",
                         position=int(entry["position"]))
    return Direction(entry["per_layer"].float().clone(), info, entry["norms"][:, p].float().clone())


def run(pair: ModelPair, config: Config = Config(), data: RefusalData | None = None,
        progress: Progress | None = None, cache: ResultCache | None = None) -> Result:
    """The study's result, from the on-disk cache when this pair, config and data were run before."""
    data = data or builtin_data()
    from steering.judging import refusal_phrases

    if config.phrases == refusal_phrases():  # the default list spelt out (the page's text box): one cache entry
        config = replace(config, phrases=())
    key = cache_key(STUDY_VERSION, pair.fingerprint("base"),
                    pair.fingerprint("post") if pair.post is not None else None, config, data.hash(),
                    list(refusal_phrases()))
    return (cache or ResultCache("refusal")).get_or_compute(key, lambda: compute(pair, config, data, progress))


if __name__ == "__main__":
    import sys

    from .refusal_cli import main

    sys.exit(main())
