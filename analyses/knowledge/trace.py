"""One item of the knowledge study: its tokens, corruption, screening (does the model get it right?) and its
patching grids, base and post-trained, plus cross-model patching. Built on steering.tracing."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from analyses.truth_score import SUFFIX, answer_token_ids
from steering.errors import InvalidInputError
from steering.model_view import ModelView
from steering.tracing import (Grid, Readout, TraceInput, clean_states, clean_states_of, embed, full_grid,
                              noise_corruption, paired_corruption, run_embeds, trace_grid, trace_grids)

from .data import subject_span, token_roles


@dataclass
class Item:
    """A prompt ready to trace: token ids (clean, and the paired corruption if any), the subject's positions,
    where the shown grid starts (after BOS and any few-shot prefix) and what the run is scored by."""

    item: int
    label: str  # short text for tables
    clean_ids: torch.Tensor  # [seq]
    corrupt_ids: torch.Tensor | None  # [seq] for the paired corruption
    subject: list[int]  # token positions of the subject (the corrupted subject for pairs: same positions)
    start: int  # first position shown in the grid
    tokens: list[str]  # every token as text
    readout: Readout
    target: str  # the object (noise) or "TRUE" (paired)

    def roles(self) -> dict[int, list[str]]:
        return token_roles(self.subject[0], self.subject[-1], len(self.clean_ids))

    def grid_positions(self) -> list[int]:
        return list(range(self.start, len(self.clean_ids)))


def _tokens(tok: PreTrainedTokenizerBase, ids: torch.Tensor) -> list[str]:
    return [tok.decode([i]) for i in ids.tolist()]


def _start(tok: PreTrainedTokenizerBase, text: str, chars: int) -> int:
    offsets = tok(text, return_offsets_mapping=True)["offset_mapping"]
    return next(i for i, (a, b) in enumerate(offsets) if b > a and a >= chars)


def noise_item(tok: PreTrainedTokenizerBase, row: dict) -> Item:
    """A (subject, prompt, object) fact; the object's first token is what the run is scored by."""
    prompt, subject, obj = row["prompt"], row["subject"], row["object"]
    where = prompt.find(subject)
    if not subject or where < 0:
        raise InvalidInputError(f"The subject '{subject}' does not occur in the prompt '{prompt}'.")
    target = tok(obj, add_special_tokens=False).input_ids
    if not obj.strip() or not target:
        raise InvalidInputError("The object is empty: type the words that complete the prompt.")
    ids = torch.tensor(tok(prompt).input_ids)
    span = subject_span(tok, prompt, where, where + len(subject))
    return Item(int(row.get("item", 0)), f"{subject} -> {obj.strip()}", ids, None, span, _start(tok, prompt, 0),
                _tokens(tok, ids), Readout((target[0],), (1.0,)), obj)


def paired_item(tok: PreTrainedTokenizerBase, row: dict, prefix: str, answers: tuple[str, str]) -> Item:
    """A true statement and its false twin after the few-shot prefix, scored by P(TRUE) - P(FALSE)."""
    clean, wrong = f"{prefix}{row['true_statement']}{SUFFIX}", f"{prefix}{row['false_statement']}{SUFFIX}"
    clean_ids, wrong_ids = torch.tensor(tok(clean).input_ids), torch.tensor(tok(wrong).input_ids)
    if clean_ids.shape != wrong_ids.shape:
        raise InvalidInputError(f"'{row['true_statement']}' and '{row['false_statement']}' differ in token length.")
    where = len(prefix) + row["true_statement"].find(row["subject"])
    span = subject_span(tok, clean, where, where + len(row["subject"]))
    differ = (clean_ids != wrong_ids).nonzero().flatten().tolist()
    span = sorted(set(span) | set(differ))
    return Item(int(row.get("item", 0)), f"{row['subject']} / {row['corrupt_subject']} -> {row['object']}",
                clean_ids, wrong_ids, span, _start(tok, clean, len(prefix)), _tokens(tok, clean_ids),
                Readout(answer_token_ids(tok, answers), (1.0, -1.0)), answers[0])


def corrupt(model, item: Item, std: float, n_samples: int, seed: int) -> TraceInput:
    if item.corrupt_ids is not None:
        return paired_corruption(model, item.clean_ids, item.corrupt_ids)
    return noise_corruption(model, item.clean_ids, item.subject, std, n_samples, seed)


def subject_embedding_std(model, items: list[Item]) -> float:
    """ROME's noise unit: the standard deviation of the embedding outputs over the subjects' tokens."""
    rows = [embed(model, it.clean_ids)[it.subject] for it in items]
    return float(torch.cat(rows).float().std())


def screen_many(model, items: list[Item], inputs: dict[int, TraceInput], batch_size: int = 64) -> dict[int, dict]:
    """Clean and corrupted readouts of every item, and the rank of its target token in the clean run, batched:
    items of equal token length share forward passes (their clean row and corrupted rows stacked)."""
    by_length: dict[int, list[Item]] = {}
    for it in items:
        by_length.setdefault(len(it.clean_ids), []).append(it)
    out = {}
    for group in by_length.values():
        per_item = 1 + inputs[group[0].item].corrupted.shape[0]
        step = max(1, batch_size // per_item)
        for start in range(0, len(group), step):
            chunk = group[start:start + step]
            embeds = torch.cat([torch.cat([inputs[it.item].clean[None], inputs[it.item].corrupted]) for it in chunk])
            probs = run_embeds(model, embeds, lambda p: p).view(len(chunk), per_item, -1)
            for it, p in zip(chunk, probs):
                scores = it.readout(p)
                token = it.readout.token_ids[0]
                out[it.item] = {"item": it.item, "label": it.label, "clean": float(scores[0]),
                                "corrupted": float(scores[1:].mean()), "rank": int((p[0] > p[0, token]).sum()),
                                "corrupted_samples": scores[1:].clone()}
    return out


def grid_frame(item: Item, cells: list, scores: torch.Tensor, clean: float, corrupted: float) -> pd.DataFrame:
    """Tidy rows for one grid: mean over samples, normalised so 0 = corrupted and 1 = clean."""
    roles, mean = item.roles(), scores.mean(0)
    rows = []
    for (pos, layer), score in zip(cells, mean.tolist()):
        rows.append({"item": item.item, "position": pos, "token_index": pos - item.start, "token": item.tokens[pos],
                     "roles": "; ".join(roles.get(pos, [])), "is_subject": pos in item.subject, "layer": layer,
                     "score": score, "norm": (score - corrupted) / (clean - corrupted)})
    return pd.DataFrame(rows)


def trace_item(models: dict, item: Item, inputs: dict[str, TraceInput], screens: dict[str, dict],
               components: list[str], config, report: Callable[[int, int], None]) -> pd.DataFrame:
    """Every component's (token x layer) grid for each model, its own clean states into its own corrupted run.
    The reference (one trace_grid per grid, every pass from layer 0); trace_all is the fast path."""
    frames = []
    jobs = [(role, c) for role in models for c in components]
    for done, (role, component) in enumerate(jobs):
        model, inp, sc = models[role], inputs[role], screens[role]
        n_layers = ModelView.of(model).n_layers
        cells = full_grid(item.grid_positions(), n_layers)
        states = clean_states(model, inp, component, range(n_layers))
        scores = trace_grid(model, inp, states, cells, component, item.readout, window=config.window,
                            batch_size=config.batch_size, corrupted_scores=sc["corrupted_samples"])
        frames.append(grid_frame(item, cells, scores, sc["clean"], sc["corrupted"]).assign(model=role,
                                                                                           component=component))
        report(done + 1, len(jobs))
    return pd.concat(frames, ignore_index=True)


def cross_item(models: dict, item: Item, inputs: dict[str, TraceInput], screens: dict[str, dict],
               config) -> pd.DataFrame:
    """Residual patching from one model's clean run into the other's corrupted run (subject onwards). The
    reference of trace_all's cross-model grids."""
    frames = []
    for src, dst in (("base", "post"), ("post", "base")):
        n_layers = ModelView.of(models[dst]).n_layers
        cells = full_grid([p for p in item.grid_positions() if p >= item.subject[0]], n_layers)
        states = clean_states(models[src], inputs[src], "resid", range(n_layers))
        scores = trace_grid(models[dst], inputs[dst], states, cells, "resid", item.readout,
                            batch_size=config.batch_size, corrupted_scores=screens[dst]["corrupted_samples"],
                            same_model=False)
        frames.append(grid_frame(item, cells, scores, screens[dst]["clean"], screens[dst]["corrupted"])
                      .assign(direction=f"{src}→{dst}"))
    return pd.concat(frames, ignore_index=True)


def _cross_cells(item: Item, n_layers: int) -> list:
    return full_grid([p for p in item.grid_positions() if p >= item.subject[0]], n_layers)


def trace_all(models: dict, item: Item, inputs: dict[str, TraceInput], screens: dict[str, dict],
              components: list[str], config, report: Callable[[int, int], None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """trace_item's grids and (for a pair with cross_model) cross_item's, equal to them: per model one clean
    pass, one corrupted pass, and every grid into that model (its components, the other model's residual stream)
    in one resumed batched run (steering.tracing.trace_grids)."""
    cross = config.cross_model and set(models) == {"base", "post"}
    needed = list(dict.fromkeys([*components, *(["resid"] if cross else [])]))
    states = {role: clean_states_of(models[role], inputs[role], needed) for role in models}
    grids, crossed, roles = {}, {}, list(models)
    for done, role in enumerate(roles):
        n_layers = ModelView.of(models[role]).n_layers
        cells = full_grid(item.grid_positions(), n_layers)
        jobs = [Grid(cells, c, states[role]) for c in components]
        if cross:
            src = "post" if role == "base" else "base"
            jobs.append(Grid(_cross_cells(item, n_layers), "resid", states[src], same_model=False))
        sc = screens[role]
        scores = trace_grids(models[role], inputs[role], jobs, item.readout, window=config.window,
                             batch_size=config.batch_size, corrupted_scores=sc["corrupted_samples"],
                             progress=lambda d, t, i=done: report(i * t + d, len(roles) * t))
        for job, score in zip(jobs, scores):
            frame = grid_frame(item, list(job.cells), score, sc["clean"], sc["corrupted"])
            if job.same_model:
                grids[(role, job.component)] = frame.assign(model=role, component=job.component)
            else:
                crossed[role] = frame.assign(direction=f"{src}→{role}")
    frames = pd.concat([grids[(role, c)] for role in roles for c in components], ignore_index=True)
    cross_frame = pd.concat([crossed["post"], crossed["base"]], ignore_index=True) if cross else None
    return frames, cross_frame
