"""Refusal study (Du et al. 2025, section 5; method of Arditi et al. 2024): the refusal direction of each model of a
pair, selected on validation prompts, then ablated and added on held-out prompts with each model's own direction
and with the other model's (forward transfer base->post, backward transfer post->base).

    python -m analyses refusal --pair demo --out out/refusal

Steps: candidate directions (difference in means at every layer x post-instruction position, train split) ->
selection (validation split, fast log-odds score, Arditi's filters) -> interventions on the test split (both
refusal scores: log-odds of refusal tokens and the share of greedy generations starting with a refusal phrase)
-> cosine similarity of the two models' candidates per layer."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import torch

from steering.directions import Direction, DirectionInfo
from steering.generation import format_prompts
from steering.pairs import ModelPair
from steering.playground import check_position_fits

from ..common import Progress, Steps
from .config import Config, check_config
from .data import RefusalData, default_data
from .evaluate import SelectedDirection, evaluate_test
from .scores import post_instruction_positions, refusal_token_ids, token_names
from .selection import apply_filters, candidate_directions, kept_layers, score_candidates, select


@dataclass
class Result:
    candidates: pd.DataFrame  # model, layer, position, ablation_score, addition_score, kl, filter
    selected: pd.DataFrame  # model, layer, position, token, scores, passed_filters, resid_norm
    scores: pd.DataFrame  # model, direction_from, transfer, intervention, prompts, n, refusal_score, refusal_rate
    generations: pd.DataFrame  # model, direction_from, intervention, prompts, prompt, reply, refusal, refusal_score
    cosine: pd.DataFrame  # layer, position, cosine (base vs post candidate)
    timings: pd.DataFrame  # step, seconds
    # role -> the selected direction as a playground direction file: the candidate of every layer at the selected
    # position, with that position's residual norms (its layer is in `selected`)
    directions: dict[str, Direction] = field(default_factory=dict)
    harmless_means: dict[str, torch.Tensor] = field(default_factory=dict)  # role -> [n_layers, d]: affine reference
    # "<role>@<position>" -> every layer's candidate at that position, with the position's residual norms
    candidate_directions: dict[str, Direction] = field(default_factory=dict)
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


def selected_direction(diffs: torch.Tensor, norms: torch.Tensor, positions: tuple[int, ...], layer: int | None,
                       position: int, model_id: str, data: RefusalData) -> Direction:
    """One model's candidates at one position as a direction file for the playground (Direction.save): the
    candidate of every layer there, with that position's residual norms, so "add at layer L" with alpha in
    residual-norm units is the study's addition, and "ablate with layer L's vector" is Arditi's projection
    ablation (the playground's; the study's default is the affine variant). `layer`: the selected one, if any."""
    p = positions.index(position)
    chosen = f"; selected layer {layer}" if layer is not None else f"; candidates at position {position}"
    info = DirectionInfo(model=model_id, dataset=f"refusal:{data.name}", dataset_hash=data.hash(),
                         method=f"diff_in_means (refusal{chosen})", position=int(position))
    return Direction(diffs[:, p].float().clone(), info, norms[:, p].float().clone())


def candidate_norms(result: Result, role: str) -> torch.Tensor:
    """[n_layers, n_positions]: the residual norm of every candidate cell of one model."""
    return torch.stack([result.candidate_directions[f"{role}@{p}"].resid_norms for p in result.positions], dim=1)


def steering_of(result: Result) -> dict[str, SelectedDirection]:
    """Each model's selected direction with its layer and the model's own residual statistics, as the
    interventions (and the page's "try a prompt") use them."""
    layers = dict(zip(result.selected.model, result.selected.layer))
    return {role: SelectedDirection(direction, int(layers[role]), candidate_norms(result, role),
                                    result.harmless_means[role]) for role, direction in result.directions.items()}


def _formatted(tok, data: RefusalData, config: Config) -> dict[tuple[str, str], list[str]]:
    return {(side, split): format_prompts(tok, data.get(side, split, limit))
            for side in ("harmful", "harmless")
            for split, limit in (("train", config.n_train), ("val", config.n_val), ("test", config.n_test))}


def _check_positions(tok, fmt: dict[tuple[str, str], list[str]], positions: tuple[int, ...]) -> None:
    """Refuse, before any work, an offset that reaches past the start of the shortest prompt of any split (the
    residual recorder would silently leave it out, and the run would fail at its end)."""
    texts = [text for split in fmt.values() for text in split]
    if texts and positions:
        check_position_fits(tok, texts, min(positions))


def _steps(progress: Progress | None, fmt: dict, roles, n_layers: int, layers: list[int],
           positions: tuple[int, ...]) -> Steps:
    """Weights in prompt-passes: a train prompt's pass; per candidate, the harmless val prompts from its layer on
    and the val prompts' last -min(positions) tokens (about a quarter of a prompt); 1.5 per test reply."""
    n_train = len(fmt["harmful", "train"]) + len(fmt["harmless", "train"])
    n_harmless, n_both = len(fmt["harmless", "val"]), len(fmt["harmful", "val"]) + len(fmt["harmless", "val"])
    per_layer = [n_harmless * (n_layers - layer) / n_layers + n_both * min(1.0, -min(positions) / 20)
                 for layer in layers]
    n_test = 3 * (len(fmt["harmful", "test"]) + len(fmt["harmless", "test"]))
    weights = {f"{stage} {role}": weight for role in roles for stage, weight in
               (("directions", n_train), ("selection", len(positions) * sum(per_layer)))}
    return Steps(progress, {**weights, **{f"test {role}": n_test * 1.5 for role in roles}})  # in running order


def _partial(steps: Steps, done: list[pd.DataFrame], role: str, n_layers: int, config: Config):
    """The candidates table so far (the models scored before, then this one's rows), shaped like the final one."""
    def show(table: pd.DataFrame) -> None:
        rows = apply_filters(table, n_layers, prune_layer_fraction=config.prune_layer_fraction,
                             max_kl=config.max_kl, min_addition_score=config.min_addition_score).assign(model=role)
        steps.partial("candidates", pd.concat([*done, rows], ignore_index=True))

    return show


def _timed(timings: list[dict], step: str, compute):
    start = time.perf_counter()
    value = compute()
    timings.append({"step": step, "seconds": time.perf_counter() - start})
    return value


def work(pair: ModelPair, config: Config, data: RefusalData | None = None) -> float:
    """The run's cost in prompt-passes (its progress bar's weights), for the page's estimate of how long it takes."""
    check_config(config, pair.n_layers)
    data = default_data(pair, config) if data is None else data
    positions = tuple(config.positions) or post_instruction_positions(pair.tokenizer)
    layers = kept_layers(pair.n_layers, config.prune_layer_fraction)[::max(1, config.layer_step)]
    fmt = _formatted(pair.tokenizer, data, config)
    _check_positions(pair.tokenizer, fmt, positions)
    return _steps(None, fmt, pair.models(), pair.n_layers, layers, positions).total


def run(pair: ModelPair, config: Config, *, data: RefusalData | None = None,
        progress: Progress | None = None) -> Result:
    """The study on this pair (uncached: analyses.store.run_cached stores it); data None = the built-in sets."""
    check_config(config, pair.n_layers)
    data = default_data(pair, config) if data is None else data
    tok, models = pair.tokenizer, pair.models()
    positions = tuple(config.positions) or post_instruction_positions(tok)
    ids = refusal_token_ids(tok, config.refusal_tokens, config.phrases or None)
    fmt = _formatted(tok, data, config)
    _check_positions(tok, fmt, positions)
    layers = kept_layers(pair.n_layers, config.prune_layer_fraction)[::max(1, config.layer_step)]
    steps = _steps(progress, fmt, models, pair.n_layers, layers, positions)
    diffs, norms, means, candidates, chosen, timings = {}, {}, {}, [], [], []
    for role, model in models.items():
        diffs[role], norms[role], means[role] = _timed(timings, f"directions {role}", lambda: candidate_directions(
            model, tok, fmt["harmful", "train"], fmt["harmless", "train"], positions, batch_size=config.batch_size,
            progress=steps.stage(f"directions {role}", f"{role}: difference in means (train split)")))
        table = _timed(timings, f"selection {role}", lambda: score_candidates(
            model, tok, diffs[role], norms[role], positions, layers, fmt["harmful", "val"], fmt["harmless", "val"],
            ids, alpha=config.alpha, batch_size=config.batch_size, ablation=config.ablation,
            harmless_mean=means[role], partial=_partial(steps, candidates, role, pair.n_layers, config),
            progress=steps.stage(f"selection {role}", f"{role}: scoring candidates (val split)")))
        filtered, best = _select_for(role, table, pair.n_layers, config, _position_tokens(tok, positions), positions)
        candidates.append(filtered)
        chosen.append(best)
    directions = {c["model"]: selected_direction(diffs[c["model"]], norms[c["model"]], positions, c["layer"],
                                                 c["position"], pair.model_id(c["model"]), data) for c in chosen}
    steering = {c["model"]: SelectedDirection(directions[c["model"]], c["layer"], norms[c["model"]],
                                              means[c["model"]]) for c in chosen}
    scores, gens = _timed(timings, "test interventions", lambda: evaluate_test(
        models, tok, {side: fmt[side, "test"] for side in ("harmful", "harmless")},
        {side: data.get(side, "test", config.n_test) for side in ("harmful", "harmless")},
        steering, ids, positions, config, steps))
    every = {f"{role}@{p}": selected_direction(diffs[role], norms[role], positions, None, p, pair.model_id(role), data)
             for role in models for p in positions}
    selected = pd.DataFrame(chosen).assign(
        resid_norm=[float(norms[c["model"]][c["layer"], positions.index(c["position"])]) for c in chosen])
    steps.done()
    return Result(pd.concat(candidates, ignore_index=True), selected, scores, gens, _cosines(diffs, positions),
                  pd.DataFrame(timings), directions, means, every, token_names(tok, ids), list(positions),
                  data.sizes(), config.ablation)


def _position_tokens(tok, positions: tuple[int, ...]) -> list[str]:
    ids = tok(format_prompts(tok, ["x"])[0], add_special_tokens=False).input_ids
    return [tok.decode([ids[p]]) if -p <= len(ids) else "?" for p in positions]
