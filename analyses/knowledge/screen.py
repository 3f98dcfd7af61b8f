"""Screening of the knowledge study: build the items, run them clean and corrupted, and keep those every model gets
right, a round of SCREEN_CHUNK items at a time until there are n_items."""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from analyses.statements import statement_set
from analyses.truth_score import few_shot_prefix, shot_facts

from . import trace as kt
from .config import Config, answers
from .data import dataset_names

SCREEN_CHUNK = 40  # items screened per round; screening stops at the first round that yields n_items


def build_items(frame: pd.DataFrame, tokenizer, config: Config) -> tuple[list[kt.Item], str]:
    """Items ready to trace (and the few-shot prefix for pairs, whose facts are left out of the items)."""
    if config.corruption == "noise":
        return [kt.noise_item(tokenizer, row) for row in frame.to_dict("records")], ""
    statements = statement_set(config.dataset) if config.dataset in dataset_names() else None
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


def screen_until(models: dict, items: list[kt.Item], config: Config, std: float | None, require_kept: bool,
                 report: Callable[[int, int], None]) -> tuple[dict, dict, pd.DataFrame, list[kt.Item]]:
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
        table = kept_table(part, part_screens, config)
        right = table.groupby("item")["kept"].all()
        pool += [it for it in part if right[it.item] or not require_kept]
        tables.append(table)
        report(lo + len(part), len(items))
        if len(pool) >= config.n_items:
            break
    return inputs, screens, pd.concat(tables, ignore_index=True), pool


def kept_table(items: list[kt.Item], screens: dict, config: Config) -> pd.DataFrame:
    """model, item, label, clean, corrupted, rank, kept: one row per model and screened item."""
    rows = [{k: v for k, v in screens[role][it.item].items() if k != "corrupted_samples"}
            | {"model": role, "kept": is_right(screens[role][it.item], config)}
            for role in screens for it in items]
    return pd.DataFrame(rows)[["model", "item", "label", "clean", "corrupted", "rank", "kept"]]
