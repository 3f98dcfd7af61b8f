"""Knowledge storage: causal tracing / activation patching, base vs post-trained (Du et al. 2025, §4; ROME's
causal tracing, Meng et al. 2022).

For each item the model gets right, every (token, layer) cell of the corrupted run gets the clean run's state back
(residual stream; MLP and attention outputs over a window of layers) and we measure how much of the clean output
returns, normalised so 0 = corrupted and 1 = clean. Corruptions: "noise" (ROME: Gaussian noise on the subject's
token embeddings, scored by P(object)) or "paired" (the paper: a false twin statement with another subject, scored by
P(TRUE) - P(FALSE) after a few-shot prompt). Maps are averaged over items by token role; base and post-trained maps
are compared (difference, correlation), and cross-model patching puts one model's clean residual stream into the
other's corrupted run."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import pandas as pd

from analyses.common import Progress, Steps
from steering.errors import InvalidInputError

from . import screen as screening
from . import summary as ks
from . import trace as kt
from .config import Config, check, components
from .data import default_data

# The columns of a cross-model table (what trace.cross_item returns), so an empty one keeps its shape.
CROSS_COLUMNS = ["item", "position", "token_index", "token", "roles", "is_subject", "layer", "score", "norm",
                 "direction"]


@dataclass
class Result:
    kept: pd.DataFrame  # model, item, label, clean, corrupted, rank, kept (screening of every candidate)
    grids: pd.DataFrame  # model, component, item, position, token_index, token, roles, is_subject, layer, score, norm
    averages: pd.DataFrame  # model, component, role, layer, norm (mean over traced items)
    comparison: pd.DataFrame  # component, pearson_roles, pearson_cells, mean_abs_diff
    cross: pd.DataFrame  # item, position, token_index, token, roles, is_subject, layer, score, norm, direction
    cross_averages: pd.DataFrame  # direction, role, layer, norm
    recovery: pd.DataFrame  # direction, kind (self/cross), mean_peak, mean_last_subject, mean_cells
    peaks: pd.DataFrame  # map (model or direction), component, role, layer, norm: the average map's top cell
    corruption: str = "noise"
    noise_std: float | None = None
    n_candidates: int = 0
    n_kept: dict = field(default_factory=dict)  # model -> items it gets right; "both" -> traced pool
    n_traced: int = 0
    timings: dict = field(default_factory=dict)


def trace_items(pair, frame: pd.DataFrame, config: Config, progress: Progress | None = None,
                require_kept: bool = True, reference: bool = False) -> Result:
    """Screen up to n_screen items, trace the first n_items that every model gets right (or the first n_items
    whatever the screening says, with require_kept=False), then summarise. reference=True traces with today's
    slow engine (for tests and the benchmark)."""
    check(config)
    models, comps, timings = pair.models(), components(config), {}
    frame = frame.head(config.n_screen)
    if "item" not in frame or frame["item"].duplicated().any():
        frame = frame.assign(item=range(len(frame)))
    items, _ = screening.build_items(frame, pair.tokenizer, config)
    if not items:
        raise InvalidInputError("No items to trace: the dataset is empty for this tokenizer.")
    std = (config.noise_scale * kt.subject_embedding_std(models["base"], items)
           if config.corruption == "noise" else None)
    steps = Steps(progress, {"screen": 1, "trace": 10})  # measured on the demo pair: 8 s and 83 s
    start = time.perf_counter()
    inputs, screens, kept, pool = screening.screen_until(models, items, config, std, require_kept,
                                                         steps.stage("screen", "screening items"))
    timings["screen"] = time.perf_counter() - start
    if not pool:
        counts = kept.groupby("model")["kept"].sum().to_dict()
        raise InvalidInputError(f"None of the {len(items)} screened items is right for every model (kept: "
                                f"{counts}); screen more items or lower min_gap / raise top_k.")
    traced = pool[: config.n_items]
    start = time.perf_counter()
    report = steps.stage("trace", "tracing")
    grids, cross = (_trace_reference(models, traced, inputs, screens, comps, config, report) if reference
                    else _trace(models, traced, inputs, screens, comps, config, report, steps))
    timings["trace"] = time.perf_counter() - start
    steps.done()
    result = _result(grids, cross, kept, config, std, kept["item"].nunique(), len(pool), len(traced))
    result.timings = {k: round(v, 1) for k, v in timings.items()}
    return result


def _trace(models: dict, traced: list[kt.Item], inputs: dict, screens: dict, comps: list[str], config: Config,
           report, steps: Steps | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every traced item's grids (each model into itself) and, for a pair, its cross-model grids (trace_all, the
    fast path); each item's grids go to the page as they come (steps.partial("grids", ...))."""
    grids, cross = [], []
    for done, it in enumerate(traced):
        one = {r: inputs[r][it.item] for r in models}
        sc = {r: screens[r][it.item] for r in models}
        item_grids, item_cross = kt.trace_all(models, it, one, sc, comps, config,
                                              lambda d, t, i=done: report(i * t + d, len(traced) * t))
        grids.append(item_grids)
        if item_cross is not None:
            cross.append(item_cross)
        if steps is not None:
            steps.partial("grids", _ordered(pd.concat(grids, ignore_index=True)))
    cross_frame = pd.concat(cross, ignore_index=True) if cross else pd.DataFrame(columns=CROSS_COLUMNS)
    return pd.concat(grids, ignore_index=True), cross_frame


def _trace_reference(models: dict, traced: list[kt.Item], inputs: dict, screens: dict, comps: list[str],
                     config: Config, report) -> tuple[pd.DataFrame, pd.DataFrame]:
    """_trace with today's engine (trace_item, cross_item: one trace_grid per grid, every pass from layer 0)."""
    grids, cross = [], []
    for done, it in enumerate(traced):
        one = {r: inputs[r][it.item] for r in models}
        sc = {r: screens[r][it.item] for r in models}
        grids.append(kt.trace_item(models, it, one, sc, comps, config,
                                   lambda d, t, i=done: report(i * t + d, len(traced) * t)))
        if config.cross_model and len(models) == 2:
            cross.append(kt.cross_item(models, it, one, sc, config))
    cross_frame = pd.concat(cross, ignore_index=True) if cross else pd.DataFrame(columns=CROSS_COLUMNS)
    return pd.concat(grids, ignore_index=True), cross_frame


def _ordered(grids: pd.DataFrame) -> pd.DataFrame:
    """model and component first, as in Result.grids."""
    return grids[["model", "component", *[c for c in grids.columns if c not in ("model", "component")]]]


def _result(grids, cross, kept, config, std, n_candidates, n_pool, n_traced) -> Result:
    grids = _ordered(grids)
    avg = ks.averages(grids, ["model", "component"])
    cross_avg = ks.averages(cross, ["direction"]) if not cross.empty else pd.DataFrame(
        columns=["direction", "role", "layer", "norm", "n_items"])
    n_kept = {**{str(k): int(v) for k, v in kept.groupby("model")["kept"].sum().items()}, "both": n_pool}
    return Result(kept=kept, grids=grids, averages=avg, comparison=ks.comparison(avg, grids), cross=cross,
                  cross_averages=cross_avg, recovery=ks.recovery(grids, cross), peaks=ks.peaks(avg, cross_avg),
                  corruption=config.corruption, noise_std=std, n_candidates=int(n_candidates),
                  n_kept=n_kept, n_traced=int(n_traced))


def run(pair, config: Config, *, data: pd.DataFrame | None = None, progress: Progress | None = None) -> Result:
    """The study over the config's dataset, or over `data`: facts with subject, prompt, object (noise) or pairs with
    subject, corrupt_subject, object, true_statement, false_statement (paired). Uncached: see store.run_cached."""
    check(config)
    frame = default_data(pair, config) if data is None else data.reset_index(drop=True)
    return trace_items(pair, frame, config, progress)


def trace_fact(pair, fact: dict, config: Config = Config(), progress: Progress | None = None) -> Result:
    """One fact (noise: subject, prompt, object; paired: a pair row), traced whether or not a model gets it right
    (the kept table says). Uncached: one fact takes seconds, and the page keeps it in its session."""
    frame = pd.DataFrame([{**fact, "item": 0}])
    return trace_items(pair, frame, replace(config, n_items=1, n_screen=1), progress, require_kept=False)


def summary_text(result: Result) -> str:
    """The tables the CLI prints after a run: screening counts, the comparison, recovery and the peak cells."""
    lines = [f"corruption: {result.corruption}" + (f", noise std {result.noise_std:.4f}" if result.noise_std
                                                   else ""),
             f"screened {result.n_candidates} items; kept (right) per model: {result.n_kept}; traced "
             f"{result.n_traced}"]
    if not result.comparison.empty:
        lines += ["base vs post-trained maps:", result.comparison.to_string(index=False)]
    lines += ["recovery (normalised, cells from the subject onwards):", result.recovery.to_string(index=False),
              "peak cells of the averaged maps:", result.peaks.to_string(index=False),
              f"timings (s): {result.timings}"]
    return "\n".join(lines)
