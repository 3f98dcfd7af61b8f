"""Knowledge storage: causal tracing / activation patching, base vs post-trained (Du et al. 2025, §4; ROME's
causal tracing, Meng et al. 2022).

    python -m analyses.knowledge --pair demo --out out/knowledge

For each item the model gets right, every (token, layer) cell of the corrupted run gets the clean run's state back
(residual stream; MLP and attention outputs over a window of layers) and we measure how much of the clean output
returns, normalised so 0 = corrupted and 1 = clean. Corruptions: "noise" (ROME: Gaussian noise on the subject's
token embeddings, scored by P(object)) or "paired" (the paper: a false twin statement with another subject, scored by
P(TRUE) - P(FALSE) after a few-shot prompt). Maps are averaged over items by token role; base and post-trained maps
are compared (difference, correlation), and cross-model patching puts one model's clean residual stream into the
other's corrupted run."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import pandas as pd

from analyses import knowledge_data as kd
from analyses import knowledge_summary as ks
from analyses import knowledge_trace as kt
from analyses.common import Progress, ResultCache, Steps, cache_key
from analyses.statements import statement_set
from analyses.truth_score import few_shot_prefix, shot_facts
from steering.errors import InvalidInputError
from steering.tokens import dataset_hash

STUDY_VERSION = "knowledge-2"  # 2: screening in rounds, n_shots 4
CORRUPTIONS = ("noise", "paired")
SCREEN_CHUNK = 40  # items screened per round; screening stops at the first round that yields n_items


@dataclass(frozen=True)
class Config:
    """Settings of the knowledge study (the page's controls and the CLI's options)."""

    corruption: str = "noise"  # "noise": Gaussian noise on the subject (ROME); "paired": a false twin statement
    dataset: str = "cities"  # fact table: cities, capitals, translations, elements
    n_items: int = 4  # items traced and averaged: the first ones (seeded order) that both models get right
    n_screen: int = 200  # at most this many candidates are screened, 40 at a time until n_items are found
    components: str = "resid,mlp,attn"  # comma-separated: resid (residual stream), mlp, attn
    window: int = 10  # mlp/attn: a cell restores layers l - window//2 .. l + window//2 - 1, clipped
    noise_scale: float = 3.0  # noise std in units of the std of the subjects' token embeddings (base model)
    n_samples: int = 2  # noise samples per item (each a group of batch rows with the same noise)
    top_k: int = 10  # noise: the object's first token must be among the clean run's top k
    min_gap: float = 0.05  # keep items whose clean readout exceeds the corrupted one by at least this
    n_shots: int = 4  # paired: few-shot examples in the prompt (with 2 the demo base ranks no pair right)
    answers: str = "TRUE,FALSE"  # paired: the two answer words (first token of each)
    cross_model: bool = True  # also patch base -> post and post -> base (residual stream)
    batch_size: int = 64  # restorations per forward pass
    seed: int = 0


@dataclass
class Result:
    kept: pd.DataFrame  # model, item, label, clean, corrupted, rank, kept (screening of every candidate)
    grids: pd.DataFrame  # model, component, item, position, token_index, token, roles, is_subject, layer, score, norm
    averages: pd.DataFrame  # model, component, role, layer, norm (mean over traced items)
    comparison: pd.DataFrame  # component, pearson_roles, pearson_cells, mean_abs_diff
    cross: pd.DataFrame  # direction, item, position, token_index, token, roles, layer, score, norm
    cross_averages: pd.DataFrame  # direction, role, layer, norm
    recovery: pd.DataFrame  # direction, kind (self/cross), mean_peak, mean_last_subject, mean_cells
    peaks: pd.DataFrame  # map (model or direction), component, role, layer, norm: the average map's top cell
    corruption: str = "noise"
    noise_std: float | None = None
    n_candidates: int = 0
    n_kept: dict = field(default_factory=dict)  # model -> items it gets right; "both" -> traced pool
    n_traced: int = 0
    timings: dict = field(default_factory=dict)


def components(config: Config) -> list[str]:
    chosen = [c.strip() for c in config.components.split(",") if c.strip()]
    bad = [c for c in chosen if c not in ("resid", "mlp", "attn")]
    if not chosen or bad:
        raise InvalidInputError(f"Components must be among resid, mlp, attn (got '{config.components}').")
    return chosen


def answers(config: Config) -> tuple[str, str]:
    words = [w.strip() for w in config.answers.split(",")]
    if len(words) != 2 or not all(words):
        raise InvalidInputError(f"Answers must be two comma-separated words, e.g. TRUE,FALSE (got '{config.answers}').")
    return words[0], words[1]


def check(config: Config) -> None:
    if config.corruption not in CORRUPTIONS:
        raise InvalidInputError(f"Unknown corruption '{config.corruption}': use noise or paired.")
    if config.n_items < 1 or config.n_screen < 1 or config.n_samples < 1 or config.batch_size < 1:
        raise InvalidInputError("n_items, n_screen, n_samples and batch_size must be at least 1.")
    if config.min_gap <= 0 or config.noise_scale <= 0 or config.window < 1 or config.top_k < 1:
        raise InvalidInputError("min_gap and noise_scale must be positive, window and top_k at least 1.")
    components(config)


def default_items(config: Config, tokenizer) -> pd.DataFrame:
    """The dataset's facts (noise) or pairs (paired) in a seeded order."""
    frame = kd.facts(config.dataset) if config.corruption == "noise" else kd.pairs(config.dataset, tokenizer,
                                                                                      config.seed)
    return frame.sample(frac=1.0, random_state=config.seed).reset_index(drop=True)


def build_items(frame: pd.DataFrame, tokenizer, config: Config) -> tuple[list[kt.Item], str]:
    """Items ready to trace (and the few-shot prefix for pairs, whose facts are left out of the items)."""
    if config.corruption == "noise":
        return [kt.noise_item(tokenizer, row) for row in frame.to_dict("records")], ""
    statements = statement_set(config.dataset) if config.dataset in ("cities", "capitals", "translations",
                                                                     "elements") else None
    prefix = few_shot_prefix(statements, config.n_shots, config.seed, answers(config)) if config.n_shots else ""
    used = set(statements[statements.fact.isin(shot_facts(prefix, statements))].subject) if prefix else set()
    rows = [r for r in frame.to_dict("records") if r["subject"] not in used and r["corrupt_subject"] not in used]
    return [kt.paired_item(tokenizer, row, prefix, answers(config)) for row in rows], prefix


def is_right(screen: dict, config: Config) -> bool:
    """Noise: the object is in the clean top-k and noise lowers it by min_gap. Paired: the true statement scores
    at least min_gap above its false twin (the model ranks them right; the few-shot score of the small demo base
    is biased negative, so the zero threshold would keep almost nothing)."""
    gap = screen["clean"] - screen["corrupted"] >= config.min_gap
    return gap and (config.corruption == "paired" or screen["rank"] < config.top_k)


def _screen(models: dict, items: list[kt.Item], config: Config, std: float | None) -> tuple[dict, dict]:
    inputs = {role: {it.item: kt.corrupt(model, it, std or 0.0, config.n_samples, config.seed + it.item)
                     for it in items} for role, model in models.items()}
    screens = {role: kt.screen_many(model, items, inputs[role], config.batch_size) for role, model in models.items()}
    return inputs, screens


def _screen_until(models: dict, items: list[kt.Item], config: Config, std: float | None, require_kept: bool,
                  report) -> tuple[dict, dict, pd.DataFrame, list[kt.Item]]:
    """Screen SCREEN_CHUNK items at a time until n_items are right for every model (or the items run out): the
    inputs and screens of every screened item, the kept table, and the pool of traceable items in order."""
    inputs: dict = {role: {} for role in models}
    screens: dict = {role: {} for role in models}
    tables, pool = [], []
    for lo in range(0, len(items), SCREEN_CHUNK):
        part = items[lo:lo + SCREEN_CHUNK]
        part_inputs, part_screens = _screen(models, part, config, std)
        for role in models:
            inputs[role].update(part_inputs[role])
            screens[role].update(part_screens[role])
        table = _kept_table(part, part_screens, config)
        right = table.groupby("item")["kept"].all()
        pool += [it for it in part if right[it.item] or not require_kept]
        tables.append(table)
        report(lo + len(part), len(items))
        if len(pool) >= config.n_items:
            break
    return inputs, screens, pd.concat(tables, ignore_index=True), pool


def _kept_table(items: list[kt.Item], screens: dict, config: Config) -> pd.DataFrame:
    rows = [{k: v for k, v in screens[role][it.item].items() if k != "corrupted_samples"}
            | {"model": role, "kept": is_right(screens[role][it.item], config)}
            for role in screens for it in items]
    return pd.DataFrame(rows)[["model", "item", "label", "clean", "corrupted", "rank", "kept"]]


def compute(pair, frame: pd.DataFrame, config: Config, progress: Progress | None = None,
            require_kept: bool = True) -> Result:
    """Screen up to n_screen items, trace the first n_items that every model gets right (or the first n_items
    whatever the screening says, with require_kept=False), then summarise."""
    check(config)
    models, comps, timings = pair.models(), components(config), {}
    frame = frame.head(config.n_screen)
    if "item" not in frame or frame["item"].duplicated().any():
        frame = frame.assign(item=range(len(frame)))
    items, _ = build_items(frame, pair.tokenizer, config)
    if not items:
        raise InvalidInputError("No items to trace: the dataset is empty for this tokenizer.")
    std = (config.noise_scale * kt.subject_embedding_std(models["base"], items)
           if config.corruption == "noise" else None)
    steps = Steps(progress, {"screen": 1, "trace": 8})
    start = time.perf_counter()
    inputs, screens, kept, pool = _screen_until(models, items, config, std, require_kept,
                                                steps.stage("screen", "screening items"))
    timings["screen"] = time.perf_counter() - start
    if not pool:
        counts = kept.groupby("model")["kept"].sum().to_dict()
        raise InvalidInputError(f"None of the {len(items)} screened items is right for every model (kept: "
                                f"{counts}); screen more items or lower min_gap / raise top_k.")
    traced = pool[: config.n_items]
    start, report = time.perf_counter(), steps.stage("trace", "tracing")
    grids, cross = [], []
    for done, it in enumerate(traced):
        one = {r: inputs[r][it.item] for r in models}
        sc = {r: screens[r][it.item] for r in models}
        grids.append(kt.trace_item(models, it, one, sc, comps, config,
                                   lambda d, t, i=done: report(i * t + d, len(traced) * t)))
        if config.cross_model and len(models) == 2:
            cross.append(kt.cross_item(models, it, one, sc, config))
    timings["trace"] = time.perf_counter() - start
    steps.done()
    result = _result(pd.concat(grids, ignore_index=True), pd.concat(cross, ignore_index=True) if cross
                     else pd.DataFrame(), kept, config, std, kept["item"].nunique(), len(pool), len(traced))
    result.timings = {k: round(v, 1) for k, v in timings.items()}
    return result


def _result(grids, cross, kept, config, std, n_candidates, n_pool, n_traced) -> Result:
    grids = grids[["model", "component", *[c for c in grids.columns if c not in ("model", "component")]]]
    avg = ks.averages(grids, ["model", "component"])
    cross_avg = ks.averages(cross, ["direction"]) if not cross.empty else pd.DataFrame(
        columns=["direction", "role", "layer", "norm", "n_items"])
    n_kept = {**kept.groupby("model")["kept"].sum().astype(int).to_dict(), "both": n_pool}
    return Result(kept=kept, grids=grids, averages=avg, comparison=ks.comparison(avg, grids), cross=cross,
                  cross_averages=cross_avg, recovery=ks.recovery(grids, cross), peaks=ks.peaks(avg, cross_avg),
                  corruption=config.corruption, noise_std=std, n_candidates=n_candidates,
                  n_kept=n_kept, n_traced=n_traced)


def _key(pair, config: Config, frame: pd.DataFrame, *extra) -> str:
    texts = [str(r) for r in frame.head(config.n_screen).to_dict("records")]
    return cache_key(STUDY_VERSION, pair.fingerprint("base"),
                     pair.fingerprint("post") if pair.post is not None else None, config, dataset_hash(texts),
                     *extra)


def run(pair, config: Config = Config(), progress: Progress | None = None,
        items: pd.DataFrame | None = None, cache: ResultCache | None = None) -> Result:
    """The study over a dataset (the config's, or `items`: facts with subject, prompt, object, or pairs with
    subject, corrupt_subject, object, true_statement, false_statement), cached on disk."""
    check(config)
    frame = default_items(config, pair.tokenizer) if items is None else items.reset_index(drop=True)
    return (cache or ResultCache("knowledge")).get_or_compute(_key(pair, config, frame),
                                                              lambda: compute(pair, frame, config, progress))


def trace_fact(pair, fact: dict, config: Config = Config(), progress: Progress | None = None) -> Result:
    """One fact (noise: subject, prompt, object; paired: a pair row), traced whether or not a model gets it
    right (the kept table says), cached on disk."""
    frame = pd.DataFrame([{**fact, "item": 0}])
    one = Config(**{**config.__dict__, "n_items": 1, "n_screen": 1})
    return ResultCache("knowledge").get_or_compute(
        _key(pair, one, frame, "fact"), lambda: compute(pair, frame, one, progress, require_kept=False))


def summary_text(result: Result, elapsed: float) -> str:
    lines = [f"corruption: {result.corruption}" + (f", noise std {result.noise_std:.4f}" if result.noise_std
                                                   else ""),
             f"screened {result.n_candidates} items; kept (right) per model: {result.n_kept}; traced "
             f"{result.n_traced}"]
    if not result.comparison.empty:
        lines += ["base vs post-trained maps:", result.comparison.to_string(index=False)]
    lines += ["recovery (normalised, cells from the subject onwards):", result.recovery.to_string(index=False),
              "peak cells of the averaged maps:", result.peaks.to_string(index=False),
              f"timings (s): {result.timings}; this call {elapsed:.1f} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from analyses import cli
    from analyses.knowledge_charts import all_charts

    args = cli.study_parser("python -m analyses.knowledge", __doc__.split("\n\n")[0], Config,
                            choices={"corruption": CORRUPTIONS}).parse_args(argv)

    return cli.run_study(args, Config, "knowledge", run, all_charts, summary_text,
                         "No post-trained model in this pair: tracing the base model alone (no comparison, "
                         "no cross-model).")


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy's, so that cached results pickle
    # analyses.knowledge.Result, which the page can load, and not __main__.Result, which it cannot.
    from analyses.knowledge import main as module_main

    sys.exit(module_main())
