"""Knowledge study benchmark: causal tracing of one fact on the demo pair, the resumed batched engine against one
forward pass per cell, and the default run against its forward-pass floor.

    python -m bench.knowledge [--pair demo] [--batch-size 64] [--tokens N]   # engine vs per-cell loop
    python -m bench.knowledge --floor                                        # default run vs its floor
"""
from __future__ import annotations

import argparse
import time

import torch

from analyses.knowledge import STUDY, Config, default_data
from analyses.knowledge import screen as screening
from analyses.knowledge import trace as kt
from analyses.knowledge.config import components
from analyses.knowledge.data import facts
from steering import load_pair
from steering.model_view import UNEMBED_ROWS, ModelView
from steering.tracing import (CorruptedRun, Grid, clean_states_of, corrupted_run, full_grid, plan_rows,
                              resumed_pass, run_embeds, trace_cell_loop, trace_grid, trace_grids)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


@torch.no_grad()  # not set_grad_enabled(False): the tests call floor(), and grad must stay on for others
def floor(pair, config: Config, data) -> float:
    """Seconds of the plain forward passes the default run's result needs, run here with no hooks but resume_at's
    own (no recording, no restoring), logits at the last position only (no softmax), the same batch shapes:
    1. screening: the items the run screens (the same rounds of SCREEN_CHUNK), per model the batches of
       screen_many (items of one token length, clean and corrupted rows stacked, batch_size rows at most), every
       layer, last-position logits;
    2. per traced item and model: the clean run (1 row) and the corrupted run (n_samples rows), every layer, no
       logits (their readouts come from screening);
    3. per traced item and model, the batches of steering.tracing.plan_rows for that model's grids (each
       component; the other model's residual stream, subject onwards, with cross_model): rows grouped by start
       layer (the layer a cell restores, the window's first for mlp/attn) and token, batch_size a batch, cells
       that restore the corrupted state left out where the states are the model's own (before the first corrupted
       token; residual stream at layer 0 where the token's input is clean); each batch runs the layers
       from its rows' smallest start layer to the last only (resume_at, from the corrupted stream) and the tokens
       from its rows' smallest token only, over the corrupted run's KV cache of the tokens before it (a
       restoration at token t changes no earlier token); the last position's final states unembedded
       steering.model_view.UNEMBED_ROWS rows at a time, as the run does.
    The item choice (which screen rounds, which items are traced) is taken from an untimed screening first."""
    models, comps = pair.models(), components(config)
    frame = data.head(config.n_screen)
    if "item" not in frame or frame["item"].duplicated().any():  # as trace_items numbers them
        frame = frame.assign(item=range(len(frame)))
    items, _ = screening.build_items(frame, pair.tokenizer, config)
    std = config.noise_scale * kt.subject_embedding_std(models["base"], items) if config.corruption == "noise" else 0
    inputs, screens, kept, pool = screening.screen_until(models, items, config, std, True, lambda d, t: None)
    screened = [it for it in items if it.item in inputs["base"]]
    traced = pool[:config.n_items]
    runs = {(r, it.item): corrupted_run(m, inputs[r][it.item]) for r, m in models.items() for it in traced}
    start = time.perf_counter()
    for role, model in models.items():
        _floor_screen(model, screened, inputs[role], config.batch_size)
        for it in traced:
            _floor_trace(model, it, inputs[role][it.item], runs[(role, it.item)], comps, config)
    return time.perf_counter() - start


def _last_logits(model, embeds: torch.Tensor) -> torch.Tensor:
    view = ModelView.of(model)
    hidden = view.decoder_stack(inputs_embeds=embeds.to(view.device), use_cache=False).last_hidden_state
    return view.logits(hidden[:, -1])


def _floor_screen(model, items: list, inputs: dict, batch_size: int) -> None:
    """Floor step 1 for one model (screen_many's batches)."""
    by_length: dict[int, list] = {}
    for it in items:
        by_length.setdefault(len(it.clean_ids), []).append(it)
    for group in by_length.values():
        per_item = 1 + inputs[group[0].item].corrupted.shape[0]
        step = max(1, batch_size // per_item)
        for lo in range(0, len(group), step):
            chunk = group[lo:lo + step]
            _last_logits(model, torch.cat([torch.cat([inputs[it.item].clean[None], inputs[it.item].corrupted])
                                           for it in chunk]))


def _floor_trace(model, item, inp, run: CorruptedRun, comps: list[str], config: Config) -> None:
    """Floor steps 2 and 3 for one item and model."""
    view = ModelView.of(model)
    view.decoder_stack(inputs_embeds=inp.clean[None].to(view.device), use_cache=False)
    view.decoder_stack(inputs_embeds=inp.corrupted.to(view.device), use_cache=False)
    n_layers = view.n_layers
    cells = full_grid(item.grid_positions(), n_layers)
    grids = [Grid(cells, c, {}) for c in comps]
    if config.cross_model:
        cross = full_grid([p for p in item.grid_positions() if p >= item.subject[0]], n_layers)
        grids.append(Grid(cross, "resid", {}, same_model=False))
    final = []
    for batch in plan_rows(grids, n_layers, inp.corrupted.shape[0], inp.first_corrupted, config.window,
                           config.batch_size, inp.n_tokens, inp.uncorrupted()):
        samples = torch.tensor([row[3] for row in batch])
        start, first = min(row[0] for row in batch), min(row[1] for row in batch)
        final.append(resumed_pass(model, inp, run, samples, start, first))  # no restoring hook
    final = torch.cat(final)
    for i in range(0, len(final), UNEMBED_ROWS):
        view.logits(final[i:i + UNEMBED_ROWS])


def bench_floor(pair) -> None:
    """The default run and its floor, side by side (as bench.studies prints them)."""
    import os

    config = Config()
    data = default_data(pair, config)
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    floor_seconds = floor(pair, config, data)
    result, seconds = _timed(lambda: STUDY.run(pair, config, data=data))
    print(f"STUDY knowledge seconds={seconds:.1f} floor_seconds={floor_seconds:.1f} "
          f"ratio={seconds / floor_seconds:.2f}  (stages {result.timings}; load average after "
          f"{os.getloadavg()[0]:.2f})")


def bench_engine(pair, batch_size: int, n_last: int) -> None:
    """One fact's full grid (resid, mlp, attn; one noise sample): one forward pass per cell vs the engines."""
    model, tok = pair.base, pair.tokenizer
    n_layers = ModelView.of(model).n_layers
    item = kt.noise_item(tok, facts("cities").iloc[0].to_dict())
    std = 3 * kt.subject_embedding_std(model, [item])
    inp = kt.corrupt(model, item, std, n_samples=1, seed=0)
    n_tokens = len(item.clean_ids)
    tokens = list(range(n_tokens))[-n_last:] if n_last else list(range(n_tokens))
    cells = full_grid(tokens, n_layers)
    comps = ("resid", "mlp", "attn")
    print(f"fact: {item.label!r}, {n_tokens} tokens x {n_layers} layers; tracing {len(cells)} cells per component "
          f"({', '.join(comps)}, window 10), 1 noise sample, batch size {batch_size}, {torch.get_num_threads()} "
          f"threads", flush=True)
    states = clean_states_of(model, inp, comps)
    corrupted = run_embeds(model, inp.corrupted, item.readout)
    trace_grid(model, inp, states, cells[:8], "resid", item.readout, corrupted_scores=corrupted)  # warm-up
    loops, t_loop = _timed(lambda: [trace_cell_loop(model, inp, states, cells, c, item.readout) for c in comps])
    n = len(cells) * len(comps)
    print(f"per-cell loop:                {t_loop:8.2f} s  ({n} forward passes, {t_loop / n * 1e3:.0f} ms/cell)")
    old, t_old = _timed(lambda: [trace_grid(model, inp, states, cells, c, item.readout, batch_size=batch_size,
                                            corrupted_scores=corrupted, same_model=False) for c in comps])
    for name, same in (("all cells", False), ("skipping no-ops", True)):
        grids = [Grid(cells, c, states, same_model=same) for c in comps]
        fast, t = _timed(lambda: trace_grids(model, inp, grids, item.readout, batch_size=batch_size,
                                             corrupted_scores=corrupted))
        diff = max(float((f - loop).abs().max()) for f, loop in zip(fast, loops))
        print(f"resumed batched, {name:15s} {t:8.2f} s  speed-up {t_loop / t:5.1f}x  (max |difference| to the "
              f"loop {diff:.2e})")
    diff = max(float((o - loop).abs().max()) for o, loop in zip(old, loops))
    print(f"batched from layer 0 (reference trace_grid), all cells: {t_old:8.2f} s  speed-up {t_loop / t_old:5.1f}x  "
          f"(max |difference| {diff:.2e})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="demo")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=0, help="trace only the last N tokens (0 = every token)")
    parser.add_argument("--floor", action="store_true", help="only the default run against its floor")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    if args.floor:
        bench_floor(load_pair(args.pair))
    else:
        bench_engine(load_pair(args.pair, base_only=True), args.batch_size, args.tokens)


if __name__ == "__main__":
    main()
