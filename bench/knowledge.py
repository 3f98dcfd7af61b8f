"""Knowledge study benchmark: full-grid causal tracing of one fact on the demo pair, batched vs one forward pass
per cell (residual stream, one noise sample), printed as a ratio. Also the cost per cell of the batched engine for
each component, which grows linearly with tokens x layers x samples.

    python -m bench.knowledge [--pair demo] [--batch-size 64] [--tokens N]
"""
from __future__ import annotations

import argparse
import time

import torch

from analyses.knowledge import trace as kt
from analyses.knowledge.data import facts
from steering import load_pair
from steering.model_view import ModelView
from steering.tracing import clean_states, full_grid, run_embeds, trace_cell_loop, trace_grid


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="demo")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=0, help="trace only the last N tokens (0 = every token)")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    pair = load_pair(args.pair, base_only=True)
    model, tok = pair.base, pair.tokenizer
    n_layers = ModelView.of(model).n_layers
    item = kt.noise_item(tok, facts("cities").iloc[0].to_dict())
    std = 3 * kt.subject_embedding_std(model, [item])
    inp = kt.corrupt(model, item, std, n_samples=1, seed=0)
    n_tokens = len(item.clean_ids)
    tokens = list(range(n_tokens))[-args.tokens:] if args.tokens else list(range(n_tokens))
    cells = full_grid(tokens, n_layers)
    print(f"fact: {item.label!r}, {n_tokens} tokens x {n_layers} layers; tracing {len(cells)} residual cells, "
          f"1 noise sample, batch size {args.batch_size}, {torch.get_num_threads()} threads")
    states = clean_states(model, inp, "resid", range(n_layers))
    corrupted = run_embeds(model, inp.corrupted, item.readout)
    trace_grid(model, inp, states, cells[:8], "resid", item.readout, corrupted_scores=corrupted)  # warm-up
    batched, t_batched = _timed(lambda: trace_grid(model, inp, states, cells, "resid", item.readout,
                                                   batch_size=args.batch_size, corrupted_scores=corrupted,
                                                   same_model=False))
    skipping, t_skip = _timed(lambda: trace_grid(model, inp, states, cells, "resid", item.readout,
                                                 batch_size=args.batch_size, corrupted_scores=corrupted))
    loop, t_loop = _timed(lambda: trace_cell_loop(model, inp, states, cells, "resid", item.readout))
    diff = float((batched - loop).abs().max())
    print(f"per-cell loop:      {t_loop:8.2f} s  ({len(cells)} forward passes, {t_loop / len(cells) * 1e3:.0f} ms/cell)")
    print(f"batched, all cells: {t_batched:8.2f} s  ({t_batched / len(cells) * 1e3:.0f} ms/cell)  "
          f"speed-up {t_loop / t_batched:.1f}x  (max |difference| {diff:.2e})")
    print(f"batched, skipping the cells before the subject (exact no-ops): {t_skip:8.2f} s  "
          f"speed-up {t_loop / t_skip:.1f}x  (max |difference| {float((skipping - loop).abs().max()):.2e})")
    for component in ("mlp", "attn"):
        st = clean_states(model, inp, component, range(n_layers))
        _, t = _timed(lambda: trace_grid(model, inp, st, cells, component, item.readout,
                                         batch_size=args.batch_size, corrupted_scores=corrupted))
        print(f"batched {component} (window 10): {t:8.2f} s for the same grid")


if __name__ == "__main__":
    main()
